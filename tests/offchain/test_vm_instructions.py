"""Instruction semantics (§4.2–§4.6), each class against hand-computed results."""

import pytest

from opml.vm.asm import encode, load_program
from opml.vm.run import run
from opml.vm.state import VMState

BASE = 0x00400000
NOP = 0  # sll $0, $0, 0
SIGILL, SIGTRAP, SIGBUS, SIGFPE = 132, 133, 135, 136  # exit codes 128 + signal


def execute(*program, regs=None, hi=0, lo=0, data=None, steps=1) -> VMState:
    """Run ``steps`` steps of ``program`` (tuples for ``encode`` or raw words) loaded at BASE."""
    state = load_program([encode(*insn) if isinstance(insn, tuple) else insn for insn in program], BASE)
    for reg, value in (regs or {}).items():
        state.registers[reg] = value
    state.hi, state.lo = hi, lo
    for addr, word in (data or {}).items():
        state.memory.write_u32(addr, word)
    return run(state, steps)


def assert_advanced(state: VMState, steps: int = 1):
    assert not state.exited
    assert state.pc == BASE + 4 * steps and state.next_pc == state.pc + 4
    assert state.step == steps


def assert_panicked(state: VMState, exit_code: int, pc: int = BASE, steps: int = 1):
    assert state.exited and state.exit_code == exit_code
    assert state.pc == pc and state.step == steps


# --- ALU -----------------------------------------------------------------------------------------------

A, B = 0x80000001, 0x00000003  # $4, $5 in the register-register cases


@pytest.mark.parametrize(
    "insn, expected",
    [
        (("addu", 3, 4, 5), 0x80000004),
        (("addu", 3, 4, 4), 0x00000002),  # wraps
        (("subu", 3, 5, 4), 0x80000002),
        (("and", 3, 4, 5), 0x00000001),
        (("or", 3, 4, 5), 0x80000003),
        (("xor", 3, 4, 5), 0x80000002),
        (("nor", 3, 4, 5), 0x7FFFFFFC),
        (("slt", 3, 4, 5), 1),  # signed: negative < 3
        (("sltu", 3, 4, 5), 0),
        (("add", 3, 5, 5), 6),
        (("sub", 3, 5, 5), 0),
        (("sll", 3, 4, 4), 0x00000010),
        (("srl", 3, 4, 4), 0x08000000),
        (("sra", 3, 4, 4), 0xF8000000),
        (("sllv", 3, 5, 5), 0x00000018),
        (("srlv", 3, 4, 5), 0x10000000),
        (("srav", 3, 4, 5), 0xF0000000),
        (("addiu", 3, 4, -2), 0x7FFFFFFF),
        (("addi", 3, 5, -5), 0xFFFFFFFE),
        (("slti", 3, 4, 0), 1),
        (("slti", 3, 5, 3), 0),
        (("sltiu", 3, 4, -1), 1),  # imm sign-extends to 0xFFFFFFFF, compared unsigned
        (("sltiu", 3, 5, 3), 0),
        (("andi", 3, 4, 0xFFFF), 0x00000001),  # zero-extended
        (("ori", 3, 4, 0x8000), 0x80008001),
        (("xori", 3, 5, 0xFFFF), 0x0000FFFC),
        (("lui", 3, 0xABCD), 0xABCD0000),
        (("mul", 3, 4, 5), 0x80000003),  # low 32 bits of the signed product
        (("clz", 3, 5), 30),
        (("clz", 3, 0), 32),
        (("clo", 3, 4), 1),
        (("clo", 3, 0), 0),
    ],
)
def test_alu(insn, expected):
    state = execute(insn, regs={4: A, 5: B}, hi=7, lo=9)
    assert_advanced(state)
    assert state.registers[3] == expected
    assert (state.hi, state.lo) == (7, 9)


def test_clo_of_all_ones_and_clz_of_top_bit():
    assert execute(("clo", 3, 4), regs={4: 0xFFFFFFFF}).registers[3] == 32
    assert execute(("clz", 3, 4), regs={4: 0x80000000}).registers[3] == 0


def test_writes_to_zero_register_are_discarded():
    state = execute(("addiu", 0, 0, 5), ("lui", 0, 1), steps=2)
    assert_advanced(state, 2)
    assert state.registers[0] == 0


