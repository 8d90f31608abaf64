"""Execution of one MIPS32 instruction (vm-spec §4), beside ``contracts/vm/lib/MIPSInstructions.sol``.

Same functions under the same names (snake_case), same arguments (``rs``/``rt`` are the register
values, read once before anything is written) and the same order of checks. Opcodes and functions are
decimal on both sides. The arithmetic is written as tables (``SPECIAL_ALU``, ``LOADS``, …) of pure
functions on ``u32`` values (Python ints in ``[0, 2^32)``); the handlers apply their results.

Every handler ends the step in exactly one of three ways: ``advance`` (the ordinary update), a jump
or branch, or ``panic``; ``syscall`` is handled in :mod:`opml.vm.syscalls`. Memory is touched only
through aligned ``read_u32``/``write_u32``, so the same code runs over the reference ``Memory``, the
witness recorder and the proof verifier (:mod:`opml.vm.witness`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opml.vm.constants import MASK32, MASK64, PANIC_EXIT_BASE, REG_RA, SIGBUS, SIGFPE, SIGILL, SIGTRAP
from opml.vm.preimage import PreimageOracle
from opml.vm.syscalls import handle_syscall

if TYPE_CHECKING:
    from opml.vm.state import VMState

# --- Opcodes (bits 31…26) and functions (bits 5…0) dispatched on by name --------------------------
OP_SPECIAL = 0
OP_REGIMM = 1
OP_J = 2
OP_JAL = 3
OP_ADDI = 8
OP_SPECIAL2 = 28
OP_PREF = 51
OP_SC = 56

FUNCT_JR = 8
FUNCT_JALR = 9
FUNCT_MOVZ = 10
FUNCT_MOVN = 11
FUNCT_SYSCALL = 12
FUNCT_BREAK = 13
FUNCT_SYNC = 15
FUNCT_MFHI = 16
FUNCT_MTHI = 17
FUNCT_MFLO = 18
FUNCT_MTLO = 19


# --- Fields and helpers ----------------------------------------------------------------------------


def rs_field(insn: int) -> int:
    """Return register number ``rs`` (bits 25…21)."""
    return (insn >> 21) & 31


def rt_field(insn: int) -> int:
    """Return register number ``rt`` (bits 20…16)."""
    return (insn >> 16) & 31


def rd_field(insn: int) -> int:
    """Return register number ``rd`` (bits 15…11)."""
    return (insn >> 11) & 31


def sign_extend_16(x: int) -> int:
    """Sign-extend the low 16 bits of ``x`` to a u32."""
    return (x & 0xFFFF) - 0x10000 & MASK32 if x & 0x8000 else x & 0xFFFF


def sign_extend_8(x: int) -> int:
    """Sign-extend the low 8 bits of ``x`` to a u32."""
    return (x & 0xFF) - 0x100 & MASK32 if x & 0x80 else x & 0xFF


def signed(x: int) -> int:
    """Return the u32 ``x`` read as a two's-complement signed integer."""
    return x - 0x100000000 if x & 0x80000000 else x


def fits_signed32(x: int) -> bool:
    """Whether the exact integer ``x`` is representable as a signed 32-bit value (no overflow)."""
    return -0x80000000 <= x <= 0x7FFFFFFF


def count_leading_zeros(x: int) -> int:
    """Return the number of leading zero bits of the u32 ``x`` (32 for 0)."""
    return 32 - x.bit_length()


# --- Arithmetic tables (§4.3) ------------------------------------------------------------------------

# SPECIAL functs with ``rd = f(rs, rt, sa) mod 2^32``.
SPECIAL_ALU: dict[int, Callable[[int, int, int], int]] = {
    0: lambda rs, rt, sa: rt << sa,  # sll
    2: lambda rs, rt, sa: rt >> sa,  # srl
    3: lambda rs, rt, sa: signed(rt) >> sa,  # sra
    4: lambda rs, rt, sa: rt << (rs & 31),  # sllv
    6: lambda rs, rt, sa: rt >> (rs & 31),  # srlv
    7: lambda rs, rt, sa: signed(rt) >> (rs & 31),  # srav
    33: lambda rs, rt, sa: rs + rt,  # addu
    35: lambda rs, rt, sa: rs - rt,  # subu
    36: lambda rs, rt, sa: rs & rt,  # and
    37: lambda rs, rt, sa: rs | rt,  # or
    38: lambda rs, rt, sa: rs ^ rt,  # xor
    39: lambda rs, rt, sa: ~(rs | rt),  # nor
    42: lambda rs, rt, sa: int(signed(rs) < signed(rt)),  # slt
    43: lambda rs, rt, sa: int(rs < rt),  # sltu
}

