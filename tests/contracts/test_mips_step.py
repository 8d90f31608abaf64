"""MIPS.sol against the reference VM, one test per instruction class (vm-spec §4, §5).

Every vector is stepped through the contract in a transaction; the returned hash, the emitted
hashes and the emitted post-state bytes must equal the reference VM's. Panics, no-ops, traps,
jumps and system calls are also checked against post-states derived by hand from vm-spec
(``expect``), so that a bug both VMs share still fails.
"""

import random

import pytest
import sha3
from _mips import (
    A0,
    A1,
    A2,
    A3,
    CODE_BASE,
    DATA_BASE,
    HEAP_BASE,
    RA,
    SP,
    STACK_TOP,
    T0,
    T1,
    T2,
    V0,
    check_step,
    i_type,
    j_type,
    make_state,
    r_type,
    realistic_memory,
    revert_name,
    special2,
)

from opml.vm.state import encode_state
from opml.vm.witness import step_witness

M32 = 0xFFFFFFFF
SIGILL, SIGTRAP, SIGBUS = 4, 5, 7

# --- Post-states by hand (vm-spec §2) ---------------------------------------------------------------


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def expect(
    pre, *, advance=True, next_pc=None, panic=None, exit_code=None, regs=None, mem_root=None, **fields
) -> bytes:
    """The post-state of one step from the encoded ``pre``, patched at the offsets of §2.1.

    ``step`` always increments. ``panic=s``: exited, exit code 128 + s, nothing else (§4.6).
    ``exit_code``: exited with that code, pc not advanced (§5). Otherwise ``pc = nextPC`` and
    ``nextPC = next_pc`` (default ``nextPC + 4``) unless ``advance`` is false; ``regs`` and the
    32-bit ``fields`` (``brk``, ``heap``, ``lo``, ``hi``) and ``mem_root`` are set.
    """
    post = bytearray(pre)
    if mem_root is not None:
        post[0:32] = mem_root
    post[90:98] = ((int.from_bytes(pre[90:98], "big") + 1) % 2**64).to_bytes(8, "big")
    if panic is not None or exit_code is not None:
        post[88], post[89] = 128 + panic if panic is not None else exit_code, 1
        return bytes(post)
    if advance:
        pc = _u32(pre, 68)
        post[64:68] = pc.to_bytes(4, "big")
        post[68:72] = ((pc + 4) % 2**32 if next_pc is None else next_pc).to_bytes(4, "big")
    offsets = {"lo": 72, "hi": 76, "brk": 80, "heap": 84}
    for name, value in fields.items():
        post[offsets[name] : offsets[name] + 4] = value.to_bytes(4, "big")
    for reg, value in (regs or {}).items():
        post[98 + 4 * reg : 102 + 4 * reg] = value.to_bytes(4, "big")
    return bytes(post)


def one_leaf_root(index: int, leaf: bytes) -> bytes:
    """§3.1 by hand: the memory root when leaf ``index`` is the only non-zero one."""
    zero, node = bytes(32), leaf
    for level in range(27):
        pair = zero + node if index >> level & 1 else node + zero
        node, zero = sha3.keccak_256(pair).digest(), sha3.keccak_256(zero + zero).digest()
    return node


def instruction_proof_size(proof: bytes) -> int:
    """36 bytes of leaf and mask, and one sibling per clear mask bit (§3.3)."""
    return 36 + 32 * (27 - bin(int.from_bytes(proof[32:36], "big")).count("1"))


def hash_by_hand(post: bytes) -> bytes:
    """§2.2: keccak256 with its top byte replaced by the status."""
    exit_code, exited = post[88], post[89]
    status = 3 if not exited else (0 if exit_code == 0 else 1 if exit_code == 1 else 2)
    return bytes([status]) + sha3.keccak_256(post).digest()[1:]


