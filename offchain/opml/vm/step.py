"""One step of the VM, in the order of checks of vm-spec §4.1 (mirrors ``contracts/vm/MIPS.sol``).

``step`` mutates a :class:`VMState` in place. It touches memory only through
``state.memory.read_u32``/``write_u32`` on aligned words (plus ``read_bytes`` to copy ``write``
output when the state collects it), so the same code runs over a proof-backed memory in
``witness.apply_step_proof``.

The preimage system calls (§5.5) ask ``oracle`` (a :class:`~opml.vm.preimage.PreimageOracle`). When
it cannot answer (or is ``None``) the step raises :class:`~opml.oracle.errors.PreimageNotFoundError`
and leaves the state unchanged, as the contract's ``step`` reverts.

Every handler ends the step in exactly one of three ways: ``advance`` (the ordinary update),
``handle_jump``/``handle_branch`` (control flow), or ``panic``; the one exception is ``exit``.
"""

from collections.abc import Callable

from opml.oracle.errors import PreimageNotFoundError
from opml.vm.constants import (
    BRK_LIMIT,
    EBADF,
    EFBIG,
    EINVAL,
    ENOMEM,
    ENOSYS,
    FD_STDERR,
    FD_STDOUT,
    LEAF_SIZE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    MASK32,
    MASK64,
    MAX_PREIMAGE_LENGTH,
    MMAP_LIMIT,
    PAGE_SIZE,
    PANIC_EXIT_BASE,
    PREIMAGE_KEY_TYPES,
    PREIMAGE_PART_SIZE,
    REG_A0,
    REG_A1,
    REG_A2,
    REG_A3,
    REG_RA,
    REG_V0,
    SIGBUS,
    SIGFPE,
    SIGILL,
    SIGTRAP,
    SYS_BRK,
    SYS_EXIT,
    SYS_EXIT_GROUP,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_PREIMAGE_LENGTH,
    SYS_PREIMAGE_READ,
    SYS_PREIMAGE_SELECT,
    SYS_WRITE,
)
from opml.vm.instructions import (
    BRANCH_CONDITIONS,
    FUNCT_BREAK,
    FUNCT_JALR,
    FUNCT_JR,
    FUNCT_MFHI,
    FUNCT_MFLO,
    FUNCT_MOVN,
    FUNCT_MOVZ,
    FUNCT_MTHI,
    FUNCT_MTLO,
    FUNCT_SYNC,
    FUNCT_SYSCALL,
    IMMEDIATE_ALU,
    LOADS,
    OP_ADDI,
    OP_J,
    OP_JAL,
    OP_PREF,
    OP_REGIMM,
    OP_SC,
    OP_SPECIAL,
    OP_SPECIAL2,
    REGIMM_CONDITIONS,
    REGIMM_LINKING,
    SPECIAL2_ALU,
    SPECIAL2_MULT_ACC,
    SPECIAL_ALU,
    SPECIAL_ALU_SIGNED,
    SPECIAL_MULT_DIV,
    STORES,
    TRAP_CONDITIONS,
    branch_target,
    fits_signed32,
    jump_target,
    load_store_address,
    rd_field,
    rs_field,
    rt_field,
    sa_field,
    sext16,
    signed,
)
from opml.vm.limits import capture
from opml.vm.preimage import PreimageOracle, as_oracle
from opml.vm.state import VMState
from opml.vm.syscalls import preimage_read_count

Handler = Callable[[VMState, int], None]


def step(state: VMState, oracle: PreimageOracle | None = None) -> None:
    """Execute one instruction of ``state`` in place (§4.1). An exited state is left unchanged.

    ``oracle`` answers the preimage system calls (§5.5). If it lacks the data a step needs, or is
    ``None`` and the step needs data, :class:`PreimageNotFoundError` is raised and ``state`` is left
    as it was before the step (supply the data and call again).
    """
    if state.exited:
        return
    pre_step = state.step
    state.step = (pre_step + 1) & MASK64
    if state.pc & 3:
        return panic(state, SIGBUS)
    insn = state.memory.read_u32(state.pc)
    try:
        exec_mips_core_step_logic(state, insn, oracle)
    except PreimageNotFoundError:
        state.step = pre_step  # the oracle is asked before anything else changes: undo the step (a revert)
        raise