# SPECIAL functs with an exact signed result ``rd = f(rs, rt)``; overflow is a SIGFPE panic.
SPECIAL_ALU_SIGNED: dict[int, Callable[[int, int], int]] = {
    32: lambda rs, rt: signed(rs) + signed(rt),  # add
    34: lambda rs, rt: signed(rs) - signed(rt),  # sub
}

# I-type opcodes with ``rt = f(rs, imm) mod 2^32``; ``imm`` is the raw 16-bit field. (addi, the
# signed-overflow form of addiu, is the one case of ``execute_immediate`` outside this table.)
IMMEDIATE_ALU: dict[int, Callable[[int, int], int]] = {
    9: lambda rs, imm: rs + sign_extend_16(imm),  # addiu
    10: lambda rs, imm: int(signed(rs) < signed(sign_extend_16(imm))),  # slti
    11: lambda rs, imm: int(rs < sign_extend_16(imm)),  # sltiu
    12: lambda rs, imm: rs & imm,  # andi
    13: lambda rs, imm: rs | imm,  # ori
    14: lambda rs, imm: rs ^ imm,  # xori
    15: lambda rs, imm: imm << 16,  # lui
}

# SPECIAL2 functs with ``rd = f(rs, rt) mod 2^32``.
SPECIAL2_ALU: dict[int, Callable[[int, int], int]] = {
    2: lambda rs, rt: signed(rs) * signed(rt),  # mul (hi and lo unchanged)
    32: lambda rs, rt: count_leading_zeros(rs),  # clz
    33: lambda rs, rt: count_leading_zeros(~rs & MASK32),  # clo
}


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
    24: lambda rs, rt, acc: _split64(signed(rs) * signed(rt)),  # mult
    25: lambda rs, rt, acc: _split64(rs * rt),  # multu
    26: lambda rs, rt, acc: div(rs, rt),  # div
    27: lambda rs, rt, acc: divu(rs, rt),  # divu
}
SPECIAL2_MULT_ACC: dict[int, Callable[[int, int, int], tuple[int, int]]] = {
    0: lambda rs, rt, acc: _split64(acc + signed(rs) * signed(rt)),  # madd
    1: lambda rs, rt, acc: _split64(acc + rs * rt),  # maddu
    4: lambda rs, rt, acc: _split64(acc - signed(rs) * signed(rt)),  # msub
    5: lambda rs, rt, acc: _split64(acc - rs * rt),  # msubu
}

# --- Branch and trap conditions (§4.2, §4.5) ---------------------------------------------------------

# Opcodes of conditional branches: taken iff ``f(rs, rt)``.
BRANCH_CONDITIONS: dict[int, Callable[[int, int], bool]] = {
    4: lambda rs, rt: rs == rt,  # beq
    5: lambda rs, rt: rs != rt,  # bne
    6: lambda rs, rt: signed(rs) <= 0,  # blez
    7: lambda rs, rt: signed(rs) > 0,  # bgtz
}

# REGIMM ``rt`` fields: taken iff ``f(rs)``; the link forms write $31 whether taken or not.
REGIMM_CONDITIONS: dict[int, Callable[[int], bool]] = {
    0: lambda rs: signed(rs) < 0,  # bltz
    1: lambda rs: signed(rs) >= 0,  # bgez
    16: lambda rs: signed(rs) < 0,  # bltzal
    17: lambda rs: signed(rs) >= 0,  # bgezal (bal is bgezal $0)
}
REGIMM_LINKING = frozenset({16, 17})