def check_against_spec(mips, deployer, state, expected_post=None, transact=True, **how):
    """``check_step`` (contract == reference), then the contract's result against ``expect(**how)``:
    the emitted post-state bytes (in a transaction) and the returned hash."""
    pre = encode_state(state)
    post = expect(pre, **how) if expected_post is None else expected_post
    receipt = check_step(mips, deployer, state, transact=transact)
    if receipt is not None:
        [log] = receipt.decode_logs(mips.StepExecuted)
        assert bytes(log.postState) == post
    witness = step_witness(state)
    assert bytes(mips.step.call(witness.state_data, witness.proof)) == hash_by_hand(post)
    return post


EDGE = [
    0,
    1,
    2,
    31,
    32,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0x80000001,
    0xFFFFFFFE,
    M32,
    0x12345678,
]


def _pairs(seed, n):
    rng = random.Random(seed)
    out = [(a, b) for a in (0, 1, 0x7FFFFFFF, 0x80000000, M32) for b in (0, 1, 0x7FFFFFFF, 0x80000000, M32)]
    out += [
        (rng.choice([*EDGE, rng.getrandbits(32)]), rng.choice([*EDGE, rng.getrandbits(32)])) for _ in range(n)
    ]
    return out


# --- ALU --------------------------------------------------------------------------------------------

SPECIAL_ALU = {
    "sll": 0,
    "srl": 2,
    "sra": 3,
    "sllv": 4,
    "srlv": 6,
    "srav": 7,
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
    "movz": 10,
    "movn": 11,
}


@pytest.mark.parametrize("name", sorted(SPECIAL_ALU))
def test_special_alu(mips, deployer, name):
    for k, (a, b) in enumerate(_pairs(name, 6)):
        insn = r_type(SPECIAL_ALU[name], rs=T0, rt=T1, rd=T2, sa=k)
        check_step(mips, deployer, make_state(insn, {T0: a, T1: b, T2: 0xDEADBEEF}), transact=k < 3)


IMMEDIATE = {"addi": 8, "addiu": 9, "slti": 10, "sltiu": 11, "andi": 12, "ori": 13, "xori": 14, "lui": 15}


@pytest.mark.parametrize("name", sorted(IMMEDIATE))
def test_immediate_alu(mips, deployer, name):
    for k, (a, imm) in enumerate(_pairs(name, 6)):
        insn = i_type(IMMEDIATE[name], rs=T0, rt=T1, imm=imm)
        check_step(mips, deployer, make_state(insn, {T0: a}), transact=k < 3)


SPECIAL2_OPS = {"madd": 0, "maddu": 1, "mul": 2, "msub": 4, "msubu": 5, "clz": 32, "clo": 33}


@pytest.mark.parametrize("name", sorted(SPECIAL2_OPS))
def test_special2(mips, deployer, name):
    for k, (a, b) in enumerate(_pairs(name, 6)):
        insn = special2(SPECIAL2_OPS[name], rs=T0, rt=T1, rd=T2)
        state = make_state(insn, {T0: a, T1: b}, hi=0x89ABCDEF, lo=0xFEDCBA98)
        check_step(mips, deployer, state, transact=k < 3)


HILO = {"mfhi": 16, "mthi": 17, "mflo": 18, "mtlo": 19, "mult": 24, "multu": 25, "div": 26, "divu": 27}


@pytest.mark.parametrize("name", sorted(HILO))
def test_hi_lo(mips, deployer, name):
    for k, (a, b) in enumerate([*_pairs(name, 6), (2147483648, M32), (5, 0), (M32, 2), (7, M32 - 1)]):
        insn = r_type(HILO[name], rs=T0, rt=T1, rd=T2)
        state = make_state(insn, {T0: a, T1: b}, hi=0x11111111, lo=0x22222222)
        check_step(mips, deployer, state, transact=k < 3)


def test_writes_to_zero_are_discarded(mips, deployer):
    # Only pc, nextPC and step change: $0 stays 0.
    check_against_spec(mips, deployer, make_state(r_type(33, rs=T0, rt=T1, rd=0), {T0: 5, T1: 6}))
    check_against_spec(mips, deployer, make_state(i_type(15, rt=0, imm=0x1234)))


