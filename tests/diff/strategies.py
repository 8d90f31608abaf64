"""Hypothesis strategies for VM states that execute one chosen instruction form.

Each form in ``FORMS`` encodes one instruction of docs/vm-spec.md §4–§5 from random fields. A state
puts that instruction at ``pc``, fills registers with edge-biased values, and for memory
instructions points the effective address at the instruction's own leaf, a neighbour in the same
page, or a far page, so that every data-proof shape (§3.3) is exercised.
"""

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from opml.vm.memory import Memory
from opml.vm.state import VMState

U32 = 0xFFFFFFFF
EDGE_VALUES = [
    0,
    1,
    2,
    3,
    4,
    31,
    32,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0x80000001,
    0xFFFFFFFE,
    U32,
]

word = st.one_of(st.sampled_from(EDGE_VALUES), st.integers(0, U32))
reg = st.integers(0, 31)
imm16 = st.one_of(st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF]), st.integers(0, 0xFFFF))


def r_type(funct: int, rs: int = 0, rt: int = 0, rd: int = 0, sa: int = 0) -> int:
    return (rs << 21) | (rt << 16) | (rd << 11) | (sa << 6) | funct


def i_type(opcode: int, rs: int, rt: int, imm: int) -> int:
    return (opcode << 26) | (rs << 21) | (rt << 16) | (imm & 0xFFFF)


def special2(funct: int, rs: int, rt: int, rd: int) -> int:
    return (0x1C << 26) | r_type(funct, rs, rt, rd)


@dataclass(frozen=True)
class Form:
    """An instruction form: how to draw its encoding, and its memory access size (0 = none)."""

    name: str
    encoding: st.SearchStrategy
    access_size: int = 0


def _special(funct: int) -> st.SearchStrategy:
    return st.builds(lambda rs, rt, rd, sa: r_type(funct, rs, rt, rd, sa), reg, reg, reg, st.integers(0, 31))


def _imm(opcode: int) -> st.SearchStrategy:
    return st.builds(lambda rs, rt, imm: i_type(opcode, rs, rt, imm), reg, reg, imm16)


def _regimm(rt_code: int) -> st.SearchStrategy:
    return st.builds(lambda rs, imm: i_type(1, rs, rt_code, imm), reg, imm16)


def _jump(opcode: int) -> st.SearchStrategy:
    return st.builds(lambda target: (opcode << 26) | target, st.integers(0, (1 << 26) - 1))


def _special2(funct: int) -> st.SearchStrategy:
    return st.builds(lambda rs, rt, rd: special2(funct, rs, rt, rd), reg, reg, reg)


def _trap_code(funct: int) -> st.SearchStrategy:
    return st.builds(
        lambda rs, rt, code: r_type(funct, rs, rt) | (code << 6), reg, reg, st.integers(0, 0x3FF)
    )


SPECIAL = {
    "sll": 0,
    "srl": 2,
    "sra": 3,
    "sllv": 4,
    "srlv": 6,
    "srav": 7,
    "jr": 8,
    "jalr": 9,
    "movz": 10,
    "movn": 11,
    "sync": 15,
    "mfhi": 16,
    "mthi": 17,
    "mflo": 18,
    "mtlo": 19,
    "mult": 24,
    "multu": 25,
    "div": 26,
    "divu": 27,
    "add": 32,
    "addu": 33,
    "sub": 34,
    "subu": 35,
    "and": 36,
    "or": 37,
    "xor": 38,
    "nor": 39,
    "slt": 42,
    "sltu": 43,
}
TRAPS = {"tge": 48, "tgeu": 49, "tlt": 50, "tltu": 51, "teq": 52, "tne": 54}
IMMEDIATE = {
    "beq": 4,
    "bne": 5,
    "blez": 6,
    "bgtz": 7,
    "addi": 8,
    "addiu": 9,
    "slti": 10,
    "sltiu": 11,
    "andi": 12,
    "ori": 13,
    "xori": 14,
    "lui": 15,
    "pref": 51,
}
REGIMM = {"bltz": 0, "bgez": 1, "bltzal": 16, "bgezal": 17}
SPECIAL2 = {"madd": 0, "maddu": 1, "mul": 2, "msub": 4, "msubu": 5, "clz": 32, "clo": 33}
MEMORY = {
    "lb": (32, 1),
    "lh": (33, 2),
    "lwl": (34, 1),
    "lw": (35, 4),
    "lbu": (36, 1),
    "lhu": (37, 2),
    "lwr": (38, 1),
    "sb": (40, 1),
    "sh": (41, 2),
    "swl": (42, 1),
    "sw": (43, 4),
    "swr": (46, 1),
    "ll": (48, 4),
    "sc": (56, 4),
}

