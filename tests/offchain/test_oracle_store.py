"""The on-disk preimage store: content-addressed files, parts, lengths, and trees rebuilt cold."""

import random

import _by_hand
import pytest

from opml.oracle import PreimageStore, SparseChunkTree
from opml.oracle.errors import (
    InvalidKeyTypeError,
    InvalidPartOffsetError,
    LocalDataTooLargeError,
    PreimageNotFoundError,
    PreimageTooLargeError,
)

CTX = bytes(range(32))
CALLER = "0x" + "34" * 20


def test_keccak(tmp_path):
    store = PreimageStore(tmp_path)
    data = random.Random(1).randbytes(100)
    key = store.put_keccak(data)
    assert key == _by_hand.keccak_key(data) and key in store
    assert store.path(key) == tmp_path / "keccak" / key.hex()
    assert store.get(key) == data and store.length(key) == 100
    assert store.read_part(key, 96) == data[96:] + bytes(28)
    with pytest.raises(InvalidPartOffsetError):
        store.read_part(key, 128)
    with pytest.raises(PreimageTooLargeError):
        store.put_keccak(bytes((1 << 16) + 1))
    with pytest.raises(InvalidKeyTypeError):
        store.tree(key)


def test_chunk_merkle_dense_cold(tmp_path):
    data = random.Random(2).randbytes(10_000)
    key = PreimageStore(tmp_path).put_chunk_merkle(data)
    assert key == _by_hand.chunk_merkle_key(data)
    assert (tmp_path / "chunk-merkle" / key.hex()).read_bytes() == data
    cold = PreimageStore(tmp_path)  # rebuilds the tree from the file
    assert cold.tree(key).key == key and cold.tree(key).root == _by_hand.chunk_root(data)
    assert cold.length(key) == 10_000 and cold.get(key) == data
    assert cold.proof(key, 320).part == data[320:352]
    assert cold.read_part(key, 9984) == data[9984:] + bytes(16)


def test_chunk_merkle_sparse_cold(tmp_path):
    size = (1 << 30) + 3
    chunks = {0: b"\x01" * 32, size // 32: b"\x02\x03\x04" + bytes(29)}
    tree = SparseChunkTree(size, chunks)
    key = PreimageStore(tmp_path).put_chunk_merkle(tree)
    root = _by_hand.sparse_chunk_root(size, chunks)  # depth 26: 2^25 + 1 chunks
    assert key == _by_hand.chunk_key(root, size)
    path = tmp_path / "chunk-merkle" / key.hex()
    assert path.stat().st_size == size
    assert path.stat().st_blocks * 512 < 1 << 20  # a sparse file
    cold = PreimageStore(tmp_path)
    assert cold.length(key) == size
    assert cold.tree(key).root == root  # from the .sparse sidecar, no 1 GiB hashing
    assert cold.read_part(key, size - 3) == b"\x02\x03\x04" + bytes(29)
    assert cold.proof(key, 32 * 1000).part == bytes(32)


def test_local(tmp_path):
    store = PreimageStore(tmp_path)
    key = store.put_local(1, CALLER, CTX, b"\xaa" * 32)
    assert key == _by_hand.local_key(1, bytes.fromhex(CALLER[2:]), CTX)
    local = store.local_value(key)
    assert (local.ident, local.local_context, local.value, local.size) == (1, CTX, b"\xaa" * 32, 32)
    assert store.read_part(key, 0) == b"\xaa" * 32
    with pytest.raises(LocalDataTooLargeError):
        store.put_local(1, CALLER, CTX, bytes(33))


def test_missing(tmp_path):
    store = PreimageStore(tmp_path)
    with pytest.raises(PreimageNotFoundError):
        store.get(_by_hand.keccak_key(b"nope"))
    assert bytes([9]) + bytes(31) not in store