def exec_mips_core_step_logic(state: VMState, insn: int, oracle: PreimageOracle | None = None) -> None:
    """Decode ``insn`` by opcode (and funct / rt field) and execute it; unknown encodings are SIGILL."""
    opcode = insn >> 26
    if opcode == OP_SPECIAL:
        if insn & 0x3F == FUNCT_SYSCALL:
            return handle_syscall(state, insn, oracle)
        handler = SPECIAL_HANDLERS.get(insn & 0x3F)
    elif opcode == OP_SPECIAL2:
        handler = SPECIAL2_HANDLERS.get(insn & 0x3F)
    elif opcode == OP_REGIMM:
        handler = _exec_regimm if rt_field(insn) in REGIMM_CONDITIONS else None
    else:
        handler = OPCODE_HANDLERS.get(opcode)
    if handler is None:
        return panic(state, SIGILL)
    handler(state, insn)


# --- Endings of a step -------------------------------------------------------------------------------


def advance(state: VMState) -> None:
    """The ordinary end of an instruction: ``pc = nextPC; nextPC += 4`` (§4.2)."""
    state.pc = state.next_pc
    state.next_pc = (state.next_pc + 4) & MASK32


def panic(state: VMState, signal: int) -> None:
    """End the program as if killed by ``signal``; nothing else changes except ``step`` (§4.6)."""
    state.exited = True
    state.exit_code = PANIC_EXIT_BASE + signal


def set_register(state: VMState, reg: int, value: int) -> None:
    """Write ``value mod 2^32`` to register ``reg``; writes to ``$0`` are discarded."""
    if reg != 0:
        state.registers[reg] = value & MASK32


def in_delay_slot(state: VMState) -> bool:
    """Whether the current instruction is in a branch delay slot (§4.2)."""
    return state.next_pc != (state.pc + 4) & MASK32


def handle_jump(state: VMState, target: int, link_reg: int) -> None:
    """Jump to ``target`` after the delay slot, writing ``pc + 8`` to ``link_reg`` (0: no link).

    A jump in a delay slot is a SIGILL panic (before the link is written).
    """
    if in_delay_slot(state):
        return panic(state, SIGILL)
    set_register(state, link_reg, state.pc + 8)
    state.pc, state.next_pc = state.next_pc, target


def handle_branch(state: VMState, insn: int, taken: bool, link_reg: int) -> None:
    """Branch by ``sext16(offset) << 2`` after the delay slot if ``taken``; link as ``handle_jump``.

    The link register is written whether or not the branch is taken (``bltzal``/``bgezal``).
    """
    if in_delay_slot(state):
        return panic(state, SIGILL)
    set_register(state, link_reg, state.pc + 8)
    if taken:
        state.pc, state.next_pc = state.next_pc, branch_target(state.pc, insn)
    else:
        advance(state)


# --- Instruction classes -----------------------------------------------------------------------------


def _exec_special_alu(state: VMState, insn: int) -> None:
    regs = state.registers
    result = SPECIAL_ALU[insn & 0x3F](regs[rs_field(insn)], regs[rt_field(insn)], sa_field(insn))
    set_register(state, rd_field(insn), result)
    advance(state)


def _exec_special_alu_signed(state: VMState, insn: int) -> None:
    regs = state.registers
    result = SPECIAL_ALU_SIGNED[insn & 0x3F](regs[rs_field(insn)], regs[rt_field(insn)])
    if not fits_signed32(result):
        return panic(state, SIGFPE)
    set_register(state, rd_field(insn), result)
    advance(state)


def _exec_addi(state: VMState, insn: int) -> None:
    result = signed(state.registers[rs_field(insn)]) + signed(sext16(insn))
    if not fits_signed32(result):
        return panic(state, SIGFPE)
    set_register(state, rt_field(insn), result)
    advance(state)