# SPECIAL functs of the register trap instructions: panic SIGTRAP iff ``f(rs, rt)``, whatever the code.
TRAP_CONDITIONS: dict[int, Callable[[int, int], bool]] = {
    48: lambda rs, rt: signed(rs) >= signed(rt),  # tge
    49: lambda rs, rt: rs >= rt,  # tgeu
    50: lambda rs, rt: signed(rs) < signed(rt),  # tlt
    51: lambda rs, rt: rs < rt,  # tltu
    52: lambda rs, rt: rs == rt,  # teq
    54: lambda rs, rt: rs != rt,  # tne
}

# --- Loads and stores (§4.4) -------------------------------------------------------------------------


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
    32: MemoryOp(1, lambda w, b, rt: sign_extend_8(w >> 8 * b)),  # lb
    33: MemoryOp(2, lambda w, b, rt: sign_extend_16(w >> 8 * b)),  # lh
    34: MemoryOp(1, lambda w, b, rt: ((w << 8 * (3 - b)) | (rt & (MASK32 >> 8 * (b + 1)))) & MASK32),  # lwl
    35: MemoryOp(4, lambda w, b, rt: w),  # lw
    36: MemoryOp(1, lambda w, b, rt: (w >> 8 * b) & 0xFF),  # lbu
    37: MemoryOp(2, lambda w, b, rt: (w >> 8 * b) & 0xFFFF),  # lhu
    38: MemoryOp(1, lambda w, b, rt: (w >> 8 * b) | (rt & ~(MASK32 >> 8 * b) & MASK32)),  # lwr
    48: MemoryOp(4, lambda w, b, rt: w),  # ll (single core: a plain lw)
}

STORES: dict[int, MemoryOp] = {
    40: MemoryOp(1, lambda w, b, rt: _merge(w, b, rt, 0xFF)),  # sb
    41: MemoryOp(2, lambda w, b, rt: _merge(w, b, rt, 0xFFFF)),  # sh
    42: MemoryOp(1, lambda w, b, rt: (rt >> 8 * (3 - b)) | (w & ~(MASK32 >> 8 * (3 - b)) & MASK32)),  # swl
    43: MemoryOp(4, lambda w, b, rt: rt),  # sw
    46: MemoryOp(1, lambda w, b, rt: ((rt << 8 * b) | (w & ((1 << 8 * b) - 1))) & MASK32),  # swr
    56: MemoryOp(4, lambda w, b, rt: rt),  # sc (single core: always succeeds, then rt = 1)
}

MEMORY_OPS: dict[int, MemoryOp] = LOADS | STORES

# --- Execution (§4.1 step 6) -------------------------------------------------------------------------


def exec_mips_core_step_logic(state: VMState, insn: int, oracle: PreimageOracle | None = None) -> None:
    """Execute the instruction word ``insn`` at ``state.pc``; an unknown encoding is SIGILL.

    Dispatch in the contract's order: SPECIAL (jumps, ``syscall``, ``break``, hi/lo, traps,
    ``movz``/``movn``, ``sync``, ALU), ``j``/``jal``, branches, I-type ALU, SPECIAL2, ``pref``,
    loads and stores.
    """
    opcode = insn >> 26
    rs = state.registers[rs_field(insn)]
    rt = state.registers[rt_field(insn)]
    if opcode == OP_SPECIAL:
        funct = insn & 63
        if funct in (FUNCT_JR, FUNCT_JALR):
            return handle_jump(state, insn, rs)
        if funct == FUNCT_SYSCALL:
            return handle_syscall(state, oracle)
        if funct == FUNCT_BREAK:
            return panic(state, SIGTRAP)
        if funct in (FUNCT_MFHI, FUNCT_MTHI, FUNCT_MFLO, FUNCT_MTLO) or funct in SPECIAL_MULT_DIV:
            return handle_hi_lo(state, insn, rs, rt)
        if funct in TRAP_CONDITIONS:
            return handle_trap(state, insn, rs, rt)
        if funct in (FUNCT_MOVZ, FUNCT_MOVN):
            if (rt == 0) == (funct == FUNCT_MOVZ):
                set_register(state, rd_field(insn), rs)
            return advance(state)
        if funct == FUNCT_SYNC:
            return advance(state)
        result, signal = execute_special(insn, rs, rt)
        if signal:
            return panic(state, signal)
        set_register(state, rd_field(insn), result)
        return advance(state)
    if opcode in (OP_J, OP_JAL):
        return handle_jump(state, insn, rs)
    if opcode == OP_REGIMM or opcode in BRANCH_CONDITIONS:
        return handle_branch(state, insn, rs, rt)
    if opcode == OP_ADDI or opcode in IMMEDIATE_ALU:
        result, signal = execute_immediate(insn, rs)
        if signal:
            return panic(state, signal)
        set_register(state, rt_field(insn), result)
        return advance(state)
    if opcode == OP_SPECIAL2:
        funct = insn & 63
        if funct in SPECIAL2_MULT_ACC:
            return handle_hi_lo(state, insn, rs, rt)
        if funct not in SPECIAL2_ALU:
            return panic(state, SIGILL)
        set_register(state, rd_field(insn), SPECIAL2_ALU[funct](rs, rt))
        return advance(state)
    if opcode == OP_PREF:
        return advance(state)
    if opcode >= 32:
        return exec_load_store(state, insn, rs, rt)
    return panic(state, SIGILL)


