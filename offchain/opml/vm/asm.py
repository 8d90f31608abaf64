"""A tiny assembler for hand-written test vectors (unit tests, the differential gate, fuzzing).

``encode("addiu", 2, 0, 5)`` returns the instruction word of ``addiu $2, $0, 5``; operands are
register numbers and integers in GNU ``as`` operand order. Branch offsets are in instructions
(the encoded field), jump targets are byte addresses. Only the VM's instruction set is known.
"""

from opml.vm.constants import MASK32
from opml.vm.state import VMState

# mnemonic → (operand format, opcode, funct or REGIMM rt). See _FIELDS for each format's operands.
_TABLE: dict[str, tuple[str, int, int]] = {
    **{
        m: ("rd,rs,rt", 0, f)
        for m, f in [
            ("add", 0x20),
            ("addu", 0x21),
            ("sub", 0x22),
            ("subu", 0x23),
            ("and", 0x24),
            ("or", 0x25),
            ("xor", 0x26),
            ("nor", 0x27),
            ("slt", 0x2A),
            ("sltu", 0x2B),
            ("movz", 0x0A),
            ("movn", 0x0B),
        ]
    },
    "mul": ("rd,rs,rt", 0x1C, 0x02),
    **{m: ("rd,rt,sa", 0, f) for m, f in [("sll", 0x00), ("srl", 0x02), ("sra", 0x03)]},
    **{m: ("rd,rt,rs", 0, f) for m, f in [("sllv", 0x04), ("srlv", 0x06), ("srav", 0x07)]},
    **{m: ("rs,rt", 0, f) for m, f in [("mult", 0x18), ("multu", 0x19), ("div", 0x1A), ("divu", 0x1B)]},
    **{m: ("rs,rt", 0x1C, f) for m, f in [("madd", 0x00), ("maddu", 0x01), ("msub", 0x04), ("msubu", 0x05)]},
    **{
        m: ("rs,rt,code", 0, f)
        for m, f in [
            ("tge", 0x30),
            ("tgeu", 0x31),
            ("tlt", 0x32),
            ("tltu", 0x33),
            ("teq", 0x34),
            ("tne", 0x36),
        ]
    },
    **{m: ("rd,rs", 0x1C, f) for m, f in [("clz", 0x20), ("clo", 0x21)]},
    "mfhi": ("rd", 0, 0x10),
    "mflo": ("rd", 0, 0x12),
    "mthi": ("rs", 0, 0x11),
    "mtlo": ("rs", 0, 0x13),
    "jr": ("rs", 0, 0x08),
    "jalr": ("rd,rs", 0, 0x09),
    "syscall": ("", 0, 0x0C),
    "sync": ("", 0, 0x0F),
    "break": ("code", 0, 0x0D),
    **{
        m: ("rt,rs,imm", op, 0)
        for m, op in [
            ("addi", 0x08),
            ("addiu", 0x09),
            ("slti", 0x0A),
            ("sltiu", 0x0B),
            ("andi", 0x0C),
            ("ori", 0x0D),
            ("xori", 0x0E),
        ]
    },
    "lui": ("rt,imm", 0x0F, 0),
    **{
        m: ("rt,imm(rs)", op, 0)
        for m, op in [
            ("lb", 0x20),
            ("lh", 0x21),
            ("lwl", 0x22),
            ("lw", 0x23),
            ("lbu", 0x24),
            ("lhu", 0x25),
            ("lwr", 0x26),
            ("sb", 0x28),
            ("sh", 0x29),
            ("swl", 0x2A),
            ("sw", 0x2B),
            ("swr", 0x2E),
            ("ll", 0x30),
            ("sc", 0x38),
            ("pref", 0x33),
        ]
    },
    "beq": ("rs,rt,imm", 0x04, 0),
    "bne": ("rs,rt,imm", 0x05, 0),
    "blez": ("rs,imm", 0x06, 0),
    "bgtz": ("rs,imm", 0x07, 0),
    **{
        m: ("rs,imm", 0x01, rt)
        for m, rt in [("bltz", 0x00), ("bgez", 0x01), ("bltzal", 0x10), ("bgezal", 0x11)]
    },
    "j": ("target", 0x02, 0),
    "jal": ("target", 0x03, 0),
}

# Operand format → the instruction fields its operands fill, in order.
_FIELDS: dict[str, tuple[str, ...]] = {
    "rd,rs,rt": ("rd", "rs", "rt"),
    "rd,rt,sa": ("rd", "rt", "sa"),
    "rd,rt,rs": ("rd", "rt", "rs"),
    "rs,rt": ("rs", "rt"),
    "rs,rt,code": ("rs", "rt", "code10"),
    "rd,rs": ("rd", "rs"),
    "rd": ("rd",),
    "rs": ("rs",),
    "": (),
    "code": ("code20",),
    "rt,rs,imm": ("rt", "rs", "imm"),
    "rt,imm": ("rt", "imm"),
    "rt,imm(rs)": ("rt", "imm", "rs"),
    "rs,rt,imm": ("rs", "rt", "imm"),
    "rs,imm": ("rs", "imm"),
    "target": ("target",),
}
_SHIFTS = {"rs": 21, "rt": 16, "rd": 11, "sa": 6, "code10": 6, "code20": 16}
_MASKS = {"rs": 0x1F, "rt": 0x1F, "rd": 0x1F, "sa": 0x1F, "code10": 0x3FF, "code20": 0x3FF}


def encode(mnemonic: str, *operands: int) -> int:
    """Return the instruction word of ``mnemonic`` with ``operands`` (trailing codes default to 0)."""
    fmt, opcode, selector = _TABLE[mnemonic]
    fields = _FIELDS[fmt]
    if fields and fields[-1].startswith("code") and len(operands) == len(fields) - 1:
        operands = (*operands, 0)
    if len(operands) != len(fields):
        raise ValueError(f"{mnemonic} takes operands {fmt!r}, got {operands}")
    word = opcode << 26
    word |= selector << 16 if opcode == 0x01 else selector if opcode in (0x00, 0x1C) else 0
    for name, value in zip(fields, operands, strict=True):  # lengths checked above
        if name == "imm":
            word |= value & 0xFFFF
        elif name == "target":
            word |= (value >> 2) & 0x03FFFFFF
        else:
            word |= (value & _MASKS[name]) << _SHIFTS[name]
    if mnemonic in ("clz", "clo"):
        word |= ((word >> 11) & 0x1F) << 16  # MIPS32 encodes rd in the rt field too
    return word & MASK32


def load_program(words: list[int], base: int = 0x00400000) -> VMState:
    """Return a fresh state with ``words`` stored from ``base`` and ``pc = base``."""
    state = VMState(pc=base, next_pc=base + 4)
    for k, word in enumerate(words):
        state.memory.write_u32(base + 4 * k, word)
    return state