def test_sync_pref_are_nops(mips, deployer):
    regs = {T0: 0x12345671, T1: 0xCAFE}
    check_against_spec(mips, deployer, make_state(r_type(15), regs, hi=1, lo=2))
    # pref's address 0x12345674 is in no proven leaf: a memory access would need a data proof.
    check_against_spec(mips, deployer, make_state(i_type(51, rs=T0, rt=1, imm=3), regs, hi=1, lo=2))


# --- Control flow -----------------------------------------------------------------------------------

BRANCHES = {
    "beq": (4, 0),
    "bne": (5, 0),
    "blez": (6, 0),
    "bgtz": (7, 0),
    "bltz": (1, 0),
    "bgez": (1, 1),
    "bltzal": (1, 16),
    "bgezal": (1, 17),
}


@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_branch(mips, deployer, name):
    opcode, cond = BRANCHES[name]
    for a, b in [(0, 0), (1, 1), (1, 2), (M32, 0), (0x80000000, 5), (5, 5)]:
        for imm in (3, 0xFFFE):
            rt = cond if opcode == 1 else T1
            insn = i_type(opcode, rs=T0, rt=rt, imm=imm)
            check_step(mips, deployer, make_state(insn, {T0: a, T1: b, RA: 7}), transact=imm == 3)


def test_branch_in_delay_slot_is_sigill(mips, deployer):
    for insn in (
        i_type(4, 0, 0, 4),
        i_type(1, 0, 17, 4),
        j_type(2, CODE_BASE),
        r_type(8, rs=T0),
        r_type(9, rs=T0, rd=RA),
    ):
        state = make_state(insn, {T0: CODE_BASE}, next_pc=CODE_BASE + 0x100)
        check_against_spec(mips, deployer, state, panic=SIGILL)  # the link is not written either


def test_jumps(mips, deployer):
    pc = 0x1FFFFFF8  # pc + 4 lies in the next 256 MiB region: T = 0x10000000 | 0x0ABCDEF0
    check_against_spec(mips, deployer, make_state(j_type(2, 0x0ABCDEF0), pc=pc), next_pc=0x1ABCDEF0)
    check_against_spec(
        mips, deployer, make_state(j_type(3, 0x00123450)), next_pc=0x00123450, regs={RA: CODE_BASE + 8}
    )
    # A misaligned target is fine here (the next step panics).
    check_against_spec(mips, deployer, make_state(r_type(8, rs=T0), {T0: 0x00400123}), next_pc=0x00400123)
    check_against_spec(
        mips,
        deployer,
        make_state(r_type(9, rs=T0, rd=T1), {T0: 0x00400100}),
        next_pc=0x00400100,
        regs={T1: CODE_BASE + 8},
    )
    # The target is read before the link is written.
    check_against_spec(
        mips,
        deployer,
        make_state(r_type(9, rs=RA, rd=RA), {RA: 0x00400200}),
        next_pc=0x00400200,
        regs={RA: CODE_BASE + 8},
    )
    check_against_spec(
        mips, deployer, make_state(r_type(9, rs=T0, rd=0), {T0: 0x00400100}), next_pc=0x00400100
    )


def test_delay_slot_is_executed(mips, deployer):
    """A branch then its delay slot: the second step runs at the old nextPC and jumps to the target."""
    state = make_state([i_type(4, 0, 0, 7), i_type(9, 0, T0, 42)])
    target = CODE_BASE + 4 + (7 << 2)
    after_branch = check_against_spec(mips, deployer, state, next_pc=target)
    from opml.vm.step import step as reference_step

    reference_step(state)
    assert state.pc == CODE_BASE + 4 and state.next_pc == target
    assert encode_state(state) == after_branch
    check_against_spec(mips, deployer, state, next_pc=target + 4, regs={T0: 42})  # now at the target


