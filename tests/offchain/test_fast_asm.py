"""The fast executor (opml.vm.fast) against the reference step, on hand-assembled programs.

Every test runs the reference ``step`` and the numba kernel side by side and compares every field
after EVERY step (``lockstep``), the memory pages after each chunk, and the Merkle root, encoded state,
stdout and stderr at the end.  ``lockstep`` is also used by test_fast_programs.py.
"""

import gc
import random

import numpy as np
import pytest

from opml.vm import fast as fast_mod
from opml.vm.fast import FastVM
from opml.vm.memory import Memory
from opml.vm.state import VMState, encode_state
from opml.vm.step import step

# --- lockstep harness -------------------------------------------------------------------------------

ROW_FIELDS = (
    "pc",
    "next_pc",
    "lo",
    "hi",
    "brk",
    "heap",
    "exit_code",
    "exited",
    "step",
    *tuple(f"r{i}" for i in range(32)),
)


def ref_row(s: VMState) -> list[int]:
    return [s.pc, s.next_pc, s.lo, s.hi, s.brk, s.heap, s.exit_code, int(s.exited), s.step, *s.registers]


def assert_same_memory(mem: Memory, vm: FastVM) -> None:
    """Every page present on either side has the same bytes (absent == zero)."""
    zero = bytes(4096)
    fast_pages = set(np.flatnonzero(vm.pt >= 0).tolist())
    for page_no in fast_pages | set(mem.pages):
        ref = mem.pages.get(page_no)
        ref = zero if ref is None else bytes(ref)
        got = vm.read_page(page_no) or zero
        assert got == ref, f"memory page {page_no:#x} differs"


