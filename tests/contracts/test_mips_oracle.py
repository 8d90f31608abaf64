"""MIPS.sol's preimage system calls (vm-spec §5.5) against a deployed PreimageOracle.

Every expected post-state is built by hand from §5.5 (``_expect``: registers, ``pc``, the written
bytes, the selected key), and the Python reference VM (``step(state, oracle=OracleView(...))`` over a
``PreimageStore`` holding the same data as the on-chain oracle) must give the same post-state
(except for the ≥ 4 GiB preimages of the EFBIG test, which are not put in the store).
``test_read_random`` adds vectors whose expectation is the Python VM's alone.

Witnesses come from ``step_witness`` (its data address for 9001/9003 needs no oracle data, §3.4).
"""

import random

import pytest
from _mips import (
    A0,
    A1,
    A2,
    A3,
    CODE_BASE,
    DATA_BASE,
    STACK_TOP,
    V0,
    ChainOracle,
    assert_every_bit_is_bound,
    budget,
    dense_memory_around,
    error_name,
    make_state,
    r_type,
    raw_step_outcome,
    realistic_memory,
)
from ape.exceptions import ContractLogicError

from opml.oracle import ChunkTree, PreimageStore, keccak_key, local_ident_key, localize_ident
from opml.vm.preimage import OracleView
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step as reference_step
from opml.vm.witness import encode_memory_proof, step_witness

SYS_SELECT, SYS_LENGTH, SYS_READ = 9001, 9002, 9003
EINVAL, EFBIG = 22, 27
SYSCALL = r_type(12)
PC = CODE_BASE + 0x1A4
GIB = 1 << 30
# gas of a preimage_read step of a 1 GiB part, measured on py-evm when the budget was set (vm-spec §9)
MEASURED_READ_1GIB = {"realistic": 84_813, "dense": 100_381}
CTX = bytes.fromhex("c7" * 32)
OTHER_CTX = bytes.fromhex("c8" * 32)

DATA100 = random.Random(100).randbytes(100)  # last part (96) holds 4 bytes
DATA64 = random.Random(64).randbytes(64)  # a multiple of 32: there is no part at offset 64
KEY100 = keccak_key(DATA100)
KEY64 = keccak_key(DATA64)
LOCAL_IDENT = 7
LOCAL_VALUE = bytes.fromhex("0102030405060708090a0b0c0d0e0f1011121314")  # 20 bytes


@pytest.fixture(scope="module")
def oracle(deployer, requester, server, challenger, project):
    # The role fixtures are requested here so that they exist before ape's per-test snapshots.
    return deployer.deploy(project.PreimageOracle)


@pytest.fixture(scope="module")
def mips(deployer, project, oracle):
    return deployer.deploy(project.MIPS, oracle.address)