@pytest.mark.parametrize(
    "insn, regs",
    [
        (("add", 3, 4, 5), {4: 0x7FFFFFFF, 5: 1}),
        (("add", 3, 4, 5), {4: 0x80000000, 5: 0xFFFFFFFF}),
        (("sub", 3, 4, 5), {4: 0x80000000, 5: 1}),
        (("sub", 3, 4, 5), {4: 0x7FFFFFFF, 5: 0xFFFFFFFF}),
        (("addi", 3, 4, 1), {4: 0x7FFFFFFF}),
        (("addi", 3, 4, -1), {4: 0x80000000}),
    ],
)
def test_signed_overflow_panics_sigfpe(insn, regs):
    state = execute(insn, regs={3: 0x55, **regs})
    assert_panicked(state, SIGFPE)
    assert state.registers[3] == 0x55  # nothing else changes


def test_movz_movn():
    regs = {3: 0x33, 4: 0x44, 5: 0}
    assert execute(("movz", 3, 4, 5), regs=regs).registers[3] == 0x44
    assert execute(("movn", 3, 4, 5), regs=regs).registers[3] == 0x33
    regs[5] = 9
    assert execute(("movz", 3, 4, 5), regs=regs).registers[3] == 0x33
    state = execute(("movn", 3, 4, 5), regs=regs)
    assert state.registers[3] == 0x44
    assert_advanced(state)


# --- Multiply and divide -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "insn, rs, rt, hi, lo, expected_hi, expected_lo",
    [
        ("mult", 0xFFFFFFFE, 3, 0, 0, 0xFFFFFFFF, 0xFFFFFFFA),  # -2 * 3 = -6
        ("multu", 0xFFFFFFFE, 3, 0, 0, 0x00000002, 0xFFFFFFFA),
        ("mult", 0x80000000, 0x80000000, 0, 0, 0x40000000, 0),
        ("madd", 0xFFFFFFFF, 1, 0, 5, 0, 4),  # 5 + (-1)
        ("madd", 2, 3, 0xFFFFFFFF, 0xFFFFFFFF, 0, 5),  # -1 + 6, carries through hi
        ("maddu", 0xFFFFFFFF, 2, 0, 1, 1, 0xFFFFFFFF),
        ("msub", 2, 3, 0, 0, 0xFFFFFFFF, 0xFFFFFFFA),  # 0 - 6
        ("msub", 0xFFFFFFFF, 1, 0, 0, 0, 1),  # 0 - (-1)
        ("msubu", 0xFFFFFFFF, 1, 0, 0, 0xFFFFFFFF, 1),  # 0 - 0xFFFFFFFF mod 2^64
        ("maddu", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0),  # wraps mod 2^64
        ("div", 7, 0xFFFFFFFE, 0, 0, 1, 0xFFFFFFFD),  # 7 / -2 = -3 rem 1
        ("div", 0xFFFFFFF9, 2, 0, 0, 0xFFFFFFFF, 0xFFFFFFFD),  # -7 / 2 = -3 rem -1
        ("div", 0xFFFFFFF9, 0xFFFFFFFE, 0, 0, 0xFFFFFFFF, 3),  # -7 / -2 = 3 rem -1
        ("div", 1234, 0, 9, 9, 0, 1234),  # divide by zero: divisor 1
        ("div", 0x80000000, 0xFFFFFFFF, 9, 9, 0, 0x80000000),  # overflow: divisor 1
        ("divu", 0xFFFFFFF9, 2, 0, 0, 1, 0x7FFFFFFC),
        ("divu", 1234, 0, 9, 9, 0, 1234),
    ],
)
def test_mult_div(insn, rs, rt, hi, lo, expected_hi, expected_lo):
    state = execute((insn, 4, 5), regs={4: rs, 5: rt}, hi=hi, lo=lo)
    assert_advanced(state)
    assert (state.hi, state.lo) == (expected_hi, expected_lo)


def test_hi_lo_moves():
    state = execute(("mthi", 4), ("mtlo", 5), ("mfhi", 6), ("mflo", 7), regs={4: 0xAA, 5: 0xBB}, steps=4)
    assert (state.hi, state.lo, state.registers[6], state.registers[7]) == (0xAA, 0xBB, 0xAA, 0xBB)