def execute_special(insn: int, rs: int, rt: int) -> tuple[int, int]:
    """``(result, 0)`` of a SPECIAL ALU function, or ``(0, signal)``: SIGFPE on ``add``/``sub``
    overflow, SIGILL for an unknown function."""
    funct = insn & 63
    if funct in SPECIAL_ALU_SIGNED:
        result = SPECIAL_ALU_SIGNED[funct](rs, rt)
        return (result & MASK32, 0) if fits_signed32(result) else (0, SIGFPE)
    if funct in SPECIAL_ALU:
        return SPECIAL_ALU[funct](rs, rt, (insn >> 6) & 31) & MASK32, 0
    return 0, SIGILL


def execute_immediate(insn: int, rs: int) -> tuple[int, int]:
    """``(result, 0)`` of an I-type ALU instruction (opcodes 8…15), or ``(0, SIGFPE)`` on ``addi``
    overflow."""
    opcode = insn >> 26
    if opcode == OP_ADDI:
        result = signed(rs) + signed(sign_extend_16(insn))
        return (result & MASK32, 0) if fits_signed32(result) else (0, SIGFPE)
    return IMMEDIATE_ALU[opcode](rs, insn & 0xFFFF) & MASK32, 0


def in_delay_slot(state: VMState) -> bool:
    """Whether the current instruction is in a branch delay slot (§4.2): ``nextPC ≠ pc + 4``."""
    return state.next_pc != (state.pc + 4) & MASK32


def handle_branch(state: VMState, insn: int, rs: int, rt: int) -> None:
    """Conditional branches: ``beq``, ``bne``, ``blez``, ``bgtz`` and REGIMM ``bltz``, ``bgez``,
    ``bltzal``, ``bgezal`` (§4.2): by ``sign_extend_16(offset) << 2`` after the delay slot if taken.
    Another REGIMM form, or a branch in a delay slot, is SIGILL; the link forms write ``$ra = pc + 8``
    whether or not the branch is taken."""
    opcode = insn >> 26
    if opcode == OP_REGIMM:
        condition = rt_field(insn)
        if condition not in REGIMM_CONDITIONS:
            return panic(state, SIGILL)
        taken = REGIMM_CONDITIONS[condition](rs)
        link = condition in REGIMM_LINKING
    else:
        taken = BRANCH_CONDITIONS[opcode](rs, rt)
        link = False
    if in_delay_slot(state):
        return panic(state, SIGILL)
    pc = state.pc
    if link:
        set_register(state, REG_RA, pc + 8)
    state.pc = state.next_pc
    state.next_pc = (pc + 4 + (sign_extend_16(insn) << 2) if taken else state.next_pc + 4) & MASK32


