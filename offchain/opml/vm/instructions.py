"""Decoding and the pure arithmetic of MIPS32 instructions (vm-spec §4.2–§4.5).

Nothing here changes a state: every function maps register values to results. ``step.py`` looks
instructions up in these tables and applies the results to the state. All values are ``u32``
(Python ints in ``[0, 2^32)``) unless a name says ``signed``.
"""

from collections.abc import Callable
from dataclasses import dataclass

from opml.vm.constants import MASK32, MASK64

# --- Opcodes (bits 31…26) and functions (bits 5…0) that step.py dispatches on by hand -----------
OP_SPECIAL = 0x00
OP_REGIMM = 0x01
OP_J = 0x02
OP_JAL = 0x03
OP_ADDI = 0x08
OP_SPECIAL2 = 0x1C
OP_PREF = 0x33
OP_SC = 0x38

FUNCT_MOVZ = 0x0A
FUNCT_MOVN = 0x0B
FUNCT_SYSCALL = 0x0C
FUNCT_BREAK = 0x0D
FUNCT_SYNC = 0x0F
FUNCT_MFHI = 0x10
FUNCT_MTHI = 0x11
FUNCT_MFLO = 0x12
FUNCT_MTLO = 0x13
FUNCT_JR = 0x08
FUNCT_JALR = 0x09


# --- Fields ----------------------------------------------------------------------------------------


def rs_field(insn: int) -> int:
    """Return register number ``rs`` (bits 25…21)."""
    return (insn >> 21) & 0x1F


def rt_field(insn: int) -> int:
    """Return register number ``rt`` (bits 20…16)."""
    return (insn >> 16) & 0x1F


def rd_field(insn: int) -> int:
    """Return register number ``rd`` (bits 15…11)."""
    return (insn >> 11) & 0x1F


def sa_field(insn: int) -> int:
    """Return the shift amount ``sa`` (bits 10…6)."""
    return (insn >> 6) & 0x1F


def sext16(x: int) -> int:
    """Sign-extend the 16-bit value ``x`` to a u32."""
    return (x & 0xFFFF) - 0x10000 & MASK32 if x & 0x8000 else x & 0xFFFF


def sext8(x: int) -> int:
    """Sign-extend the 8-bit value ``x`` to a u32."""
    return (x & 0xFF) - 0x100 & MASK32 if x & 0x80 else x & 0xFF


def signed(x: int) -> int:
    """Return the u32 ``x`` read as a two's-complement signed integer."""
    return x - 0x100000000 if x & 0x80000000 else x


def fits_signed32(x: int) -> bool:
    """Whether the exact integer ``x`` is representable as a signed 32-bit value (no overflow)."""
    return -0x80000000 <= x <= 0x7FFFFFFF


# --- ALU (§4.3) -------------------------------------------------------------------------------------

# SPECIAL functs with ``rd = f(rs, rt, sa) mod 2^32``.
SPECIAL_ALU: dict[int, Callable[[int, int, int], int]] = {
    0x00: lambda rs, rt, sa: rt << sa,  # sll
    0x02: lambda rs, rt, sa: rt >> sa,  # srl
    0x03: lambda rs, rt, sa: signed(rt) >> sa,  # sra
    0x04: lambda rs, rt, sa: rt << (rs & 31),  # sllv
    0x06: lambda rs, rt, sa: rt >> (rs & 31),  # srlv
    0x07: lambda rs, rt, sa: signed(rt) >> (rs & 31),  # srav
    0x21: lambda rs, rt, sa: rs + rt,  # addu
    0x23: lambda rs, rt, sa: rs - rt,  # subu
    0x24: lambda rs, rt, sa: rs & rt,  # and
    0x25: lambda rs, rt, sa: rs | rt,  # or
    0x26: lambda rs, rt, sa: rs ^ rt,  # xor
    0x27: lambda rs, rt, sa: ~(rs | rt),  # nor
    0x2A: lambda rs, rt, sa: int(signed(rs) < signed(rt)),  # slt
    0x2B: lambda rs, rt, sa: int(rs < rt),  # sltu
}

# SPECIAL functs with an exact signed result ``rd = f(rs, rt)``; overflow is a SIGFPE panic.
SPECIAL_ALU_SIGNED: dict[int, Callable[[int, int], int]] = {
    0x20: lambda rs, rt: signed(rs) + signed(rt),  # add
    0x22: lambda rs, rt: signed(rs) - signed(rt),  # sub
}