@pytest.mark.parametrize("first", ["beq", "bne"], ids=["taken", "not-taken"])
def test_branch_after_a_branch_to_pc_plus_8_is_not_in_a_delay_slot(mips, deployer, first):
    """vm-spec §4.2: a branch at p to p + 8 leaves nextPC = pc + 4 taken or not, so a branch in its
    delay slot is judged by the rule (nextPC ≠ pc + 4) as not in one and runs as an ordinary branch,
    in the contract and the reference alike."""
    from opml.vm.step import step as reference_step

    opcode = 4 if first == "beq" else 5
    state = make_state([i_type(opcode, 0, 0, 1), i_type(4, 0, 0, 9), i_type(9, 0, T0, 42)])
    check_step(mips, deployer, state)
    reference_step(state)
    assert (state.pc, state.next_pc) == (CODE_BASE + 4, CODE_BASE + 8)
    second = check_step(mips, deployer, state)  # no SIGILL: the second branch is taken
    assert second is not None
    reference_step(state)
    assert not state.exited and (state.pc, state.next_pc) == (CODE_BASE + 8, CODE_BASE + 8 + (9 << 2))


def test_misaligned_pc_is_sigbus(mips, deployer):
    check_against_spec(mips, deployer, make_state([], pc=CODE_BASE + 2), panic=SIGBUS)


# --- Loads and stores -------------------------------------------------------------------------------

LOADS = {"lb": 32, "lh": 33, "lwl": 34, "lw": 35, "lbu": 36, "lhu": 37, "lwr": 38, "ll": 48}
STORES = {"sb": 40, "sh": 41, "swl": 42, "sw": 43, "swr": 46, "sc": 56}
# addresses: in the instruction leaf, a neighbouring leaf (L = 0), the same page, data, heap, stack, top
TARGETS = [
    CODE_BASE + 16,
    CODE_BASE + 32,
    CODE_BASE + 0x400,
    DATA_BASE + 0x100,
    HEAP_BASE + 0x40,
    STACK_TOP - 64,
    0xFFFFFFE0,
    0,
]


@pytest.mark.parametrize("name", sorted(LOADS) + sorted(STORES))
def test_load_store(mips, deployer, name):
    opcode = (LOADS | STORES)[name]
    mem = realistic_memory()
    for _k, base in enumerate(TARGETS):
        for b in range(4):
            insn = i_type(opcode, rs=T0, rt=T1, imm=0xFFF0 + b)  # offset -16 + b
            state = make_state(insn, {T0: base + 16, T1: 0xA1B2C3D4}, memory=mem.copy())
            check_step(mips, deployer, state, transact=b == 0 or name in ("lwl", "lwr", "swl", "swr"))


def test_load_into_zero_needs_data_proof(mips, deployer):
    state = make_state(i_type(35, rs=SP, rt=0, imm=0), {SP: STACK_TOP - 32}, memory=realistic_memory())
    check_against_spec(mips, deployer, state)  # an ordinary step: $0 stays 0
    witness = step_witness(state)
    instruction = instruction_proof_size(witness.proof)
    assert len(witness.proof) > instruction
    assert revert_name(mips, witness.state_data, witness.proof[:instruction]) == "InvalidProofLength"


def test_store_into_instruction_leaf(mips, deployer):
    """A store into the leaf holding pc: no data proof, the root is recomputed along the same path."""
    sw, sb = i_type(43, rs=T0, rt=T1, imm=4), i_type(40, rs=T0, rt=T1, imm=31)
    for insn, value, leaf in [
        (sw, 0x01020304, insn_bytes(sw) + bytes.fromhex("04030201") + bytes(24)),
        (sb, 0x1FF, insn_bytes(sb) + bytes(27) + b"\xff"),  # the low byte of $t1 at offset 31
    ]:
        state = make_state(insn, {T0: CODE_BASE, T1: value})
        assert len(step_witness(state).proof) == instruction_proof_size(step_witness(state).proof)
        check_against_spec(mips, deployer, state, mem_root=one_leaf_root(CODE_BASE >> 5, leaf))


def insn_bytes(word: int) -> bytes:
    return word.to_bytes(4, "little")


