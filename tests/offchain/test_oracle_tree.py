"""Chunk-Merkle trees (oracle-spec §1.3): dense and sparse trees agree with a naive full tree, their
proofs verify, and the numpy checksum of stream_checksum.c matches its definition."""

import os
import random

import _by_hand
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml.hashing import ZERO_HASHES, keccak256
from opml.oracle import ChunkTree, DenseChunkTree, SparseChunkTree, merkle_root, tree_depth, verify_part_proof
from opml.oracle.checksum import stream_checksum, stream_checksum_reference
from opml.oracle.chunk_tree import zero_root
from opml.oracle.errors import (
    InvalidPartOffsetError,
    InvalidPartProofError,
    InvalidPartProofLengthError,
    NonZeroPaddingError,
)
from opml.oracle.keys import (
    KeyType,
    chunk_merkle_key,
    keccak_key,
    key_type,
    local_ident_key,
    localize,
    localize_ident,
    with_type,
)


def naive_levels(data: bytes):
    """Every level of the full tree (§1.3), leaves first: n chunks padded with zero leaves to 2^d."""
    n = max(-(-len(data) // 32), 1)
    width = 1
    while width < n:
        width *= 2
    leaves = [data[32 * i : 32 * i + 32].ljust(32, b"\0") for i in range(n)] + [bytes(32)] * (width - n)
    levels = [leaves]
    while len(levels[-1]) > 1:
        lv = levels[-1]
        levels.append([_by_hand.keccak(lv[i] + lv[i + 1]) for i in range(0, len(lv), 2)])
    return levels


SIZES = [0, 1, 31, 32, 33, 64, 65, 100, 4095, 4096, 4097, 32 * 129, 32 * 256 + 5, 70_000]


@pytest.mark.parametrize("size", SIZES)
def test_dense_and_sparse_match_naive(size):
    data = random.Random(size).randbytes(size)
    levels = naive_levels(data)
    dense, sparse = ChunkTree.from_bytes(data), SparseChunkTree.from_bytes(data)
    assert dense.root == sparse.root == levels[-1][0]
    assert dense.depth == sparse.depth == tree_depth(size) == len(levels) - 1
    assert dense.key == sparse.key == _by_hand.chunk_key(levels[-1][0], size)
    n = max(-(-size // 32), 1)
    for i in sorted({0, 1, 2, 127, 128, 129, n // 2, n - 1} & set(range(n))):
        want = tuple(levels[k][(i >> k) ^ 1] for k in range(dense.depth))
        assert dense.proof(32 * i) == sparse.proof(32 * i)
        assert dense.proof(32 * i).siblings == want
        verify_part_proof(*dense.proof(32 * i).args())


def test_empty_data_root_is_z0():
    assert ChunkTree.from_bytes(b"").root == zero_root(0) == bytes(32)
    assert SparseChunkTree(0, {}).key == _by_hand.chunk_key(bytes(32), 0)
    assert chunk_merkle_key(bytes(32), 0) == bytes([3]) + _by_hand.keccak(bytes(64))[1:]


def test_zero_roots_are_the_vm_ones():
    assert all(zero_root(i) == ZERO_HASHES[i] for i in range(len(ZERO_HASHES)))
    assert SparseChunkTree(32 << 20, {}).root == ZERO_HASHES[20] == _by_hand.sparse_chunk_root(32 << 20, {})


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 5000),
    st.dictionaries(st.integers(0, 200), st.binary(min_size=32, max_size=32), max_size=6),
)
def test_sparse_equals_dense(size, chunks):
    n = -(-size // 32)
    data = bytearray(size)
    kept = {}
    for i, c in chunks.items():
        if i < n:
            c = c[: size - 32 * i].ljust(32, b"\0")
            kept[i] = c
            data[32 * i : 32 * i + 32] = c[: size - 32 * i]
    assert SparseChunkTree(size, kept).root == DenseChunkTree(bytes(data)).root


def test_numpy_and_memmap_inputs(tmp_path):
    arr = np.arange(3000, dtype=np.int32).reshape(30, 100)
    path = tmp_path / "t.bin"
    arr.tofile(path)
    root = ChunkTree.from_bytes(arr.tobytes()).root
    assert ChunkTree.from_bytes(arr).root == root
    assert ChunkTree.from_bytes(np.memmap(path, dtype=np.int32, mode="r")).root == root
    assert ChunkTree.from_file(path).root == root


def test_sparse_rejects_bad_chunks():
    with pytest.raises(NonZeroPaddingError):
        SparseChunkTree(40, {1: b"\x01" * 32})
    with pytest.raises(InvalidPartOffsetError):
        SparseChunkTree(64, {2: b"\x01" * 32})


def test_verify_rejects_in_contract_order():
    tree = ChunkTree.from_bytes(os.urandom(300))
    key, root, size, off, part, sibs = tree.proof(64).args()
    with pytest.raises(InvalidPartOffsetError):
        verify_part_proof(key, root, size, 320, part, sibs)
    with pytest.raises(InvalidPartProofLengthError):
        verify_part_proof(key, root, size, off, part, sibs[1:])
    with pytest.raises(InvalidPartProofError):
        verify_part_proof(key, root, size, off + 32, part, sibs)
    assert merkle_root(part, off // 32, sibs) == root


def test_gib_sparse_is_cheap():
    size = 1 << 30
    chunks = {5: b"\x07" * 32, (size // 32) - 1: b"\x09" * 32}
    tree = SparseChunkTree(size, chunks)
    assert tree.depth == 25
    assert tree.root == _by_hand.sparse_chunk_root(size, chunks)
    proof = tree.proof(size - 32)
    verify_part_proof(*proof.args())
    assert proof.part == b"\x09" * 32
    assert proof.siblings[:24] == tuple(zero_root(k) for k in range(24))
    # Level 24: the left half (2^24 chunks), whose only non-zero chunk is chunk 5.
    assert proof.siblings[24] == _by_hand.sparse_chunk_root(size // 2, {5: b"\x07" * 32})


def test_keys():
    assert key_type(keccak_key(b"abc")) == KeyType.KECCAK
    assert keccak_key(b"abc") == _by_hand.keccak_key(b"abc")
    assert keccak256(b"abc") == _by_hand.keccak(b"abc")
    assert with_type(b"\xff" * 32, 3) == b"\x03" + b"\xff" * 31
    assert local_ident_key(7) == b"\x01" + bytes(30) + b"\x07"
    caller = "0x" + "12" * 20
    ctx = bytes(range(32))
    assert localize(local_ident_key(7), caller, ctx) == _by_hand.local_key(7, b"\x12" * 20, ctx)
    assert localize_ident(7, caller, ctx) == _by_hand.local_key(7, b"\x12" * 20, ctx)
    assert localize(local_ident_key(2**248 - 1), caller, ctx) == _by_hand.local_key(
        2**248 - 1, b"\x12" * 20, ctx
    )
    assert localize(keccak_key(b""), caller, ctx) == keccak_key(b"")


def test_checksum_by_hand():
    # w0 = 1, w1 = 2, w2 = 0xFFFFFFFF; term_i = (w_i ^ (i * 0x9E3779B9 mod 2^32)) * (2i + 1) mod 2^32:
    # 1, 0x9E3779BB * 3 = 0xDAA66D31, (0xFFFFFFFF ^ 0x3C6EF372) * 5 = 0xD1D53EC1.
    assert stream_checksum(b"\x01\x00\x00\x00\x02") == 0xDAA66D32  # the last word zero-padded
    words = b"\x01\x00\x00\x00\x02\x00\x00\x00\xff\xff\xff\xff"
    assert stream_checksum(words) == stream_checksum_reference(words) == 0xAC7BABF3
    assert stream_checksum(b"") == 0


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1023, 4097])
def test_checksum_matches_definition(size):
    data = random.Random(size).randbytes(size)
    assert stream_checksum(data) == stream_checksum_reference(data)
    assert stream_checksum(np.frombuffer(data, np.uint8)) == stream_checksum_reference(data)