# I-type opcodes with ``rt = f(rs, imm) mod 2^32``; ``imm`` is the raw 16-bit field.
# (addi, opcode 8, is the signed-overflow form of addiu and is handled with SPECIAL_ALU_SIGNED.)
IMMEDIATE_ALU: dict[int, Callable[[int, int], int]] = {
    0x09: lambda rs, imm: rs + sext16(imm),  # addiu
    0x0A: lambda rs, imm: int(signed(rs) < signed(sext16(imm))),  # slti
    0x0B: lambda rs, imm: int(rs < sext16(imm)),  # sltiu
    0x0C: lambda rs, imm: rs & imm,  # andi
    0x0D: lambda rs, imm: rs | imm,  # ori
    0x0E: lambda rs, imm: rs ^ imm,  # xori
    0x0F: lambda rs, imm: imm << 16,  # lui
}


def clz(x: int) -> int:
    """Return the number of leading zero bits of the u32 ``x`` (32 for 0)."""
    return 32 - x.bit_length()


# SPECIAL2 functs with ``rd = f(rs, rt) mod 2^32``.
SPECIAL2_ALU: dict[int, Callable[[int, int], int]] = {
    0x02: lambda rs, rt: signed(rs) * signed(rt),  # mul (hi and lo unchanged)
    0x20: lambda rs, rt: clz(rs),  # clz
    0x21: lambda rs, rt: clz(~rs & MASK32),  # clo
}


# --- Multiply and divide into hi:lo (§4.3) ---------------------------------------------------------


def _split64(x: int) -> tuple[int, int]:
    """Return ``(hi, lo)`` of ``x mod 2^64``."""
    x &= MASK64
    return x >> 32, x & MASK32


def div(rs: int, rt: int) -> tuple[int, int]:
    """Return ``(hi, lo)`` = (remainder, quotient) of signed ``rs / rt``, truncated toward zero.

    A zero divisor, and ``0x80000000 / -1``, divide by 1 instead (what qemu-mipsel computes).
    """
    if rt == 0 or (rs == 0x80000000 and rt == MASK32):
        rt = 1
    a, b = signed(rs), signed(rt)
    quotient = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        quotient = -quotient
    return (a - quotient * b) & MASK32, quotient & MASK32


def divu(rs: int, rt: int) -> tuple[int, int]:
    """Return ``(hi, lo)`` = (remainder, quotient) of unsigned ``rs / rt``; a zero divisor is 1."""
    if rt == 0:
        rt = 1
    return rs % rt, rs // rt


# Functs with ``(hi, lo) = f(rs, rt, hi:lo)``; ``acc`` is the 64-bit ``hi << 32 | lo``.
SPECIAL_MULT_DIV: dict[int, Callable[[int, int, int], tuple[int, int]]] = {
    0x18: lambda rs, rt, acc: _split64(signed(rs) * signed(rt)),  # mult
    0x19: lambda rs, rt, acc: _split64(rs * rt),  # multu
    0x1A: lambda rs, rt, acc: div(rs, rt),  # div
    0x1B: lambda rs, rt, acc: divu(rs, rt),  # divu
}
SPECIAL2_MULT_ACC: dict[int, Callable[[int, int, int], tuple[int, int]]] = {
    0x00: lambda rs, rt, acc: _split64(acc + signed(rs) * signed(rt)),  # madd
    0x01: lambda rs, rt, acc: _split64(acc + rs * rt),  # maddu
    0x04: lambda rs, rt, acc: _split64(acc - signed(rs) * signed(rt)),  # msub
    0x05: lambda rs, rt, acc: _split64(acc - rs * rt),  # msubu
}


# --- Branches (§4.2) and traps (§4.5) --------------------------------------------------------------

# Opcodes of conditional branches: taken iff ``f(rs, rt)``.
BRANCH_CONDITIONS: dict[int, Callable[[int, int], bool]] = {
    0x04: lambda rs, rt: rs == rt,  # beq
    0x05: lambda rs, rt: rs != rt,  # bne
    0x06: lambda rs, rt: signed(rs) <= 0,  # blez
    0x07: lambda rs, rt: signed(rs) > 0,  # bgtz
}

# REGIMM ``rt`` fields: taken iff ``f(rs)``; the link forms write $31 whether taken or not.
REGIMM_CONDITIONS: dict[int, Callable[[int], bool]] = {
    0x00: lambda rs: signed(rs) < 0,  # bltz
    0x01: lambda rs: signed(rs) >= 0,  # bgez
    0x10: lambda rs: signed(rs) < 0,  # bltzal
    0x11: lambda rs: signed(rs) >= 0,  # bgezal (bal is bgezal $0)
}
REGIMM_LINKING = frozenset({0x10, 0x11})