# --- Branches, jumps and delay slots -------------------------------------------------------------------


@pytest.mark.parametrize(
    "insn, rs, taken",
    [
        (("beq", 4, 5, 3), 7, True),
        (("beq", 4, 5, 3), 8, False),
        (("bne", 4, 5, 3), 8, True),
        (("bne", 4, 5, 3), 7, False),
        (("blez", 4, 3), 0, True),
        (("blez", 4, 3), 0x80000000, True),
        (("blez", 4, 3), 1, False),
        (("bgtz", 4, 3), 1, True),
        (("bgtz", 4, 3), 0, False),
        (("bltz", 4, 3), 0xFFFFFFFF, True),
        (("bltz", 4, 3), 0, False),
        (("bgez", 4, 3), 0, True),
        (("bgez", 4, 3), 0xFFFFFFFF, False),
    ],
)
def test_conditional_branches(insn, rs, taken):
    state = execute(insn, regs={4: rs, 5: 7})
    assert state.pc == BASE + 4
    assert state.next_pc == (BASE + 4 + 3 * 4 if taken else BASE + 8)
    assert state.registers[31] == 0


def test_backward_branch_target():
    state = execute(("beq", 0, 0, -1))
    assert (state.pc, state.next_pc) == (BASE + 4, BASE)


@pytest.mark.parametrize(
    "insn, rs, taken",
    [
        (("bltzal", 4, 3), 0xFFFFFFFF, True),
        (("bltzal", 4, 3), 1, False),
        (("bgezal", 4, 3), 1, True),
        (("bgezal", 4, 3), 0xFFFFFFFF, False),
        (("bgezal", 0, 3), 0, True),
    ],
)  # bal
def test_linking_branches_link_taken_or_not(insn, rs, taken):
    state = execute(insn, regs={4: rs})
    assert state.registers[31] == BASE + 8
    assert state.next_pc == (BASE + 16 if taken else BASE + 8)


def test_delay_slot_runs_before_the_target():
    state = execute(
        ("beq", 0, 0, 4), ("addiu", 2, 0, 1), ("addiu", 2, 0, 99), NOP, NOP, ("addiu", 3, 0, 7), steps=3
    )
    assert state.registers[2] == 1  # delay slot ran, the fall-through did not
    assert state.registers[3] == 7
    assert state.pc == BASE + 24


def test_j_and_jal_stay_in_the_256mib_region():
    state = execute(("jal", 0x0FFFFFFC), NOP)
    assert (state.pc, state.next_pc, state.registers[31]) == (BASE + 4, 0x0FFFFFFC, BASE + 8)
    state = execute(("j", 0x00400100), NOP)
    assert state.next_pc == 0x00400100 and state.registers[31] == 0


def test_jr_and_jalr():
    state = execute(("jr", 4), regs={4: 0x00401000})
    assert (state.pc, state.next_pc) == (BASE + 4, 0x00401000)
    state = execute(("jalr", 31, 31), regs={31: 0x00402000})  # target read before the link
    assert (state.next_pc, state.registers[31]) == (0x00402000, BASE + 8)
    state = execute(("jalr", 0, 4), regs={4: 0x00401000})
    assert state.registers[0] == 0


@pytest.mark.parametrize(
    "second", [("beq", 0, 0, 5), ("j", BASE), ("jal", BASE), ("jr", 31), ("jalr", 31, 4), ("bgezal", 0, 2)]
)
def test_branch_in_delay_slot_panics_sigill(second):
    state = execute(("beq", 0, 0, 10), second, regs={4: BASE}, steps=2)
    assert_panicked(state, SIGILL, pc=BASE + 4, steps=2)
    assert state.next_pc == BASE + 44
    assert state.registers[31] == 0  # the link is not written


def test_misaligned_jump_target_panics_sigbus_on_the_next_step():
    state = execute(("jr", 4), NOP, regs={4: BASE + 0x102}, steps=2)
    assert not state.exited and state.pc == BASE + 0x102
    run(state, 1)
    assert_panicked(state, SIGBUS, pc=BASE + 0x102, steps=3)