@pytest.mark.parametrize("opcode,addr", [(33, 1), (37, 3), (41, 5), (35, 2), (43, 1), (48, 3), (56, 2)])
def test_misaligned_access_is_sigbus(mips, deployer, opcode, addr):
    state = make_state(
        i_type(opcode, rs=T0, rt=T1, imm=0),
        {T0: STACK_TOP - 64 + addr, T1: 0x5A5A5A5A},
        memory=realistic_memory(),
    )
    check_against_spec(mips, deployer, state, panic=SIGBUS)  # memory and $t1 unchanged


# --- Traps, break, invalid encodings ----------------------------------------------------------------

TRAPS = {"tge": 48, "tgeu": 49, "tlt": 50, "tltu": 51, "teq": 52, "tne": 54}


def _signed(x):
    return x - (1 << 32) if x >> 31 else x


TRAP_CONDITIONS = {  # §4.5, by hand
    "tge": lambda a, b: _signed(a) >= _signed(b),
    "tgeu": lambda a, b: a >= b,
    "tlt": lambda a, b: _signed(a) < _signed(b),
    "tltu": lambda a, b: a < b,
    "teq": lambda a, b: a == b,
    "tne": lambda a, b: a != b,
}


@pytest.mark.parametrize("name", sorted(TRAPS))
def test_traps(mips, deployer, name):
    outcomes = set()
    for a, b in [(0, 0), (1, 2), (M32, 0), (0x80000000, 0x7FFFFFFF)]:
        trapped = TRAP_CONDITIONS[name](a, b)
        outcomes.add(trapped)
        for code in (0, 6, 7, 0x3FF):  # SIGTRAP whatever the code
            insn = r_type(TRAPS[name], rs=T0, rt=T1) | (code << 6)
            state = make_state(insn, {T0: a, T1: b})
            how = {"panic": SIGTRAP} if trapped else {}
            check_against_spec(mips, deployer, state, transact=code == 7, **how)
    assert outcomes == {True, False}  # both outcomes are exercised


def test_break(mips, deployer):
    for code in (0, 6, 7, 8, 0x3FF, 0x3FF | (0x3FF << 10)):
        check_against_spec(mips, deployer, make_state(r_type(13) | (code << 6)), panic=SIGTRAP)


ILLEGAL = [
    r_type(1),
    r_type(5),
    r_type(14),
    r_type(20),
    r_type(28),
    r_type(40),
    r_type(44),
    r_type(53),
    r_type(63),
    i_type(1, rt=2),
    i_type(1, rt=3),
    i_type(1, rt=8),
    i_type(1, rt=12),
    i_type(1, rt=18),
    i_type(1, rt=31),
    i_type(16),
    i_type(17),
    i_type(18),
    i_type(19),
    i_type(20),
    i_type(21),
    i_type(22),
    i_type(23),
    i_type(24),
    i_type(27),
    i_type(29),
    i_type(30),
    i_type(31),
    special2(3),
    special2(63),
    special2(34),
    i_type(39),
    i_type(44),
    i_type(45),
    i_type(47),
    i_type(49),
    i_type(50),
    i_type(52),
    i_type(53),
    i_type(55),
    i_type(57),
    i_type(61),
    i_type(63),
    0x7C03E83B,  # rdhwr $3, $29
]


@pytest.mark.parametrize("insn", ILLEGAL, ids=[f"{w:#010x}" for w in ILLEGAL])
def test_illegal_is_sigill(mips, deployer, insn):
    state = make_state(insn, {T0: STACK_TOP - 64}, memory=realistic_memory())
    check_against_spec(mips, deployer, state, transact=False, panic=SIGILL)


# --- System calls -----------------------------------------------------------------------------------

SYSCALL = r_type(12)
BRK = 0x00420000
EBADF, EINVAL, ENOMEM, ENOSYS = 9, 22, 12, 89


def ok(value, **fields):
    return {"regs": {V0: value, A3: 0}, **fields}


def err(errno):
    return {"regs": {V0: errno, A3: 1}}