def _exec_immediate_alu(state: VMState, insn: int) -> None:
    result = IMMEDIATE_ALU[insn >> 26](state.registers[rs_field(insn)], insn & 0xFFFF)
    set_register(state, rt_field(insn), result)
    advance(state)


def _exec_special2_alu(state: VMState, insn: int) -> None:
    regs = state.registers
    result = SPECIAL2_ALU[insn & 0x3F](regs[rs_field(insn)], regs[rt_field(insn)])
    set_register(state, rd_field(insn), result)
    advance(state)


def _exec_move_conditional(state: VMState, insn: int) -> None:
    """``movz``/``movn``: ``rd = rs`` if ``rt`` is zero / non-zero, else ``rd`` is unchanged."""
    regs = state.registers
    rt_is_zero = regs[rt_field(insn)] == 0
    if rt_is_zero == ((insn & 0x3F) == FUNCT_MOVZ):
        set_register(state, rd_field(insn), regs[rs_field(insn)])
    advance(state)


def handle_hi_lo(state: VMState, insn: int) -> None:
    """``mfhi/mthi/mflo/mtlo``, ``mult[u]``, ``div[u]`` and (SPECIAL2) ``madd[u]``/``msub[u]``."""
    regs = state.registers
    funct = insn & 0x3F
    rs, rt = regs[rs_field(insn)], regs[rt_field(insn)]
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


def _exec_jr(state: VMState, insn: int) -> None:
    handle_jump(state, state.registers[rs_field(insn)], 0)


def _exec_jalr(state: VMState, insn: int) -> None:
    # The target is read before handle_jump writes the link, so `jalr $ra, $ra` jumps to the old $ra.
    handle_jump(state, state.registers[rs_field(insn)], rd_field(insn))


def _exec_j(state: VMState, insn: int) -> None:
    handle_jump(state, jump_target(state.pc, insn), REG_RA if insn >> 26 == OP_JAL else 0)


def _exec_branch(state: VMState, insn: int) -> None:
    regs = state.registers
    taken = BRANCH_CONDITIONS[insn >> 26](regs[rs_field(insn)], regs[rt_field(insn)])
    handle_branch(state, insn, taken, 0)


def _exec_regimm(state: VMState, insn: int) -> None:
    kind = rt_field(insn)
    taken = REGIMM_CONDITIONS[kind](state.registers[rs_field(insn)])
    handle_branch(state, insn, taken, REG_RA if kind in REGIMM_LINKING else 0)


def _exec_trap(state: VMState, insn: int) -> None:
    regs = state.registers
    if TRAP_CONDITIONS[insn & 0x3F](regs[rs_field(insn)], regs[rt_field(insn)]):
        return panic(state, SIGTRAP)  # qemu-mipsel's signal for every code (§4.5), not Linux's SIGFPE
    advance(state)


def _exec_break(state: VMState, insn: int) -> None:
    panic(state, SIGTRAP)


def _exec_nop(state: VMState, insn: int) -> None:
    advance(state)


def exec_load_store(state: VMState, insn: int) -> None:
    """A load or store (§4.4): one aligned word is read (and, for a store, written back)."""
    addr = load_store_address(state.registers, insn)
    if addr is None:
        return panic(state, SIGBUS)
    opcode, rt_reg = insn >> 26, rt_field(insn)
    word_addr, offset = addr & ~3, addr & 3
    word = state.memory.read_u32(word_addr)
    rt = state.registers[rt_reg]
    if opcode in LOADS:
        set_register(state, rt_reg, LOADS[opcode].apply(word, offset, rt))
    else:
        state.memory.write_u32(word_addr, STORES[opcode].apply(word, offset, rt))
        if opcode == OP_SC:
            set_register(state, rt_reg, 1)
    advance(state)


# --- System calls (§5) -------------------------------------------------------------------------------