def test_exited_state_does_not_step():
    state = execute(("break",), NOP, steps=5)
    assert_panicked(state, SIGTRAP)  # one step, pc still at the break


# --- Traps and unknown instructions --------------------------------------------------------------------


@pytest.mark.parametrize(
    "insn, regs, trapped",
    [
        (("teq", 4, 5), {4: 1, 5: 1}, True),
        (("teq", 4, 5), {4: 1, 5: 2}, False),
        (("tne", 4, 5), {4: 1, 5: 2}, True),
        (("tge", 4, 5), {4: 0xFFFFFFFF, 5: 1}, False),  # signed -1 >= 1 is false
        (("tgeu", 4, 5), {4: 0xFFFFFFFF, 5: 1}, True),
        (("tlt", 4, 5), {4: 0xFFFFFFFF, 5: 1}, True),
        (("tltu", 4, 5), {4: 0xFFFFFFFF, 5: 1}, False),
    ],
)
def test_trap_conditions(insn, regs, trapped):
    state = execute(insn, regs=regs)
    if trapped:
        assert_panicked(state, SIGTRAP)
    else:
        assert_advanced(state)


@pytest.mark.parametrize("code", [0, 5, 6, 7, 1023])
def test_every_trap_and_break_code_is_sigtrap(code):
    # Linux would send SIGFPE for codes 6 and 7; the spec follows qemu-mipsel 7.2 (§4.5).
    assert_panicked(execute(("teq", 0, 0, code)), SIGTRAP)
    assert_panicked(execute(("break", code)), SIGTRAP)


@pytest.mark.parametrize(
    "word",
    [
        0xFFFFFFFF,
        0x44000000,  # COP1 (mfc1)
        0x40000000,  # COP0
        0x50000001,  # beql
        0x04080001,  # tgei (REGIMM rt = 8)
        0x04020001,  # bltzl
        0x00000001,  # movci (SPECIAL funct 1)
        0x0000003F,  # reserved SPECIAL funct
        0x7C03E83B,  # rdhwr $3, $29
        0x70000003,  # reserved SPECIAL2 funct
        0xBC000000,  # cache
        0xC4000000,  # lwc1
    ],
)
def test_unknown_instructions_panic_sigill(word):
    state = execute(word, regs={5: 0x1000})
    assert_panicked(state, SIGILL)
    assert state.registers == [0] * 5 + [0x1000] + [0] * 26  # nothing else changes (§4.6)
    assert state.memory.read_u32(0x1000) == 0 and (state.hi, state.lo) == (0, 0)


def test_sync_and_pref_are_nops():
    # pref's address 0xFFFFFFFF is misaligned and not mapped: an access would panic (SIGBUS).
    before = execute(
        ("sync",), ("pref", 3, 0, 4), regs={3: 0x33, 4: 0xFFFFFFFF}, hi=7, lo=9, data={DATA: WORD}, steps=0
    )
    state = run(before.copy(), 2)
    assert_advanced(state, 2)
    assert state.registers == before.registers and state.registers[3] == 0x33
    assert (state.hi, state.lo, state.brk, state.heap) == (7, 9, before.brk, before.heap)
    assert state.preimage_key == before.preimage_key
    assert state.memory.merkle_root() == before.memory.merkle_root()
    assert state.memory.read_u32(DATA) == WORD


def test_misaligned_pc_panics_sigbus():
    state = load_program([NOP], BASE)
    state.pc, state.next_pc = BASE + 2, BASE + 6
    run(state, 1)
    assert_panicked(state, SIGBUS, pc=BASE + 2)


# --- Loads and stores ----------------------------------------------------------------------------------

DATA = 0x10000000
WORD = 0x44332211  # bytes 11 22 33 44 at DATA … DATA+3
RT = 0xAABBCCDD


@pytest.mark.parametrize(
    "insn, offset, expected",
    [
        ("lw", 0, WORD),
        ("ll", 0, WORD),
        ("lb", 3, 0x00000044),
        ("lb", 4, 0xFFFFFF88),
        ("lbu", 4, 0x00000088),
        ("lh", 4, 0xFFFF9988),
        ("lhu", 4, 0x00009988),
        ("lh", 2, 0x00004433),
    ],
)
def test_loads(insn, offset, expected):
    state = execute((insn, 3, offset, 4), regs={3: RT, 4: DATA}, data={DATA: WORD, DATA + 4: 0x77669988})
    assert_advanced(state)
    assert state.registers[3] == expected