def lockstep(
    state: VMState, max_steps: int | None = None, chunk: int = 1 << 14, root_every: int = 32, oracle=None
) -> VMState:
    """Run the reference and the fast VM from ``state`` and compare them at every step.

    Memory pages are compared after every ``chunk`` steps, the Merkle root every ``root_every``
    chunks and at the end. Returns the final reference state. ``state`` is not modified. ``oracle``
    answers the preimage system calls of both (vm-spec §5.5).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived lists: the cyclic GC would triple the run time
    try:
        return _lockstep(state, max_steps, chunk, root_every, oracle)
    finally:
        if gc_was_enabled:
            gc.enable()


def _lockstep(state, max_steps, chunk, root_every, oracle):
    ref = state.copy()
    vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
    limit = float("inf") if max_steps is None else state.step + max_steps
    chunks = 0
    while not ref.exited and ref.step < limit:
        n = int(min(chunk, limit - ref.step))
        rows = vm.record(n).tolist()
        assert rows, f"fast VM stopped at step {vm.step}, reference has not exited"
        for row in rows:
            step(ref, oracle)
            want = ref_row(ref)
            if row != want:
                diffs = {f: (w, g) for f, w, g in zip(ROW_FIELDS, want, row, strict=False) if w != g}
                raise AssertionError(f"step {ref.step}: (reference, fast) differ in {diffs}")
        chunks += 1
        assert_same_memory(ref.memory, vm)
        if chunks % root_every == 0:
            assert vm.to_state().memory.merkle_root() == ref.memory.merkle_root()
    assert vm.exited == ref.exited and vm.step == ref.step
    final = vm.to_state()
    assert encode_state(final) == encode_state(ref)
    assert final.stdout == ref.stdout and final.stderr == ref.stderr
    assert final.preimage_key == ref.preimage_key
    assert_same_memory(ref.memory, vm)
    return ref


# --- a tiny assembler --------------------------------------------------------------------------------

ZERO, AT, V0, V1, A0, A1, A2, A3 = range(8)
T0, T1, T2, T3, T4, T5, T6, T7 = range(8, 16)
S0, S1, S2 = 16, 17, 18
SP, RA = 29, 31
BASE = 0x00400000
DATA = 0x10000000


def R(funct, rs=0, rt=0, rd=0, sa=0):
    return (rs << 21) | (rt << 16) | (rd << 11) | (sa << 6) | funct


def itype(op, rs, rt, imm):
    return (op << 26) | (rs << 21) | (rt << 16) | (imm & 0xFFFF)


def J(op, target):
    return (op << 26) | ((target >> 2) & 0x3FFFFFF)


def SP2(funct, rs=0, rt=0, rd=0):
    return R(funct, rs, rt, rd) | (28 << 26)


def li(reg, value):
    value &= 0xFFFFFFFF
    return [itype(15, 0, reg, value >> 16), itype(13, reg, reg, value & 0xFFFF)]


NOP = 0
SYSCALL = R(12)


def sys(num, *args):
    out = []
    for reg, v in zip((A0, A1, A2, A3), args, strict=False):
        out += li(reg, v)
    return out + li(V0, num) + [SYSCALL]


def exit_(code=0):
    return sys(4246, code)


def beq(rs, rt, off):
    return itype(4, rs, rt, off)


def make_state(words, regs=None, pc=BASE, data=None, **kw):
    mem = Memory()
    for i, w in enumerate(words):
        mem.write_u32((pc + 4 * i) & 0xFFFFFFFF, w)
    for addr, blob in (data or {}).items():
        mem.write_bytes(addr, blob)
    registers = [0] * 32
    for r, v in (regs or {}).items():
        registers[r] = v & 0xFFFFFFFF
    registers[SP] = registers[SP] or 0x7FFFF000
    fields = dict(pc=pc, next_pc=(pc + 4) & 0xFFFFFFFF, brk=0x10010000, heap=0x40000000)
    fields.update(kw)
    return VMState(memory=mem, registers=registers, **fields)


def run_prog(words, max_steps=10_000, **kw):
    return lockstep(make_state(words, **kw), max_steps=max_steps)


# --- edge cases -----------------------------------------------------------------------------------

PANICS = {
    # name: (program, exit code)
    "branch_in_delay_slot": ([beq(0, 0, 2), J(2, BASE + 64)], 132),
    "jump_in_delay_slot": ([J(2, BASE + 64), R(8, RA)], 132),
    "regimm_in_delay_slot": ([beq(0, 0, 2), itype(1, 0, 17, 4)], 132),
    "jr_misaligned": ([*li(T0, BASE + 34), R(8, T0), NOP], 135),
    "pc_misaligned_start": ([NOP], 135),
    "add_overflow": (li(T0, 0x7FFFFFFF) + li(T1, 1) + [R(32, T0, T1, T2)], 136),
    "sub_overflow": (li(T0, 0x80000000) + li(T1, 1) + [R(34, T0, T1, T2)], 136),
    "addi_overflow": ([*li(T0, 2147483632), itype(8, T0, T1, 16)], 136),
    "addi_neg_overflow": ([*li(T0, 2147483648), itype(8, T0, T1, 65535)], 136),
    "break_7": ([R(13) | (7 << 16)], 133),
    "break_6": ([R(13) | (6 << 16)], 133),
    "break_0": ([R(13)], 133),
    "break_big_code": ([R(13) | (0x3FF << 16) | (5 << 6)], 133),
    "teq_7": ([R(52, 0, 0) | (7 << 6)], 133),
    "teq_0": ([R(52, T0, T0)], 133),
    "tne": ([*li(T0, 1), R(52, T0, 0), R(54, T0, 0) | 6 << 6], 133),
    "tge": ([*li(T0, 4294967295), R(48, T0, 0), R(48, 0, T0)], 133),
    "tgeu": ([*li(T0, 4294967295), R(49, 0, T0), R(49, T0, 0)], 133),
    "tlt": ([*li(T0, 4294967295), R(50, 0, T0), R(50, T0, 0)], 133),
    "tltu": ([*li(T0, 4294967295), R(51, T0, 0), R(51, 0, T0)], 133),
    "cop1": ([0x44800000], 132),
    "cop0": ([0x40000000], 132),
    "branch_likely": ([itype(20, 0, 0, 4)], 132),
    "bltzl": ([itype(1, 0, 2, 4)], 132),
    "tgei": ([itype(1, 0, 8, 0)], 132),
    "rdhwr": ([0x7C03E83B], 132),
    "special_reserved": ([R(1, 0, 0, 8)], 132),
    "special_53": ([R(53)], 132),
    "special2_reserved": ([SP2(3, T0, T1, T2)], 132),
    "lwc1": ([itype(49, 0, 0, 0)], 132),
    "lw_misaligned": ([*li(T0, DATA + 2), itype(35, T0, T1, 0)], 135),
    "lh_misaligned": ([*li(T0, DATA + 1), itype(33, T0, T1, 0)], 135),
    "lhu_misaligned": ([*li(T0, DATA + 3), itype(37, T0, T1, 0)], 135),
    "sw_misaligned": ([*li(T0, DATA), itype(43, T0, T1, 1)], 135),
    "sh_misaligned": ([*li(T0, DATA), itype(41, T0, T1, 3)], 135),
    "ll_misaligned": ([*li(T0, DATA), itype(48, T0, T1, 2)], 135),
    "sc_misaligned": ([*li(T0, DATA), itype(56, T0, T1, 2)], 135),
}


@pytest.mark.parametrize("name", sorted(PANICS))
def test_panics(name):
    words, code = PANICS[name]
    kw = {"pc": BASE + 2} if name == "pc_misaligned_start" else {}
    final = run_prog(words, **kw)
    assert final.exited and final.exit_code == code


def test_alu_and_hilo():
    words = []
    vals = [0, 1, 2, 7, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x12345678, 0x87654321]
    for a in vals:
        for b in vals:
            words += li(T0, a) + li(T1, b)
            for funct in (0, 2, 3):  # sll srl sra
                words.append(R(funct, 0, T0, T2, b & 31))
            for funct in (4, 6, 7, 33, 35, 36, 37, 38, 39, 42, 43, 10, 11):
                words.append(R(funct, T0, T1, T2))
                words.append(R(funct, T1, T0, T3))
            for funct in (24, 25, 26, 27):  # mult multu div divu
                words += [R(funct, T0, T1), R(16, rd=T4), R(18, rd=T5)]
            for funct in (0, 1, 4, 5):  # madd maddu msub msubu
                words += [SP2(funct, T0, T1), R(16, rd=T4), R(18, rd=T5)]
            words += [SP2(2, T0, T1, T6), SP2(32, T0, rd=T6), SP2(33, T0, rd=T7)]
            words += [R(17, T0), R(19, T1), R(16, rd=T4), R(18, rd=T5)]  # mthi mtlo
            for op in (9, 10, 11, 12, 13, 14, 15):
                words.append(itype(op, T0, T2, b))
            words += [R(33, T0, T1, ZERO), itype(9, T0, ZERO, 5)]  # writes to $0 are discarded
    final = run_prog(words + exit_(0), max_steps=len(words) + 20)
    assert final.exited and final.exit_code == 0


def test_branches_and_links():
    target = BASE + 0x100
    words = [
        *li(T0, 5),
        itype(1, T0, 16, 3),  # bltzal not taken, links
        NOP,
        itype(1, T0, 17, 2),  # bgezal taken
        itype(9, 0, S0, 1),  # delay slot runs
        itype(9, 0, S0, 99),  # skipped
        itype(1, 0, 17, 2),  # bal
        NOP,
        NOP,
        itype(6, T0, 0, 2),  # blez not taken
        itype(7, T0, 0, 2),  # bgtz taken
        NOP,
        NOP,
        itype(1, T0, 0, 2),  # bltz not taken
        itype(1, T0, 1, 2),  # bgez taken
        NOP,
        NOP,
        itype(5, T0, 0, 2),  # bne taken
        NOP,
        NOP,
        *li(T1, target),
        R(9, T1, 0, T2),  # jalr t2, t1
        itype(9, 0, S1, 7),  # delay slot
    ]
    words += [NOP] * ((target - BASE) // 4 - len(words))
    words += [J(3, target + 16), NOP, NOP, NOP, *li(RA, target + 40), R(9, RA, 0, RA), NOP]
    words += [NOP] * ((target + 40 - BASE) // 4 - len(words))
    words += [beq(0, 0, 0xFFFF), NOP]  # infinite loop: beq to itself... runs max_steps
    run_prog(words, max_steps=500)


def test_syscall_in_delay_slot_and_exit_forms():
    words = [J(2, BASE + 0x40), SYSCALL] + [NOP] * 14 + exit_(0x1FF)
    final = run_prog(words, regs={V0: 4045, A0: 0})
    assert final.exit_code == 0xFF
    final = run_prog(sys(4001, 0x12345603))
    assert final.exit_code == 3 and final.pc == BASE + 4 * 4


def test_loads_and_stores():
    data = {DATA: bytes(range(0x80, 0xC0)), DATA + 0x1000 - 8: bytes(range(1, 17))}
    words = li(S0, DATA) + li(S1, 0xA1B2C3D4) + li(S2, 0x10FFF000)
    for off in range(8):
        for op in (32, 36, 34, 38):  # lb lbu lwl lwr
            words += [itype(op, S0, T0, off), itype(op, S0, T1, off)]
        if off % 2 == 0:
            words += [itype(33, S0, T2, off), itype(37, S0, T3, off)]
        if off % 4 == 0:
            words += [itype(35, S0, T4, off), itype(48, S0, T5, off), itype(35, S0, ZERO, off)]
    for off in range(8):
        words += [itype(40, S0, S1, 0x20 + off), itype(42, S0, S1, 0x30 + off), itype(46, S0, S1, 0x40 + off)]
        if off % 2 == 0:
            words.append(itype(41, S0, S1, 0x50 + off))
        if off % 4 == 0:
            words += [itype(43, S0, S1, 0x60 + off), *li(T6, 0x55), itype(56, S0, T6, 0x70 + off)]
    for off in range(0, 16, 4):  # reread what was written
        words += [itype(35, S0, T0, 0x20 + off), itype(35, S0, T1, 0x30 + off), itype(35, S0, T2, 0x40 + off)]
    words += [itype(35, S2, T0, 0xFF8), itype(35, S2, T1, 0xFFC)]  # page end
    words += [itype(35, S2, T0, -0x1000 & 0xFFFF), itype(40, S2, S1, 0x2000)]  # absent page load, fresh page
    words += [*li(T0, 0xFFFFFFFC), itype(43, T0, S1, 0), itype(35, T0, T1, 0), itype(43, 0, S1, 4)]  # wrap
    final = run_prog(words + exit_(0), data=data)
    assert final.exit_code == 0


def test_syscalls():
    msg = b"hello, fast world\n"
    data = {DATA: msg, DATA + 0x1000 - 4: b"ABCDEFGH"}
    words = []
    words += [*sys(4004, 1, DATA, len(msg)), R(33, V0, 0, S0), R(33, A3, 0, S1)]
    words += sys(4004, 2, DATA, 5) + sys(4004, 3, DATA, 5) + sys(4004, 1, DATA, 0)
    words += sys(4004, 1, DATA + 0x1000 - 4, 8)  # crosses a page boundary
    words += sys(4004, 2, 0x20000000, 3)  # absent memory reads as zero
    words += sys(4045, 0) + sys(4045, 0x10000000) + sys(4045, 0x10020000) + sys(4045, 0x40000000)
    words += sys(4045, 0x40000001) + sys(4045, 0x20000000)
    words += sys(4045, 0x0FFFF000) + sys(4045, 0x10010000)  # brk shrinks and grows again
    words += sys(4090, 0, 0x1234, 3, 0x802) + sys(4090, 0, 0, 3, 0x802) + sys(4090, 0, 10, 3, 0x2)
    words += sys(4090, 0, 10, 3, 0x812) + sys(4090, 0, 0xFFFFF001, 3, 0x802)
    for map_type in (0, 1, 3, 4, 0xF):  # only MAP_SHARED (1) and MAP_PRIVATE (2) are accepted
        words += sys(4090, 0, 0x100, 3, 0x800 | map_type)
    words += sys(4090, 0, 0x2FFFE000, 3, 0x802) + sys(4090, 0, 0x3000, 3, 0x801)
    words += sys(4091, 0x40000000, 0x1000) + sys(4999, 1) + sys(4003, 0, DATA, 4)
    final = run_prog(words + exit_(9), data=data)
    assert final.exit_code == 9 and final.stdout.startswith(msg)


def test_pc_wraps_around():
    words = [*li(T0, 7), NOP, *exit_(4)]
    state = make_state(words, pc=0xFFFFFFF0)
    final = lockstep(state, max_steps=100)
    assert final.exit_code == 4


def test_large_writes_and_discarded_output(monkeypatch):
    big = bytes(random.Random(1).randrange(256) for _ in range(200_000))
    words = sys(4004, 1, DATA, len(big)) + sys(4004, 2, DATA + 3, 70_000) + sys(4004, 1, DATA, 10)
    state = make_state(words + exit_(0), data={DATA: big})
    final = lockstep(state)
    assert final.stdout == big + big[:10]
    monkeypatch.setattr(fast_mod, "_OUT_MAX_BUFFERED", 16)  # the write executed in Python
    lockstep(state)
    state.stdout = None
    state.stderr = None
    lockstep(state)
    # Discarded output is never read, however large (the reference does not read it either).
    monkeypatch.undo()
    huge = make_state(sys(4004, 1, DATA, 0xFFFFFFF0) + sys(4004, 2, 0, 0x80000000) + exit_(0))
    huge.stdout = huge.stderr = None
    lockstep(huge)


def test_pool_grows():
    words = (
        li(S0, DATA)
        + li(S1, 600)
        + [
            itype(43, S0, S1, 0),  # sw s1, 0(s0)
            itype(9, S1, S1, 0xFFFF),
            itype(5, S1, 0, 0xFFFD),  # bne s1, 0, back
            itype(9, S0, S0, 0x1000),  # next page (delay slot)
        ]
        + exit_(0)
    )
    final = run_prog(words)
    assert final.exited and len(final.memory.pages) > 600


def test_run_until_exact_and_exited_noop():
    words = []
    for i in range(200):
        words += [itype(9, T0, T0, i), itype(43, 0, T0, (DATA & 0xFFFF) + 4 * (i % 7))]
    state = make_state(words + exit_(5), regs={})
    rng = random.Random(7)
    targets = sorted(rng.sample(range(1, 400), 30))
    ref = state.copy()
    vm = FastVM.from_state(state, copy_memory=True)
    mem_id = id(vm.memory)
    for t in targets:
        while ref.step < t:
            step(ref)
        vm.run(t)
        got = vm.to_state()
        assert id(got.memory) == mem_id  # the same Memory, updated incrementally
        assert encode_state(got) == encode_state(ref)
    assert vm.run() is True
    assert vm.exit_code == 5
    before = vm.step
    assert vm.run(before + 100) is True and vm.step == before  # exited: nothing changes
    vm.run(3)  # a target in the past: nothing happens
    assert vm.step == before


def test_from_state_reuses_memory_and_merkle_cache():
    words = [itype(43, 0, T0, 0x100)] * 4 + exit_(0)
    state = make_state(words, regs={T0: 0xDEADBEEF})
    root0 = state.memory.merkle_root()
    vm = FastVM.from_state(state)
    assert vm.memory is state.memory
    vm.run()
    final = vm.to_state()
    assert final.memory is state.memory and final.memory.merkle_root() != root0
    assert final.memory.read_u32(0x100) == 0xDEADBEEF and final.exit_code == 0
    fresh = Memory()
    for page_no, page in final.memory.pages.items():
        fresh.write_bytes(page_no << 12, bytes(page))
    assert fresh.merkle_root() == final.memory.merkle_root()
    # The cached root equals the reference VM's, run on an untouched copy of the program.
    ref = make_state(words, regs={T0: 0xDEADBEEF})
    while not ref.exited:
        step(ref)
    assert encode_state(final) == encode_state(ref)


# --- random programs ----------------------------------------------------------------------------------

_OPS = [
    0,
    0,
    0,
    0,
    1,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    28,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    40,
    41,
    42,
    43,
    46,
    48,
    56,
    51,
    2,
    3,
]
_INVALID_OPS = [16, 17, 18, 19, 20, 21, 22, 23, 29, 31, 49, 53, 57, 61]
_SPECIAL = [
    0,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
    10,
    11,
    15,
    16,
    17,
    18,
    19,
    24,
    25,
    26,
    27,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    42,
    43,
    48,
    49,
    50,
    51,
    52,
    54,
    12,
]
_SPECIAL_RARE = [1, 5, 13, 14, 20, 28, 40, 53, 63]
_SPECIAL2 = [0, 1, 2, 4, 5, 32, 33]
_SPECIAL2_RARE = [3, 6, 16, 63]
_ALIGNED = {33: 2, 37: 2, 41: 2, 35: 4, 43: 4, 48: 4, 56: 4}


def _random_word(rng, pc):
    rare = rng.random() < 0.03
    op = rng.choice(_INVALID_OPS) if rare else rng.choice(_OPS)
    rs, rt, rd, sa = (rng.randrange(32) for _ in range(4))
    if rng.random() < 0.7:
        rs = rng.choice((S0, S1, S2, T0, T1))
    if op in _ALIGNED and rng.random() < 0.9:
        rs = S0
        return itype(op, rs, rt, rng.randrange(-64, 64) * _ALIGNED[op])
    if op == 0:
        funct = rng.choice(_SPECIAL_RARE) if rng.random() < 0.03 else rng.choice(_SPECIAL)
        if funct in (8, 9):
            rs = S2  # jump into the program
        if funct == 12 and rng.random() < 0.8:
            return None  # mostly skip syscalls (they need $v0 set up)
        return R(funct, rs, rt, rd, sa) | (rng.randrange(1024) << 6 if funct in (13, 48, 52) else 0)
    if op == 28:
        return SP2(rng.choice(_SPECIAL2_RARE if rng.random() < 0.05 else _SPECIAL2), rs, rt, rd)
    if op == 1:
        return itype(1, rs, rng.choice((0, 1, 16, 17, 2, 8)), rng.randrange(-8, 8))
    if op in (2, 3):
        return J(op, pc + 4 * rng.randrange(-8, 8))
    if op in (4, 5, 6, 7):
        return itype(op, rs, rt, rng.randrange(-8, 8))
    imm = rng.choice((rng.randrange(-64, 64), rng.randrange(65536)))
    return itype(op, rs, rt, imm)


@pytest.mark.parametrize("seed", range(6))
def test_random_programs(seed):
    rng = random.Random(seed)
    for _ in range(60):
        words = []
        while len(words) < 96:
            w = _random_word(rng, BASE + 4 * len(words))
            if w is not None:
                words.append(w)
        regs = {
            r: rng.choice((rng.randrange(1 << 32), rng.randrange(-16, 16) & 0xFFFFFFFF)) for r in range(1, 32)
        }
        regs[S0] = DATA + rng.randrange(0x100, 0x1F00, 4)
        regs[S1] = DATA + rng.randrange(0, 0x2000)
        regs[S2] = BASE + 4 * rng.randrange(96)
        data = {DATA: bytes(rng.randrange(256) for _ in range(0x2000))}
        lockstep(make_state(words, regs=regs, data=data), max_steps=300)


def test_preimage_syscalls_without_a_selected_key_are_einval():
    """vm-spec §5.5: length and read before any select return EINVAL in both VMs, asking no oracle."""
    from opml.vm.asm import encode, load_program

    sp_buf = 0x7FFF0000
    program = load_program(
        [
            encode("ori", 2, 0, 9002),
            encode("syscall"),  # preimage_length()
            encode("or", 16, 2, 0),
            encode("or", 17, 7, 0),  # keep $v0, $a3
            encode("ori", 2, 0, 9003),
            encode("lui", 5, sp_buf >> 16),
            encode("ori", 6, 0, 8),
            encode("syscall"),  # preimage_read(0, buf, 8)
            encode("or", 18, 2, 0),
            encode("or", 19, 7, 0),
            encode("ori", 2, 0, 4246),
            encode("syscall"),  # exit_group
        ]
    )
    final = lockstep(program)
    assert final.exited
    assert (final.registers[16], final.registers[17]) == (22, 1)
    assert (final.registers[18], final.registers[19]) == (22, 1)


def test_step_counter_beyond_int64_is_refused_with_advice():
    from opml.vm.errors import StepRangeError

    with pytest.raises(StepRangeError, match="reference"):
        FastVM.from_state(VMState(pc=0x1000, next_pc=0x1004, step=2**64 - 1))


def test_a_syscall_past_the_step_counter_changes_nothing():
    """The reference handler's step is refused before it runs: no register, pc or key half-written."""
    from opml.vm.asm import encode, load_program
    from opml.vm.errors import StepRangeError

    state = load_program([encode("syscall")], 0x1000)
    state.registers[2], state.registers[4] = 9001, 0x1000  # preimage_select of the code's own leaf
    state.step = 2**63 - 2
    vm = FastVM.from_state(state)
    with pytest.raises(StepRangeError):
        vm.run()
    after = vm.to_state()
    assert (after.pc, after.step, after.registers, after.preimage_key) == (
        0x1000,
        2**63 - 2,
        state.registers,
        bytes(32),
    )
