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


# --- integrity: every file is checked against its key when a store first opens it ------------------


def _corrupt(store_dir, key: bytes, how: str, other: bytes | None = None) -> None:
    """Corrupt the file of ``key`` the way ``how`` says (behind the store's back)."""
    path = PreimageStore(store_dir).path(key)
    data = bytearray(path.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0x01
    elif how == "truncated":
        del data[-1]
    else:  # swapped: another key's file under this key's name
        data = bytearray(PreimageStore(store_dir).path(other).read_bytes())
    path.write_bytes(bytes(data))


KINDS = ["keccak", "chunk-merkle", "sparse"]


def _two_preimages(store: PreimageStore, kind: str) -> tuple[bytes, bytes]:
    rng = random.Random(kind)
    if kind == "keccak":
        return store.put_keccak(rng.randbytes(500)), store.put_keccak(rng.randbytes(700))
    if kind == "chunk-merkle":
        return store.put_chunk_merkle(rng.randbytes(5000)), store.put_chunk_merkle(rng.randbytes(3000))
    return (
        store.put_chunk_merkle(SparseChunkTree(1 << 20, {7: b"\x11" * 32, 900: b"\x22" * 32})),
        store.put_chunk_merkle(SparseChunkTree(1 << 20, {8: b"\x33" * 32})),
    )


@pytest.mark.parametrize("how", ["flipped", "truncated", "swapped"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupted_store_file_is_a_typed_error_when_read(tmp_path, kind, how):
    from opml.oracle.errors import StoreIntegrityError
    from opml.vm.preimage import OracleView

    key, other = _two_preimages(PreimageStore(tmp_path), kind)
    _corrupt(tmp_path, key, how, other)
    store = PreimageStore(tmp_path)  # a fresh process's store: nothing checked yet
    for read in (store.get, store.length, lambda k: store.read_part(k, 0)):
        with pytest.raises(StoreIntegrityError, match="does not hold the preimage of key"):
            read(key)
    view = OracleView(PreimageStore(tmp_path), bytes(20), bytes(32))
    with pytest.raises(StoreIntegrityError):  # the VM's reads go through the same check
        view.preimage_array(key)
    assert PreimageStore(tmp_path).get(other)  # the intact file is still served


def test_a_local_value_file_under_another_key_is_a_typed_error(tmp_path):
    """A local value's bytes are whatever its caller stored; its record names the key it belongs to."""
    from opml.oracle.errors import StoreIntegrityError

    store = PreimageStore(tmp_path)
    a = store.put_local(1, bytes(20), bytes(32), b"\x01" * 32)
    b = store.put_local(2, bytes(20), bytes(32), b"\x02" * 32)
    for suffix in ("", ".json"):
        path_a, path_b = store.path(a), store.path(b)
        path_a.with_name(path_a.name + suffix).write_bytes(
            path_b.with_name(path_b.name + suffix).read_bytes()
        )
    with pytest.raises(StoreIntegrityError):
        PreimageStore(tmp_path).local_value(a)