@pytest.mark.parametrize(
    "insn, offset, expected",
    [
        ("lwl", 0, 0x11BBCCDD),
        ("lwl", 1, 0x2211CCDD),
        ("lwl", 2, 0x332211DD),
        ("lwl", 3, 0x44332211),
        ("lwr", 0, 0x44332211),
        ("lwr", 1, 0xAA443322),
        ("lwr", 2, 0xAABB4433),
        ("lwr", 3, 0xAABBCC44),
    ],
)
def test_unaligned_loads(insn, offset, expected):
    state = execute((insn, 3, offset, 4), regs={3: RT, 4: DATA}, data={DATA: WORD})
    assert_advanced(state)
    assert state.registers[3] == expected


@pytest.mark.parametrize(
    "insn, offset, expected_word",
    [
        ("sw", 0, RT),
        ("sc", 0, RT),
        ("sb", 0, 0x443322DD),
        ("sb", 1, 0x4433DD11),
        ("sb", 2, 0x44DD2211),
        ("sb", 3, 0xDD332211),
        ("sh", 0, 0x4433CCDD),
        ("sh", 2, 0xCCDD2211),
        ("swl", 0, 0x443322AA),
        ("swl", 1, 0x4433AABB),
        ("swl", 2, 0x44AABBCC),
        ("swl", 3, 0xAABBCCDD),
        ("swr", 0, 0xAABBCCDD),
        ("swr", 1, 0xBBCCDD11),
        ("swr", 2, 0xCCDD2211),
        ("swr", 3, 0xDD332211),
    ],
)
def test_stores(insn, offset, expected_word):
    state = execute((insn, 3, offset, 4), regs={3: RT, 4: DATA}, data={DATA: WORD})
    assert_advanced(state)
    assert state.memory.read_u32(DATA) == expected_word
    assert state.registers[3] == (1 if insn == "sc" else RT)


def test_unaligned_word_copy_roundtrips():
    # The usual unaligned load/store pairs (little-endian): lwr/lwl then swr/swl at an odd address.
    program = [("lwr", 3, 1, 4), ("lwl", 3, 4, 4), ("swr", 3, 0x11, 4), ("swl", 3, 0x14, 4)]
    state = execute(*program, regs={4: DATA}, data={DATA: WORD, DATA + 4: 0x77666655}, steps=4)
    assert state.registers[3] == 0x55443322
    assert state.memory.read_bytes(DATA + 0x11, 4) == bytes([0x22, 0x33, 0x44, 0x55])
    assert state.memory.read_u8(DATA + 0x10) == 0 and state.memory.read_u8(DATA + 0x15) == 0


def test_sc_into_zero_register_still_stores():
    # $0 reads as 0, so the store overwrites the non-zero word with 0; the success flag is discarded.
    state = execute(("sc", 0, 0, 4), regs={4: DATA}, data={DATA: WORD})
    assert_advanced(state)
    assert state.registers[0] == 0 and state.memory.read_u32(DATA) == 0


def test_load_into_zero_register_is_an_ordinary_step():
    state = execute(("lw", 0, 0, 4), regs={4: DATA}, data={DATA: WORD})
    assert_advanced(state)
    assert state.registers[0] == 0


@pytest.mark.parametrize(
    "insn, offset",
    [("lw", 2), ("lw", 1), ("ll", 3), ("sw", 2), ("sc", 1), ("lh", 1), ("lhu", 3), ("sh", 1)],
)
def test_misaligned_access_panics_sigbus(insn, offset):
    state = execute((insn, 3, offset, 4), regs={3: RT, 4: DATA}, data={DATA: WORD})
    assert_panicked(state, SIGBUS)
    assert state.memory.read_u32(DATA) == WORD and state.registers[3] == RT


def test_effective_address_wraps():
    state = execute(("lw", 3, -4, 4), regs={4: 0}, data={0xFFFFFFFC: 0x12345678})
    assert state.registers[3] == 0x12345678