# SPECIAL functs of the register trap instructions: panic SIGTRAP iff ``f(rs, rt)``, whatever the code.
TRAP_CONDITIONS: dict[int, Callable[[int, int], bool]] = {
    0x30: lambda rs, rt: signed(rs) >= signed(rt),  # tge
    0x31: lambda rs, rt: rs >= rt,  # tgeu
    0x32: lambda rs, rt: signed(rs) < signed(rt),  # tlt
    0x33: lambda rs, rt: rs < rt,  # tltu
    0x34: lambda rs, rt: rs == rt,  # teq
    0x36: lambda rs, rt: rs != rt,  # tne
}


def branch_target(pc: int, insn: int) -> int:
    """Return ``pc + 4 + (sext16(offset) << 2)`` of a conditional branch at ``pc``."""
    return (pc + 4 + (sext16(insn) << 2)) & MASK32


def jump_target(pc: int, insn: int) -> int:
    """Return the target of ``j``/``jal`` at ``pc``: the 256 MiB region of ``pc + 4``."""
    return ((pc + 4) & 0xF0000000) | ((insn & 0x03FFFFFF) << 2)


# --- Loads and stores (§4.4) -----------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryOp:
    """A load or store on the aligned word ``w`` at ``addr & ~3``, with byte offset ``b = addr & 3``.

    ``alignment``: the access panics with SIGBUS unless ``addr % alignment == 0``.
    ``apply(w, b, rt)``: for a load the new ``rt``, for a store the new ``w``.
    """

    alignment: int
    apply: Callable[[int, int, int], int]


def _merge(w: int, b: int, value: int, mask: int) -> int:
    """Return ``w`` with the bits ``mask << 8·b`` replaced by ``value``'s."""
    shift = 8 * b
    return (w & ~(mask << shift) & MASK32) | ((value & mask) << shift)


LOADS: dict[int, MemoryOp] = {
    0x20: MemoryOp(1, lambda w, b, rt: sext8(w >> 8 * b)),  # lb
    0x21: MemoryOp(2, lambda w, b, rt: sext16(w >> 8 * b)),  # lh
    0x22: MemoryOp(1, lambda w, b, rt: ((w << 8 * (3 - b)) | (rt & (MASK32 >> 8 * (b + 1)))) & MASK32),  # lwl
    0x23: MemoryOp(4, lambda w, b, rt: w),  # lw
    0x24: MemoryOp(1, lambda w, b, rt: (w >> 8 * b) & 0xFF),  # lbu
    0x25: MemoryOp(2, lambda w, b, rt: (w >> 8 * b) & 0xFFFF),  # lhu
    0x26: MemoryOp(1, lambda w, b, rt: (w >> 8 * b) | (rt & ~(MASK32 >> 8 * b) & MASK32)),  # lwr
    0x30: MemoryOp(4, lambda w, b, rt: w),  # ll (single core: a plain lw)
}

STORES: dict[int, MemoryOp] = {
    0x28: MemoryOp(1, lambda w, b, rt: _merge(w, b, rt, 0xFF)),  # sb
    0x29: MemoryOp(2, lambda w, b, rt: _merge(w, b, rt, 0xFFFF)),  # sh
    0x2A: MemoryOp(1, lambda w, b, rt: (rt >> 8 * (3 - b)) | (w & ~(MASK32 >> 8 * (3 - b)) & MASK32)),  # swl
    0x2B: MemoryOp(4, lambda w, b, rt: rt),  # sw
    0x2E: MemoryOp(1, lambda w, b, rt: ((rt << 8 * b) | (w & ((1 << 8 * b) - 1))) & MASK32),  # swr
    0x38: MemoryOp(4, lambda w, b, rt: rt),  # sc (single core: always succeeds, then rt = 1)
}

MEMORY_OPS: dict[int, MemoryOp] = LOADS | STORES


def load_store_address(registers: list[int], insn: int) -> int | None:
    """Return the effective address of ``insn`` if it is a load or store whose access is aligned.

    None means: not a load or store, or a misaligned one (which panics SIGBUS before reading any
    data). Every access lies inside the aligned word ``addr & ~3``, hence inside leaf ``addr >> 5``.
    """
    op = MEMORY_OPS.get(insn >> 26)
    if op is None:
        return None
    addr = (registers[rs_field(insn)] + sext16(insn)) & MASK32
    return None if addr % op.alignment else addr
