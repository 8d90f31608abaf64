"""PreimageOracle: each key type round-trips (store → load → read), and every bad proof is rejected
with the custom error of oracle-spec §3, the same error the Python verifier raises."""

import os
import random

import ape
import pytest
import sha3
from eth_abi import encode

from opml.hashing import keccak256
from opml.oracle import (
    MAX_KECCAK_PREIMAGE,
    ChunkTree,
    SparseChunkTree,
    chunk_merkle_key,
    keccak_key,
    local_ident_key,
    localize,
    localize_ident,
    tree_depth,
    verify_part_proof,
)
from opml.oracle.errors import OracleError

CTX = bytes.fromhex("c7" * 32)


@pytest.fixture(scope="module")
def oracle(deployer, requester, challenger, project):
    # The role fixtures are requested here so that they exist before ape's per-test snapshots.
    return deployer.deploy(project.PreimageOracle)


def data_of(size, seed=0):
    return random.Random(seed).randbytes(size)


def revert_name(fn, *args, **kwargs):
    """The custom error name a call reverts with (``None`` if it does not revert).

    py-evm gives ape the decoded error class; anvil's eth_call gives only "custom error 0x<selector>",
    which is looked up in the contract's ABI."""
    try:
        fn.call(*args, **kwargs)
    except ape.exceptions.ContractLogicError as err:
        name = type(err).__name__
        if name == "ContractLogicError" and str(err.message).startswith("custom error 0x"):
            selector = bytes.fromhex(str(err.message).removeprefix("custom error 0x")[:8])
            by_selector = {
                keccak256(e.selector.encode())[:4]: e.name for e in fn.contract.contract_type.errors
            }
            name = by_selector.get(selector, name)
        return name
    return None


def python_error(*args):
    try:
        verify_part_proof(*args)
    except OracleError as err:
        return type(err).contract_error
    return None


# --- helpers mirrored on both sides ---------------------------------------------------------------


# d = ceil(log2(max(ceil(size / 32), 1))) by hand (oracle-spec §1.3): 4096 bytes are 128 = 2^7 chunks,
# 2^30 bytes 2^25 chunks, 2^256 - 1 bytes 2^251 chunks.
TREE_DEPTHS = [
    (0, 0),
    (1, 0),
    (31, 0),
    (32, 0),
    (33, 1),
    (64, 1),
    (65, 2),
    (4096, 7),
    (4097, 8),
    (2**30, 25),
    (2**30 + 1, 26),
    (2**40, 35),
    (2**256 - 1, 251),
]


@pytest.mark.parametrize("size, depth", TREE_DEPTHS)
def test_tree_depth_matches(oracle, size, depth):
    assert oracle.treeDepth(size) == tree_depth(size) == depth


def test_localized_key_matches(oracle, requester):
    caller = bytes.fromhex(requester.address[2:])
    for ident in [0, 1, 7, 2**248 - 1]:
        # withType(keccak256(abi.encode(ident, caller, localContext)), 1), built by hand
        encoded = encode(["uint256", "address", "bytes32"], [ident, requester.address, CTX])
        assert encoded == ident.to_bytes(32, "big") + bytes(12) + caller + CTX
        want = b"\x01" + sha3.keccak_256(encoded).digest()[1:]
        assert oracle.localizedKey(ident, requester, CTX) == want
        assert localize_ident(ident, requester, CTX) == want
        assert localize(local_ident_key(ident), requester, CTX) == want


# --- local keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 20, 32])
def test_local_round_trip(oracle, requester, size):
    value = data_of(size, seed=size).replace(b"\0", b"\1") + bytes(32 - size)
    receipt = oracle.loadLocalData(1, CTX, value, size, sender=requester)
    key = localize_ident(1, requester, CTX)
    assert receipt.return_value == key
    assert oracle.readPreimage(key, 0) == (value, size)
    assert oracle.preimageLength(key) == size
    [event] = receipt.events
    assert event.key == key and event.partOffset == 0 and event.size == size


def test_local_keys_are_per_caller_and_context(oracle, requester, challenger):
    oracle.loadLocalData(2, CTX, b"\x11" * 32, 32, sender=requester)
    assert oracle.preimagePartOk(localize_ident(2, requester, CTX), 0)
    assert not oracle.preimagePartOk(localize_ident(2, challenger, CTX), 0)
    assert not oracle.preimagePartOk(localize_ident(2, requester, bytes(32)), 0)


def test_local_rejects(oracle, requester):
    with ape.reverts(oracle.LocalDataTooLarge):
        oracle.loadLocalData(1, CTX, bytes(32), 33, sender=requester)
    with ape.reverts(oracle.NonZeroPadding):
        oracle.loadLocalData(1, CTX, b"\x01" * 32, 31, sender=requester)