def _syscall_result(state: VMState, value: int, errno: int = 0) -> None:
    """Return ``value`` in $v0 with $a3 = 0, or, if ``errno`` is set, ``errno`` with $a3 = 1."""
    state.registers[REG_V0] = errno if errno else value & MASK32
    state.registers[REG_A3] = 1 if errno else 0


def handle_syscall(state: VMState, insn: int, oracle: PreimageOracle | None = None) -> None:
    """Execute the system call numbered ``$v0`` with arguments ``$a0…$a3`` (§5)."""
    regs = state.registers
    number, a0, a1, a2, a3 = regs[REG_V0], regs[REG_A0], regs[REG_A1], regs[REG_A2], regs[REG_A3]
    if number in (SYS_EXIT, SYS_EXIT_GROUP):
        state.exited = True
        state.exit_code = a0 & 0xFF
        return  # pc is not advanced
    if number == SYS_WRITE:
        if a0 in (FD_STDOUT, FD_STDERR):
            sink = state.stdout if a0 == FD_STDOUT else state.stderr
            if sink is not None:  # at most MAX_CAPTURED_OUTPUT bytes are kept (limits.py)
                capture(sink, state.memory.read_bytes, a1, a2)
            _syscall_result(state, a2)
        else:
            _syscall_result(state, 0, EBADF)
    elif number == SYS_BRK:
        if 0 < a0 <= BRK_LIMIT:  # brk(0) is a query; the break may grow or shrink (§5.3)
            state.brk = a0
        _syscall_result(state, state.brk)
    elif number == SYS_MMAP:
        _sys_mmap(state, length=a1, flags=a3)
    elif number == SYS_MUNMAP:
        _syscall_result(state, 0)  # memory is never freed
    elif number == SYS_PREIMAGE_SELECT:
        _sys_preimage_select(state, key_addr=a0)
    elif number == SYS_PREIMAGE_LENGTH:
        _sys_preimage_length(state, as_oracle(oracle))
    elif number == SYS_PREIMAGE_READ:
        _sys_preimage_read(state, as_oracle(oracle), offset=a0, buf=a1, count=a2)
    else:
        _syscall_result(state, 0, ENOSYS)
    advance(state)


def _sys_mmap(state: VMState, length: int, flags: int) -> None:
    """Anonymous ``mmap`` from the bump allocator at ``heap`` (§5.4)."""
    if (
        not flags & MAP_ANONYMOUS
        or flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE)
        or flags & MAP_FIXED
        or length == 0
    ):
        return _syscall_result(state, 0, EINVAL)
    size = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK32
    if size == 0 or state.heap + size > MMAP_LIMIT:
        return _syscall_result(state, 0, ENOMEM)
    _syscall_result(state, state.heap)
    state.heap += size


# --- Preimage oracle (§5.5) --------------------------------------------------------------------------
# Every handler asks the oracle before it changes anything, so that a missing preimage
# (PreimageNotFoundError) leaves the state as it was; ``step`` undoes its ``step += 1``.