def handle_jump(state: VMState, insn: int, rs: int) -> None:
    """Jumps: ``j``, ``jal``, ``jr``, ``jalr`` (§4.2), to their target after the delay slot; the
    link is ``pc + 8``. A jump in a delay slot is SIGILL (before the link is written). ``jalr``'s
    target is ``rs`` as read before the link is written, so ``jalr $ra, $ra`` jumps to the old ``$ra``."""
    if in_delay_slot(state):
        return panic(state, SIGILL)
    pc = state.pc
    if insn >> 26 == OP_SPECIAL:
        target = rs
        if insn & 63 == FUNCT_JALR:
            set_register(state, rd_field(insn), pc + 8)
    else:
        target = ((pc + 4) & 0xF0000000) | ((insn & 0x03FFFFFF) << 2)
        if insn >> 26 == OP_JAL:
            set_register(state, REG_RA, pc + 8)
    state.pc, state.next_pc = state.next_pc, target


def handle_hi_lo(state: VMState, insn: int, rs: int, rt: int) -> None:
    """``mfhi``, ``mthi``, ``mflo``, ``mtlo``, ``mult[u]``, ``div[u]`` and SPECIAL2 ``madd[u]``,
    ``msub[u]`` (§4.3)."""
    funct = insn & 63
    if insn >> 26 == OP_SPECIAL2:
        state.hi, state.lo = SPECIAL2_MULT_ACC[funct](rs, rt, state.hi << 32 | state.lo)
    elif funct == FUNCT_MFHI:
        set_register(state, rd_field(insn), state.hi)
    elif funct == FUNCT_MTHI:
        state.hi = rs
    elif funct == FUNCT_MFLO:
        set_register(state, rd_field(insn), state.lo)
    elif funct == FUNCT_MTLO:
        state.lo = rs
    else:
        state.hi, state.lo = SPECIAL_MULT_DIV[funct](rs, rt, state.hi << 32 | state.lo)
    advance(state)


def handle_trap(state: VMState, insn: int, rs: int, rt: int) -> None:
    """``tge``, ``tgeu``, ``tlt``, ``tltu``, ``teq``, ``tne`` (§4.5): SIGTRAP when the condition holds,
    whatever the code (qemu-mipsel's signal, not Linux's SIGFPE)."""
    if TRAP_CONDITIONS[insn & 63](rs, rt):
        return panic(state, SIGTRAP)
    advance(state)


def exec_load_store(state: VMState, insn: int, rs: int, rt: int) -> None:
    """Loads and stores (§4.4): an unknown opcode is SIGILL, a misaligned access SIGBUS before any
    memory is read; otherwise the one aligned word holding the address is read (and, for a store,
    written back)."""
    opcode = insn >> 26
    op = MEMORY_OPS.get(opcode)
    if op is None:
        return panic(state, SIGILL)
    addr = (rs + sign_extend_16(insn)) & MASK32
    if addr % op.alignment:
        return panic(state, SIGBUS)
    word_addr, offset = addr & ~3, addr & 3
    word = state.memory.read_u32(word_addr)
    if opcode in LOADS:
        set_register(state, rt_field(insn), LOADS[opcode].apply(word, offset, rt))
    else:
        state.memory.write_u32(word_addr, STORES[opcode].apply(word, offset, rt))
        if opcode == OP_SC:
            set_register(state, rt_field(insn), 1)
    advance(state)


# --- Endings of a step -------------------------------------------------------------------------------


def panic(state: VMState, signal: int) -> None:
    """End the program as if killed by ``signal`` (§4.6): only ``exited``, ``exitCode`` (and the
    already counted ``step``) change."""
    state.exited = True
    state.exit_code = PANIC_EXIT_BASE + signal


def advance(state: VMState) -> None:
    """The ordinary end of an instruction: ``pc = nextPC; nextPC += 4`` (§4.2)."""
    state.pc = state.next_pc
    state.next_pc = (state.next_pc + 4) & MASK32


def set_register(state: VMState, reg: int, value: int) -> None:
    """Write ``value mod 2^32`` to register ``reg``; writes to ``$0`` are discarded."""
    if reg != 0:
        state.registers[reg] = value & MASK32