def test_local_identifiers_above_248_bits_are_refused(oracle, requester, tmp_path):
    """No guest can name an identifier of 2^248 or more (its key keeps 248 bits): the contract and the
    store refuse to store one, and accept the largest that can be named."""
    from opml.oracle.errors import InvalidLocalIdentError
    from opml.oracle.store import PreimageStore

    store = PreimageStore(tmp_path)
    for ident in (1 << 248, (1 << 256) - 1):
        with ape.reverts(oracle.InvalidLocalIdent):
            oracle.loadLocalData(ident, CTX, bytes(32), 32, sender=requester)
        with pytest.raises(InvalidLocalIdentError, match="248 bits"):
            store.put_local(ident, requester.address, CTX, bytes(32))
    largest = (1 << 248) - 1
    oracle.loadLocalData(largest, CTX, b"\x22" * 32, 32, sender=requester)
    key = store.put_local(largest, requester.address, CTX, b"\x22" * 32)
    assert key == localize_ident(largest, requester, CTX) and oracle.preimagePartOk(key, 0)


# --- keccak keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 100, 1000])
def test_keccak_round_trip(oracle, requester, size):
    data = data_of(size, seed=size)
    key = keccak_key(data)
    for offset in range(0, max(size, 1), 32):
        receipt = oracle.loadKeccak256PreimagePart(offset, data, sender=requester)
        assert receipt.return_value == key
        part = data[offset : offset + 32].ljust(32, b"\0")
        assert oracle.readPreimage(key, offset) == (part, size)
    assert oracle.preimageLength(key) == size


@pytest.mark.parametrize("offset", [1, 31, 100, 128, 160, 2**255])
def test_keccak_rejects_offset(oracle, requester, offset):
    with ape.reverts(oracle.InvalidPartOffset):
        oracle.loadKeccak256PreimagePart(offset, data_of(100), sender=requester)


def test_keccak_empty_only_offset_zero(oracle, requester):
    with ape.reverts(oracle.InvalidPartOffset):
        oracle.loadKeccak256PreimagePart(32, b"", sender=requester)


def test_keccak_too_large(oracle, requester):
    oracle.loadKeccak256PreimagePart(0, bytes(MAX_KECCAK_PREIMAGE), sender=requester)
    with ape.reverts(oracle.PreimageTooLarge):
        oracle.loadKeccak256PreimagePart(0, bytes(MAX_KECCAK_PREIMAGE + 1), sender=requester)


def test_keccak_ignores_dirty_abi_padding(oracle, requester):
    """The bytes after the preimage in calldata (ABI padding) must not leak into the last part."""
    data = data_of(40, seed=9)
    calldata = bytearray(oracle.loadKeccak256PreimagePart.encode_input(32, data))
    assert calldata[-24:] == bytes(24)
    calldata[-24:] = b"\xff" * 24
    requester.transfer(oracle, 0, data=bytes(calldata))
    assert oracle.readPreimage(keccak_key(data), 32) == (data[32:].ljust(32, b"\0"), 40)


# --- chunk-Merkle keys --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 32, 33, 100, 4096 + 7])
def test_chunk_merkle_round_trip(oracle, requester, size):
    data = data_of(size, seed=size + 1)
    tree = ChunkTree.from_bytes(data)
    offsets = sorted({0, 32, size - size % 32, size - 1 - (size - 1) % 32} & set(range(0, max(size, 1), 32)))
    for offset in offsets:
        proof = tree.proof(offset)
        receipt = oracle.loadChunkMerklePart(*proof.args(), sender=requester)
        assert oracle.readPreimage(tree.key, offset) == (data[offset : offset + 32].ljust(32, b"\0"), size)
        [event] = receipt.events
        assert (event.key, event.partOffset, event.part) == (tree.key, offset, proof.part)
    assert oracle.preimageLength(tree.key) == size