def read_leaf(memory, addr: int) -> bytes:
    """Return the 32 bytes of the leaf at the 32-byte aligned ``addr``, in address order (§3.1)."""
    return b"".join(memory.read_u32(addr + 4 * i).to_bytes(4, "little") for i in range(LEAF_SIZE // 4))


def write_leaf_bytes(memory, addr: int, data: bytes) -> None:
    """Store ``data`` at ``addr``; ``[addr, addr + len(data))`` lies inside one leaf. Only the aligned
    words that overlap it are read and written (aligned ``read_u32``/``write_u32`` only)."""
    end = addr + len(data)
    for word_addr in range(addr & ~3, end, 4):
        word = bytearray(memory.read_u32(word_addr).to_bytes(4, "little"))
        lo, hi = max(addr, word_addr), min(end, word_addr + 4)
        word[lo - word_addr : hi - word_addr] = data[lo - addr : hi - addr]
        memory.write_u32(word_addr, int.from_bytes(word, "little"))


def is_known_key_type(key: bytes) -> bool:
    """Whether ``key`` has a type the oracle knows (§5.5): reading any other key is ``EINVAL``, so
    that a guest reading before it selects a key still takes a provable step."""
    return key[0] in PREIMAGE_KEY_TYPES


def _sys_preimage_select(state: VMState, key_addr: int) -> None:
    """``preimage_select(keyAddr)``: ``preimageKey = `` the leaf at ``keyAddr`` (its data proof)."""
    if key_addr % LEAF_SIZE:
        return _syscall_result(state, 0, EINVAL)
    state.preimage_key = read_leaf(state.memory, key_addr)
    _syscall_result(state, 0)


def _sys_preimage_length(state: VMState, oracle: PreimageOracle) -> None:
    """``preimage_length()``: the length of the selected preimage, ``EFBIG`` if it is ≥ 2^32."""
    if not is_known_key_type(state.preimage_key):
        return _syscall_result(state, 0, EINVAL)
    length = oracle.preimage_length(oracle.effective_key(state.preimage_key))
    if length >= MAX_PREIMAGE_LENGTH:
        return _syscall_result(state, 0, EFBIG)
    _syscall_result(state, length)


def _sys_preimage_read(state: VMState, oracle: PreimageOracle, offset: int, buf: int, count: int) -> None:
    """``preimage_read(offset, buf, count)``: at most one part into ``buf``'s leaf; returns ``n``.

    Order (mirrored by the contract): ``count == 0`` returns 0; else ``buf``'s leaf is read (its data
    proof), then the length is asked for, then, if ``offset < len``, the part at ``offset − offset % 32``.
    """
    if count == 0:
        return _syscall_result(state, 0)
    state.memory.read_u32(buf & ~3)  # buf's leaf: consumes the data proof first
    if not is_known_key_type(state.preimage_key):
        return _syscall_result(state, 0, EINVAL)
    key = oracle.effective_key(state.preimage_key)
    length = oracle.preimage_length(key)
    if offset >= length:
        return _syscall_result(state, 0)  # end of data; memory is unchanged
    within = offset % PREIMAGE_PART_SIZE
    n = preimage_read_count(offset, buf, count, length)
    part = oracle.preimage_part(key, offset - within)
    write_leaf_bytes(state.memory, buf, part[within : within + n])
    _syscall_result(state, n)


# --- Opcode tables -----------------------------------------------------------------------------------

OPCODE_HANDLERS: dict[int, Handler] = {
    OP_J: _exec_j,
    OP_JAL: _exec_j,
    **{opcode: _exec_branch for opcode in BRANCH_CONDITIONS},
    OP_ADDI: _exec_addi,
    **{opcode: _exec_immediate_alu for opcode in IMMEDIATE_ALU},
    **{opcode: exec_load_store for opcode in LOADS | STORES},
    OP_PREF: _exec_nop,
}

SPECIAL_HANDLERS: dict[int, Handler] = {
    **{funct: _exec_special_alu for funct in SPECIAL_ALU},
    **{funct: _exec_special_alu_signed for funct in SPECIAL_ALU_SIGNED},
    **{funct: handle_hi_lo for funct in SPECIAL_MULT_DIV},
    **{funct: handle_hi_lo for funct in (FUNCT_MFHI, FUNCT_MTHI, FUNCT_MFLO, FUNCT_MTLO)},
    **{funct: _exec_trap for funct in TRAP_CONDITIONS},
    FUNCT_JR: _exec_jr,
    FUNCT_JALR: _exec_jalr,
    FUNCT_MOVZ: _exec_move_conditional,
    FUNCT_MOVN: _exec_move_conditional,
    FUNCT_SYSCALL: handle_syscall,  # dispatched before this table, with the oracle
    FUNCT_BREAK: _exec_break,
    FUNCT_SYNC: _exec_nop,
}

SPECIAL2_HANDLERS: dict[int, Handler] = {
    **{funct: _exec_special2_alu for funct in SPECIAL2_ALU},
    **{funct: handle_hi_lo for funct in SPECIAL2_MULT_ACC},
}