# (registers, the outcome by hand from vm-spec §5): brk = BRK and heap = HEAP_BASE before the step.
SYSCALL_CASES = [
    ({V0: 4001, A0: 0x1FF}, {"exit_code": 0xFF}),  # PANIC status (exit code >= 2)
    ({V0: 4246, A0: 0}, {"exit_code": 0}),  # VALID
    ({V0: 4246, A0: 1}, {"exit_code": 1}),  # INVALID
    ({V0: 4004, A0: 1, A1: DATA_BASE, A2: 12}, ok(12)),
    ({V0: 4004, A0: 2, A1: 0, A2: 0xFFFFFFFF}, ok(0xFFFFFFFF)),
    ({V0: 4004, A0: 3, A2: 4}, err(EBADF)),
    ({V0: 4045, A0: 0}, ok(BRK)),
    ({V0: 4045, A0: 0x00430000}, ok(0x00430000, brk=0x00430000)),
    ({V0: 4045, A0: 0x40000000}, ok(0x40000000, brk=0x40000000)),  # BRK_LIMIT itself
    ({V0: 4045, A0: 0x40000001}, ok(BRK)),
    ({V0: 4090, A1: 4096, A3: 0x802}, ok(HEAP_BASE, heap=HEAP_BASE + 4096)),
    ({V0: 4090, A1: 1, A3: 0x801}, ok(HEAP_BASE, heap=HEAP_BASE + 4096)),  # MAP_SHARED, one page
    ({V0: 4090, A1: 1, A3: 0x800}, err(EINVAL)),  # MAP_TYPE 0
    ({V0: 4090, A1: 0, A3: 0x802}, err(EINVAL)),  # len 0
    ({V0: 4090, A1: 4096, A3: 0x2}, err(EINVAL)),  # not anonymous
    ({V0: 4090, A1: 4096, A3: 0x812}, err(EINVAL)),  # MAP_FIXED
    ({V0: 4090, A1: 0xFFFFF001, A3: 0x802}, err(ENOMEM)),  # size rounds to 0 (mod 2^32)
    ({V0: 4090, A1: 0x30000000, A3: 0x802}, ok(HEAP_BASE, heap=0x70000000)),  # exactly MMAP_LIMIT
    ({V0: 4090, A1: 0x30000001, A3: 0x802}, err(ENOMEM)),
    ({V0: 4090, A1: 0xC0000000, A3: 0x802}, err(ENOMEM)),  # heap + size wraps 2^32: must still be ENOMEM
    ({V0: 4091, A0: HEAP_BASE, A1: 4096}, ok(0)),
    ({V0: 4000}, err(ENOSYS)),
    ({V0: 0}, err(ENOSYS)),
    ({V0: 4003}, err(ENOSYS)),
]


@pytest.mark.parametrize("regs, outcome", SYSCALL_CASES, ids=[str(i) for i in range(len(SYSCALL_CASES))])
def test_syscall(mips, deployer, regs, outcome):
    state = make_state(SYSCALL, {T0: 99, A3: 5, **regs}, brk=BRK, heap=HEAP_BASE)
    check_against_spec(mips, deployer, state, **outcome)


# --- Seeded fuzz over random encodings --------------------------------------------------------------


def test_fuzz_random_instructions(mips, deployer):
    """Random instruction words (opcode/funct biased to valid ones) with random registers."""
    rng = random.Random(20240611)
    mem = realistic_memory()
    for _ in range(150):
        kind = rng.random()
        word = rng.getrandbits(32)
        if kind < 0.4:
            word &= ~(0x3F << 26)  # SPECIAL
        elif kind < 0.5:
            word = (word & 0x03FFFFFF) | (28 << 26)
        regs = {
            r: rng.choice(
                [
                    *EDGE,
                    rng.getrandbits(32),
                    STACK_TOP - rng.randrange(0, 4096),
                    CODE_BASE + rng.randrange(0, 4096),
                ]
            )
            for r in range(1, 32)
        }
        state = make_state(word, regs, memory=mem.copy(), hi=rng.getrandbits(32), lo=rng.getrandbits(32))
        check_step(mips, deployer, state, transact=False)