def test_chunk_merkle_sparse_gib(oracle, requester):
    rng = random.Random(5)
    size = 2**30 + 5
    chunks = {rng.randrange(size // 32): rng.randbytes(32) for _ in range(4)}
    chunks[size // 32] = b"\x42" * 5 + bytes(27)
    tree = SparseChunkTree(size, chunks)
    for index in [*sorted(chunks), 17]:
        oracle.loadChunkMerklePart(*tree.proof(32 * index).args(), sender=requester)
        assert oracle.readPreimage(tree.key, 32 * index) == (chunks.get(index, bytes(32)), size)


def _proof(size=200, offset=64, seed=3):
    data = data_of(size, seed=seed)
    return ChunkTree.from_bytes(data).proof(offset)


def _expect(oracle, requester, name, args):
    assert python_error(*args) == name
    assert revert_name(oracle.loadChunkMerklePart, *args, sender=requester) == name


def test_chunk_merkle_rejects(oracle, requester):
    p = _proof()
    key, root, size, offset, part, sibs = p.args()
    ok = [key, root, size, offset, part, sibs]
    assert (
        python_error(*ok) is None and revert_name(oracle.loadChunkMerklePart, *ok, sender=requester) is None
    )

    keccak_typed = bytes([2]) + key[1:]
    _expect(oracle, requester, "InvalidKeyType", [keccak_typed, root, size, offset, part, sibs])
    _expect(oracle, requester, "KeyMismatch", [key, root, size + 1, offset, part, sibs])
    _expect(oracle, requester, "KeyMismatch", [key, bytes(32), size, offset, part, sibs])
    for bad_offset in [offset + 1, 224, 2**255]:
        _expect(oracle, requester, "InvalidPartOffset", [key, root, size, bad_offset, part, sibs])
    _expect(oracle, requester, "InvalidProofLength", [key, root, size, offset, part, sibs[:-1]])
    _expect(oracle, requester, "InvalidProofLength", [key, root, size, offset, part, [*sibs, bytes(32)]])
    # the right part at the wrong offset, a wrong part at the right one
    _expect(oracle, requester, "InvalidPartProof", [key, root, size, offset + 32, part, sibs])
    _expect(oracle, requester, "InvalidPartProof", [key, root, size, offset, bytes(32), sibs])


def test_chunk_merkle_rejects_nonzero_padding(oracle, requester):
    # A tree over 100 non-zero bytes, committed to with size 97: same 4 chunks, same depth, but
    # bytes 97..99 of the last chunk lie past the end.
    data = b"\x5a" * 100
    tree = ChunkTree.from_bytes(data)
    bad = tree.proof(96)
    key = chunk_merkle_key(tree.root, 97)
    args = [key, tree.root, 97, 96, bad.part, list(bad.siblings)]
    _expect(oracle, requester, "NonZeroPadding", args)
    # Earlier chunks of that commitment are fine: a sparse tree refuses to build it at all.
    good = [key, tree.root, 97, 0, data[:32], list(tree.proof(0).siblings)]
    assert python_error(*good) is None
    oracle.loadChunkMerklePart(*good, sender=requester)


def test_every_flipped_byte_is_rejected(oracle, requester):
    """Flip each byte of the part, of every sibling and of key/root/size/offset: always rejected, with
    the same error on both sides."""
    p = _proof(size=1000, offset=320, seed=11)  # 32 chunks: 5 siblings
    base = list(p.args())

    def flipped(word: bytes, i: int) -> bytes:
        b = bytearray(word)
        b[i] ^= 0xFF
        return bytes(b)

    cases = []
    for i in range(32):
        cases.append(("key", [flipped(base[0], i), *base[1:]]))
        cases.append(("root", [base[0], flipped(base[1], i), *base[2:]]))
        cases.append(("part", [*base[:4], flipped(base[4], i), base[5]]))
        for s in range(len(base[5])):
            sibs = list(base[5])
            sibs[s] = flipped(sibs[s], i)
            cases.append((f"sibling {s}", [*base[:5], sibs]))
        for arg in (2, 3):  # size, partOffset as 32-byte words
            word = flipped(base[arg].to_bytes(32, "big"), i)
            args = list(base)
            args[arg] = int.from_bytes(word, "big")
            cases.append((["size", "offset"][arg - 2], args))
    assert len(cases) == 32 * (4 + 5 + 1)
    for what, args in cases:
        want = python_error(*args)
        assert want is not None, what
        assert revert_name(oracle.loadChunkMerklePart, *args, sender=requester) == want, what


# --- reading ------------------------------------------------------------------------------------


def test_read_not_loaded(oracle):
    key = keccak_key(b"never loaded")
    with ape.reverts(oracle.PartNotLoaded):
        oracle.readPreimage(key, 0)
    with ape.reverts(oracle.PreimageNotLoaded):
        oracle.preimageLength(key)


def test_read_other_part_not_loaded(oracle, requester):
    data = data_of(100, seed=77)
    oracle.loadKeccak256PreimagePart(0, data, sender=requester)
    assert oracle.preimageLength(keccak_key(data)) == 100
    with ape.reverts(oracle.PartNotLoaded):
        oracle.readPreimage(keccak_key(data), 32)
    with ape.reverts(oracle.PartNotLoaded):
        oracle.readPreimage(keccak_key(data), 1)  # unaligned offsets are never loaded


def test_abi_encoding_of_chunk_key(oracle):
    root = os.urandom(32)
    want = b"\x03" + sha3.keccak_256(root + (12345).to_bytes(32, "big")).digest()[1:]
    assert encode(["bytes32", "uint256"], [root, 12345]) == root + (12345).to_bytes(32, "big")
    assert chunk_merkle_key(root, 12345) == want