FORMS: dict[str, Form] = {}
FORMS.update({name: Form(name, _special(funct)) for name, funct in SPECIAL.items()})
FORMS.update({name: Form(name, _trap_code(funct)) for name, funct in TRAPS.items()})
FORMS.update({name: Form(name, _imm(opcode)) for name, opcode in IMMEDIATE.items()})
FORMS.update({name: Form(name, _regimm(code)) for name, code in REGIMM.items()})
FORMS.update({name: Form(name, _special2(funct)) for name, funct in SPECIAL2.items()})
FORMS.update({name: Form(name, _imm(opcode), size) for name, (opcode, size) in MEMORY.items()})
FORMS["j"] = Form("j", _jump(2))
FORMS["jal"] = Form("jal", _jump(3))
FORMS["break"] = Form("break", st.builds(lambda code: (code << 6) | 13, st.integers(0, (1 << 20) - 1)))
FORMS["syscall"] = Form("syscall", st.just(12))
# Anything at all: unknown encodings must panic identically in both VMs.
FORMS["random"] = Form("random", st.integers(0, U32))

SYSCALL_NUMBERS = [4001, 4246, 4004, 4045, 4090, 4091, 4000, 4283, 0, U32]
TEXT_BASE = 0x00400000


def _address_near(pc: int, draw: Callable) -> int:
    """A data address in the pc's leaf, in its page, in a neighbouring page, or anywhere."""
    where = draw(st.sampled_from(["same_leaf", "same_page", "near", "stack", "anywhere"]))
    if where == "same_leaf":
        return (pc & ~31) + draw(st.integers(0, 31))
    if where == "same_page":
        return (pc & ~0xFFF) + draw(st.integers(0, 0xFFF))
    if where == "near":
        return (pc + draw(st.integers(-(1 << 16), 1 << 16))) & U32
    if where == "stack":
        return 0x7FFFF000 - draw(st.integers(0, 1 << 14))
    return draw(st.integers(0, U32))