@pytest.fixture(scope="module")
def gib_tree():
    """1 GiB, zero except for a few random chunks (a sparse tree: no 1 GiB of hashing)."""
    rng = random.Random(2024)
    return ChunkTree.from_sparse(GIB, {rng.randrange(GIB // 32): rng.randbytes(32) for _ in range(16)})


@pytest.fixture(scope="module")
def store(tmp_path_factory, gib_tree, server):
    """The off-chain store with the same preimages as the tests load on-chain."""
    s = PreimageStore(tmp_path_factory.mktemp("preimages"))
    s.put_keccak(DATA100)
    s.put_keccak(DATA64)
    s.put_chunk_merkle(gib_tree)
    s.put_local(LOCAL_IDENT, server, CTX, LOCAL_VALUE)
    return s


# --- helpers --------------------------------------------------------------------------------------


def _state(num, a0=0, a1=0, a2=0, key=bytes(32), memory=None):
    """A running state about to execute ``syscall`` with ``$v0 = num`` (``$a3`` is garbage on entry)."""
    regs = {V0: num, A0: a0, A1: a1, A2: a2, A3: 0x5A5A5A5A}
    mem = realistic_memory() if memory is None else memory
    return make_state(SYSCALL, regs, pc=PC, memory=mem, preimage_key=key)


def _expect(state, v0, err=0, key=None, write=None):
    """The post-state bytes of §5.5 built by hand: ``$v0``/``$a3``, ``pc`` advanced, ``step + 1``,
    optionally the new ``preimageKey`` and ``write = (addr, bytes)`` stored in memory."""
    post = state.copy()
    post.registers[V0] = v0
    post.registers[A3] = err
    post.pc, post.next_pc = state.next_pc, (state.next_pc + 4) & 0xFFFFFFFF
    post.step += 1
    if key is not None:
        post.preimage_key = key
    if write is not None:
        post.memory.write_bytes(*write)
    return encode_state(post)


def _python_post(state, store, caller, local_context):
    post = state.copy()
    post.stdout = post.stderr = None
    reference_step(post, oracle=OracleView(store, caller, local_context or bytes(32)))
    return encode_state(post)


def _args(w, local_context):
    return (w.state_data, w.proof) if local_context is None else (w.state_data, w.proof, local_context)


def check(mips, sender, state, expected, store=None, local_context=None):
    """Step ``state`` on the contract as ``sender`` (the 3-argument ``step`` when ``local_context`` is
    given) and assert the post-state equals ``expected``; return the receipt."""
    if store is not None:
        assert _python_post(state, store, sender, local_context) == expected, "Python VM disagrees"
    w = step_witness(state)
    post_hash = state_hash(expected)
    args = _args(w, local_context)
    assert bytes(mips.step.call(*args, sender=sender)) == post_hash
    receipt = mips.step(*args, sender=sender)
    logs = list(receipt.decode_logs(mips.StepExecuted))
    assert len(logs) == 1
    assert bytes(logs[0].preStateHash) == state_hash(w.state_data)
    assert bytes(logs[0].postStateHash) == post_hash
    assert bytes(logs[0].postState) == expected
    return receipt


def reverts(mips, oracle, sender, state_data, proof, local_context=None):
    """The custom error name a ``step`` call reverts with (``None`` if it succeeds)."""
    args = (state_data, proof) if local_context is None else (state_data, proof, local_context)
    try:
        mips.step.call(*args, sender=sender)
    except ContractLogicError as err:
        return error_name(err, mips, oracle)
    return None


def _instruction_proof_size(state):
    return len(encode_memory_proof(state.memory, state.pc >> 5))


def _load_keccak(oracle, sender, data, part_offset):
    oracle.loadKeccak256PreimagePart(part_offset, data, sender=sender)


# --- construction ---------------------------------------------------------------------------------


def test_oracle_view(mips, oracle):
    assert mips.oracle() == oracle.address


# --- preimage_select ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["data", "stack", "instruction leaf"])
def test_select_aligned(mips, deployer, store, where):
    key_addr = {"data": DATA_BASE + 0x40, "stack": STACK_TOP - 0x200, "instruction leaf": PC & ~31}[where]
    state = _state(SYS_SELECT, a0=key_addr)
    if where == "instruction leaf":
        key = state.memory.read_bytes(key_addr, 32)  # the code leaf itself, syscall word included
    else:
        key = KEY100
        state.memory.write_bytes(key_addr, key)
    w = step_witness(state)
    data_proof = len(w.proof) - _instruction_proof_size(state)
    assert (data_proof == 0) == (where == "instruction leaf")
    check(mips, deployer, state, _expect(state, 0, key=key), store)


@pytest.mark.parametrize("misalign", [1, 4, 31])
def test_select_unaligned_is_einval(mips, oracle, deployer, store, misalign):
    state = _state(SYS_SELECT, a0=DATA_BASE + 0x40 + misalign, key=KEY64)
    w = step_witness(state)
    assert len(w.proof) == _instruction_proof_size(state)  # no data proof
    check(mips, deployer, state, _expect(state, EINVAL, err=1), store)
    # a data proof for the key's leaf is one proof too many
    extra = encode_memory_proof(state.memory, (DATA_BASE + 0x40) >> 5, 5)
    assert reverts(mips, oracle, deployer, w.state_data, w.proof + extra) == "InvalidProofLength"


def test_select_needs_its_data_proof(mips, oracle, deployer):
    state = _state(SYS_SELECT, a0=DATA_BASE + 0x40)
    state.memory.write_bytes(DATA_BASE + 0x40, KEY100)
    w = step_witness(state)
    n = _instruction_proof_size(state)
    assert reverts(mips, oracle, deployer, w.state_data, w.proof[:n]) == "InvalidProofLength"
    bad = bytearray(w.proof)
    bad[n] ^= 1  # the key leaf
    assert reverts(mips, oracle, deployer, w.state_data, bytes(bad)) == "InvalidMemoryProof"


# --- preimage_length ------------------------------------------------------------------------------


def test_length_loaded(mips, oracle, deployer, requester, store):
    _load_keccak(oracle, requester, DATA100, 64)  # any part gives the length
    state = _state(SYS_LENGTH, key=KEY100)
    assert len(step_witness(state).proof) == _instruction_proof_size(state)
    check(mips, deployer, state, _expect(state, 100), store)


def test_length_not_loaded_reverts(mips, oracle, deployer):
    w = step_witness(_state(SYS_LENGTH, key=KEY64))
    assert reverts(mips, oracle, deployer, w.state_data, w.proof) == "PreimageNotLoaded"


@pytest.mark.parametrize("key_type", [0, 4, 0xFF])
def test_unknown_key_type_is_einval(mips, deployer, store, key_type):
    """A read before any select (key 0) or of a key of no known type is EINVAL, never a revert:
    such a step must stay provable (§5.5)."""
    key = bytes([key_type]) + bytes(range(31))
    length = _state(SYS_LENGTH, key=key)
    check(mips, deployer, length, _expect(length, EINVAL, err=1), store)
    read = _state(SYS_READ, a0=0, a1=STACK_TOP - 64, a2=8, key=key)
    check(mips, deployer, read, _expect(read, EINVAL, err=1), store)


@pytest.mark.parametrize(
    "size,v0,err", [((1 << 32) - 1, 0xFFFFFFFF, 0), (1 << 32, EFBIG, 1), (1 << 40, EFBIG, 1)]
)
def test_length_efbig(mips, oracle, deployer, requester, size, v0, err):
    tree = ChunkTree.from_sparse(size, {})
    oracle.loadChunkMerklePart(*tree.proof(0).args(), sender=requester)
    state = _state(SYS_LENGTH, key=tree.key)
    check(mips, deployer, state, _expect(state, v0, err=err))


# --- preimage_read --------------------------------------------------------------------------------

# name -> (offset, buf, count, n): n = min(count, 32 − offset % 32, 32 − buf % 32, len − offset), len = 100
READS = {
    "within a part": (5, DATA_BASE + 0x100, 10, 10),
    "whole part": (32, DATA_BASE + 0x100, 32, 32),
    "count above part": (32, DATA_BASE + 0x100, 1000, 32),
    "crosses a part boundary": (28, DATA_BASE + 0x100, 10, 4),
    "buf near leaf end": (0, DATA_BASE + 0x11E, 10, 2),
    "buf and offset unaligned": (37, STACK_TOP - 0x200 + 2, 0xFFFFFFFF, 27),
    "near the end": (98, DATA_BASE + 0x100, 10, 2),
    "last byte": (99, DATA_BASE + 0x100, 1, 1),
    "into the instruction leaf": (1, (PC & ~31) + 12, 8, 8),  # the syscall word is at + 4
}


@pytest.mark.parametrize("name", sorted(READS))
def test_read(mips, oracle, deployer, requester, store, name):
    offset, buf, count, n = READS[name]
    _load_keccak(oracle, requester, DATA100, offset - offset % 32)
    state = _state(SYS_READ, a0=offset, a1=buf, a2=count, key=KEY100)
    w = step_witness(state)
    assert (len(w.proof) == _instruction_proof_size(state)) == (buf >> 5 == PC >> 5)
    check(mips, deployer, state, _expect(state, n, write=(buf, DATA100[offset : offset + n])), store)


@pytest.mark.parametrize(
    "data,key,offset,loaded",
    [
        (DATA100, KEY100, 100, 96),  # offset == len inside the last part (which is loaded)
        (DATA100, KEY100, 127, 96),  # past the end, same part
        (DATA64, KEY64, 64, 0),  # offset == len at a part boundary: no such part, the length decides
        (DATA100, KEY100, 0x7FFFFFE0, 0),  # far past the end
        (DATA100, KEY100, 0xFFFFFFFF, 32),
    ],
)
def test_read_end_of_data(mips, oracle, deployer, requester, store, data, key, offset, loaded):
    _load_keccak(oracle, requester, data, loaded)
    buf = DATA_BASE + 0x100
    state = _state(SYS_READ, a0=offset, a1=buf, a2=16, key=key)
    w = step_witness(state)
    n = _instruction_proof_size(state)
    assert len(w.proof) > n  # the data proof for buf is consumed even though nothing is written
    check(mips, deployer, state, _expect(state, 0), store)
    assert reverts(mips, oracle, deployer, w.state_data, w.proof[:n]) == "InvalidProofLength"
    bad = bytearray(w.proof)
    bad[n] ^= 1
    assert reverts(mips, oracle, deployer, w.state_data, bytes(bad)) == "InvalidMemoryProof"


def test_read_count_zero_takes_no_proof(mips, oracle, deployer, store):
    # nothing loaded: count == 0 does not ask the oracle either
    state = _state(SYS_READ, a0=5, a1=DATA_BASE + 0x100, a2=0, key=KEY64)
    w = step_witness(state)
    assert len(w.proof) == _instruction_proof_size(state)
    check(mips, deployer, state, _expect(state, 0), store)
    extra = encode_memory_proof(state.memory, (DATA_BASE + 0x100) >> 5, 10)
    assert reverts(mips, oracle, deployer, w.state_data, w.proof + extra) == "InvalidProofLength"


def test_read_not_loaded_reverts(mips, oracle, deployer, requester):
    buf = DATA_BASE + 0x100
    # nothing of the key is loaded: the length is unknown
    w = step_witness(_state(SYS_READ, a0=5, a1=buf, a2=4, key=KEY100))
    assert reverts(mips, oracle, deployer, w.state_data, w.proof) == "PreimageNotLoaded"
    # the length is known, and offset < len, but its part is not loaded
    _load_keccak(oracle, requester, DATA100, 0)
    w = step_witness(_state(SYS_READ, a0=40, a1=buf, a2=4, key=KEY100))
    assert reverts(mips, oracle, deployer, w.state_data, w.proof) == "PartNotLoaded"
    # a bad data proof is reported before the oracle is asked
    bad = bytearray(w.proof)
    bad[-1] ^= 1
    assert reverts(mips, oracle, deployer, w.state_data, bytes(bad)) == "InvalidMemoryProof"


def test_read_random(mips, oracle, deployer, requester, store):
    """Random reads of a fully loaded preimage; the expected post-state is the Python VM's."""
    for part in range(0, 100, 32):
        _load_keccak(oracle, requester, DATA100, part)
    rng = random.Random(9003)
    bases = [DATA_BASE + 0x100, STACK_TOP - 0x400, PC & ~31]
    for k in range(24):
        offset = rng.choice([rng.randrange(0, 100), rng.randrange(0, 140), rng.getrandbits(32)])
        buf = rng.choice(bases) + rng.choice([0, 1, 16, 31, rng.randrange(32)] if k % 3 else [8])
        count = rng.choice([0, 1, 2, 31, 32, 33, rng.getrandbits(32), rng.randrange(40)])
        if buf >> 5 == PC >> 5 and (buf & 31) < 8:
            buf += 8  # keep the syscall word (leaf bytes 4…7) intact
        state = _state(SYS_READ, a0=offset, a1=buf, a2=count, key=KEY100)
        expected = _python_post(state, store, deployer, None)
        w = step_witness(state)
        assert bytes(mips.step.call(w.state_data, w.proof, sender=deployer)) == state_hash(expected), (
            offset,
            buf,
            count,
        )


# --- key types ------------------------------------------------------------------------------------


def _gib_read_state(gib_tree, index, layout="realistic"):
    buf = STACK_TOP - 0x400
    mem = realistic_memory()
    if layout == "dense":
        dense_memory_around(mem, PC, buf)
    return _state(SYS_READ, a0=32 * index, a1=buf, a2=32, key=gib_tree.key, memory=mem), buf


@pytest.mark.parametrize("layout", ["realistic", "dense"])
def test_chunk_merkle_read_1gib_gas(mips, oracle, deployer, requester, store, gib_tree, layout):
    index = max(gib_tree.nonzero_chunks)
    proof = gib_tree.proof(32 * index)
    assert len(proof.siblings) == 25
    oracle.loadChunkMerklePart(*proof.args(), sender=requester)
    state, buf = _gib_read_state(gib_tree, index, layout)
    receipt = check(mips, deployer, state, _expect(state, 32, write=(buf, proof.part)), store)
    print(f"\nGAS preimage_read of one part of a 1 GiB chunk-Merkle preimage ({layout}): {receipt.gas_used}")
    assert receipt.gas_used <= budget(MEASURED_READ_1GIB[layout])


def test_chunk_merkle_length_and_zero_region(mips, oracle, deployer, requester, store, gib_tree):
    index = 12345
    assert index not in gib_tree.nonzero_chunks
    oracle.loadChunkMerklePart(*gib_tree.proof(32 * index).args(), sender=requester)
    state = _state(SYS_LENGTH, key=gib_tree.key)
    check(mips, deployer, state, _expect(state, GIB), store)
    state, buf = _gib_read_state(gib_tree, index)
    state.registers[A0] += 3
    state.memory.write_bytes(buf, b"\xff" * 32)
    check(mips, deployer, state, _expect(state, 29, write=(buf, bytes(29))), store)


def test_local_key(mips, oracle, deployer, server, challenger, store):
    oracle.loadLocalData(LOCAL_IDENT, CTX, LOCAL_VALUE.ljust(32, b"\0"), len(LOCAL_VALUE), sender=server)
    localized = localize_ident(LOCAL_IDENT, server, CTX)
    assert bytes(oracle.preimageParts(localized, 0)) == LOCAL_VALUE.ljust(32, b"\0")
    ident_key = local_ident_key(LOCAL_IDENT)
    buf = DATA_BASE + 0x208

    # the stepping account that stored it, with its context: the 3-argument step sees it
    length = _state(SYS_LENGTH, key=ident_key)
    check(mips, server, length, _expect(length, len(LOCAL_VALUE)), store, local_context=CTX)
    read = _state(SYS_READ, a0=3, a1=buf, a2=32, key=ident_key)
    receipt = check(
        mips, server, read, _expect(read, 17, write=(buf, LOCAL_VALUE[3:])), store, local_context=CTX
    )
    print(f"\nGAS preimage_read of a local key: {receipt.gas_used}")
    past = _state(SYS_READ, a0=len(LOCAL_VALUE), a1=buf, a2=32, key=ident_key)
    check(mips, server, past, _expect(past, 0), store, local_context=CTX)

    # the state keeps the identifier key, never the localized one
    select = _state(SYS_SELECT, a0=DATA_BASE + 0x40)
    select.memory.write_bytes(DATA_BASE + 0x40, ident_key)
    check(mips, server, select, _expect(select, 0, key=ident_key), store, local_context=CTX)

    # another sender, another context, or the 2-argument step (context 0) do not see it
    for state in (length, read):
        w = step_witness(state)
        assert reverts(mips, oracle, challenger, w.state_data, w.proof, CTX) == "PreimageNotLoaded"
        assert reverts(mips, oracle, server, w.state_data, w.proof, OTHER_CTX) == "PreimageNotLoaded"
        assert reverts(mips, oracle, server, w.state_data, w.proof) == "PreimageNotLoaded"
        assert reverts(mips, oracle, server, w.state_data, w.proof, bytes(32)) == "PreimageNotLoaded"
    # a guest that selects the localized key itself gets it localized again (it has type 1 too)
    assert localized[0] == 1
    w = step_witness(_state(SYS_LENGTH, key=localized))
    assert reverts(mips, oracle, server, w.state_data, w.proof, CTX) == "PreimageNotLoaded"


def test_local_context_is_ignored_for_global_keys(mips, oracle, deployer, requester, store):
    _load_keccak(oracle, requester, DATA100, 0)
    state = _state(SYS_READ, a0=0, a1=DATA_BASE + 0x100, a2=8, key=KEY100)
    expected = _expect(state, 8, write=(DATA_BASE + 0x100, DATA100[:8]))
    check(mips, deployer, state, expected, store, local_context=CTX)
    check(mips, requester, state, expected, store)


# --- tamper ---------------------------------------------------------------------------------------

REGISTERS_OFFSET = 98


def test_read_every_bit_is_bound(mips, oracle, deployer, requester, revm):
    """Flip every bit of a ``preimage_read`` witness (see test_mips_tamper.py): a proof bit makes the
    step revert with the Python verifier's error, a stateData bit gives another post-state hash (the
    verifier reads the oracle the sweep runs against). ``count`` is the binding bound of ``n`` so that
    every bit of it matters. The one exception is ``$a3``, which the system call overwrites; a flip
    there still changes the pre-state hash (as for a load's destination register in
    test_mips_tamper.py)."""
    for part in (0, 32):
        _load_keccak(oracle, requester, DATA100, part)
        revm.oracle.call("loadKeccak256PreimagePart(uint256,bytes)", ["uint256", "bytes"], [part, DATA100])
    state = _state(SYS_READ, a0=3, a1=DATA_BASE + 0x100, a2=10, key=KEY100)
    w = step_witness(state)
    honest = raw_step_outcome(mips, w.state_data, w.proof)
    assert honest == state_hash(_expect(state, 10, write=(DATA_BASE + 0x100, DATA100[3:13])))
    skip = set(range(REGISTERS_OFFSET + 4 * A3, REGISTERS_OFFSET + 4 * A3 + 4))
    python_oracle = ChainOracle(revm.oracle, revm.probe.address)
    assert_every_bit_is_bound(revm, mips, w, honest, skip, python_oracle, (oracle,))