@st.composite
def states(draw, form: Form) -> VMState:
    """A running (or sometimes exited) state whose next instruction has the given form."""
    insn = draw(form.encoding)
    memory = Memory()
    # Unrelated non-zero pages make the proofs' siblings non-trivial.
    for _ in range(draw(st.integers(0, 3))):
        page = draw(st.integers(0, (1 << 20) - 1))
        memory.write_bytes(page << 12, draw(st.binary(min_size=1, max_size=64)))

    pc = draw(
        st.one_of(
            st.integers(0, 0x3FF).map(lambda k: TEXT_BASE + 4 * k),
            st.integers(0, (1 << 30) - 1).map(lambda k: 4 * k),
        )
    )
    if draw(st.integers(0, 19)) == 0:  # occasionally misaligned: a SIGBUS panic
        pc |= draw(st.integers(1, 3))
    in_delay_slot = draw(st.integers(0, 9)) == 0
    next_pc = draw(st.integers(0, U32 // 4).map(lambda k: 4 * k)) if in_delay_slot else (pc + 4) & U32

    registers = [0] + [draw(word) for _ in range(31)]
    if form.access_size:
        base, imm = (insn >> 21) & 31, insn & 0xFFFF
        addr = _address_near(pc, draw)
        size = form.access_size
        if draw(st.integers(0, 9)) != 0:  # mostly aligned; sometimes a SIGBUS panic
            addr &= ~(size - 1)
        offset = imm - 0x10000 if imm & 0x8000 else imm
        if base != 0:
            registers[base] = (addr - offset) & U32
        data_leaf = (registers[base] + offset) & U32 & ~31
        memory.write_bytes(data_leaf, draw(st.binary(min_size=32, max_size=32)))
    if form.name == "syscall":
        registers[2] = draw(st.sampled_from(SYSCALL_NUMBERS))
        registers[4] = draw(st.one_of(word, st.sampled_from([0x10000000, 0x3FFFFFFF, 0x40000000])))
        registers[5] = draw(st.one_of(word, st.integers(0, 1 << 20)))
        registers[7] = draw(st.sampled_from([0x800, 0x802, 0x810, 0, U32]))

    memory.write_u32(pc & ~3, insn)
    exited = draw(st.integers(0, 19)) == 0
    return VMState(
        memory=memory,
        preimage_key=draw(st.binary(min_size=32, max_size=32)),
        pc=pc,
        next_pc=next_pc,
        lo=draw(word),
        hi=draw(word),
        brk=draw(st.integers(0, 0x3FFFF).map(lambda k: k << 12)),
        heap=draw(st.integers(0x40000, 0x70000).map(lambda k: k << 12)),
        exit_code=draw(st.integers(0, 255)) if exited else 0,
        exited=exited,
        step=draw(st.one_of(st.integers(0, (1 << 63) - 1), st.just((1 << 64) - 1))),  # wraps (§4.1)
        registers=registers,
        stdout=None,
        stderr=None,
    )


# --- Preimage oracle steps (vm-spec §5.5) ----------------------------------------------------------

SYS_PREIMAGE_SELECT, SYS_PREIMAGE_LENGTH, SYS_PREIMAGE_READ = 9001, 9002, 9003
PREIMAGE_KINDS = ("keccak", "chunk-merkle", "local")
UNKNOWN_KIND = "unknown"  # a key of no known type, e.g. nothing selected yet: EINVAL, no oracle call
MAX_DATA = {"keccak": 200, "chunk-merkle": 300, "local": 32, UNKNOWN_KIND: 0}


@dataclass(frozen=True)
class OracleCase:
    """A state whose next step is a preimage syscall, and the preimage it is about.

    ``ident`` names the local value for ``kind == "local"``; the key the guest uses is then the
    local identifier key, which the step localizes with its caller and context.
    """

    state: VMState
    syscall: int
    kind: str
    data: bytes
    ident: int


def _near_boundaries(draw, length: int) -> int:
    """An offset at or around part boundaries and the end of the data."""
    candidates = [0, 1, 31, 32, 33, 63, 64, length - 1, length, length + 1, length + 40]
    return draw(st.one_of(st.sampled_from([c for c in candidates if c >= 0]), st.integers(0, length + 64)))


@st.composite
def oracle_states(draw, syscall: int, kind: str) -> OracleCase:
    """A running state at a ``syscall`` (9001–9003) instruction about a preimage of type ``kind``."""
    limit = MAX_DATA[kind]
    length = draw(
        st.one_of(
            st.sampled_from([n for n in (0, 1, 31, 32, 33, 64, 95, 100, 200) if n <= limit]),
            st.integers(0, limit),
        )
    )
    data = draw(st.binary(min_size=length, max_size=length))
    ident = draw(st.integers(1, 5))
    state = draw(states(FORMS["syscall"]))
    state.exited, state.exit_code = False, 0
    state.pc &= ~3
    state.next_pc = (state.pc + 4) & U32
    state.registers[2] = syscall
    leaf_area = draw(st.sampled_from(["same_leaf", "stack", "anywhere"]))
    if syscall == SYS_PREIMAGE_SELECT:
        key_addr = _address_near(state.pc, draw) if leaf_area != "stack" else 0x7FFFE000
        if draw(st.integers(0, 9)) != 0:  # mostly aligned; sometimes EINVAL
            key_addr &= ~31
        state.registers[4] = key_addr
        # The key word is written by the harness once the key is known (it depends on the data);
        # here only the leaf must not overlap the instruction.
        if key_addr % 32 == 0 and (key_addr & ~31) == (state.pc & ~31):
            state.registers[4] = (key_addr + 64) & U32
    else:
        state.registers[4] = _near_boundaries(draw, len(data))  # offset
        state.registers[5] = _address_near(state.pc, draw)  # buf
        state.registers[6] = draw(st.sampled_from([0, 1, 3, 4, 31, 32, 33, 100, U32]))
    return OracleCase(state=state, syscall=syscall, kind=kind, data=data, ident=ident)
