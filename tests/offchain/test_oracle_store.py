"""The on-disk preimage store: content-addressed files, parts, lengths, trees rebuilt cold, and ranges of
model files held without a copy."""

import json
import os
import random

import _by_hand
import numpy as np
import pytest

from opml.oracle import PreimageStore, SparseChunkTree
from opml.oracle.errors import (
    InvalidKeyTypeError,
    InvalidPartOffsetError,
    LocalDataTooLargeError,
    PreimageNotFoundError,
    PreimageTooLargeError,
    StoreIntegrityError,
)
from opml.vm.preimage import OracleView

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


def test_a_byte_written_into_a_sparse_files_hole_is_found(tmp_path):
    # The cold check reads only the file's data extents: a write into a hole makes one, and is seen.
    size = 64 << 20
    key = PreimageStore(tmp_path).put_chunk_merkle(SparseChunkTree(size, {3: b"\x05" * 32}))
    path = tmp_path / "chunk-merkle" / key.hex()
    assert path.stat().st_blocks * 512 < 1 << 20
    assert PreimageStore(tmp_path).tree(key).key == key
    with open(path, "r+b") as f:
        f.seek(40 << 20)
        f.write(b"\x01")
    from opml.oracle.errors import StoreIntegrityError

    with pytest.raises(StoreIntegrityError, match="does not hold the preimage of key"):
        PreimageStore(tmp_path).length(key)


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


# --- ranges: a chunk-Merkle preimage held as bytes of another file (a model), not copied ----------------


def _file_with(tmp_path, data: bytes, before: int = 1000, after: int = 77, name: str = "model.bin"):
    """A file with ``data`` at offset ``before``, between other (random) bytes; return its path."""
    rng = random.Random(name)
    path = tmp_path / name
    path.write_bytes(rng.randbytes(before) + data + rng.randbytes(after))
    return path


def _range_store(tmp_path, data: bytes, before: int = 1000):
    """A store that holds ``data`` as a range of a model file: (store root, key, model path)."""
    model = _file_with(tmp_path, data, before)
    key = _by_hand.chunk_merkle_key(data)
    assert PreimageStore(tmp_path / "ranges").put_chunk_merkle_range(key, model, before, len(data)) == key
    return tmp_path / "ranges", key, model


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


@pytest.mark.parametrize("size", [0, 5, 32, 10_000, 3 * 4096 + 7])
def test_a_range_serves_what_a_copy_of_its_bytes_serves(tmp_path, size):
    data = random.Random(size).randbytes(size)
    root, key, model = _range_store(tmp_path, data)
    copy = PreimageStore(tmp_path / "copies")
    assert copy.put_chunk_merkle(data) == key
    assert not PreimageStore(root).path(key).exists()  # nothing copied: only the record
    record = json.loads((root / "chunk-merkle" / (key.hex() + ".range")).read_text())
    st = model.stat()
    assert record == {
        "file": str(model.resolve()),
        "offset": 1000,
        "size": size,
        "identity": [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns],
    }
    store = PreimageStore(root)  # a fresh store instance on the same root
    assert key in store
    assert store.get(key) == data and store.length(key) == size
    assert store.tree(key).root == copy.tree(key).root == _by_hand.chunk_root(data)
    array = store.array(key)
    assert array.dtype == np.uint8 and array.ndim == 1 and not array.flags.writeable
    assert array.tobytes() == data and np.array_equal(array, copy.array(key))
    for offset in range(0, max(size, 1), 32):
        assert store.read_part(key, offset) == copy.read_part(key, offset)
        assert store.proof(key, offset) == copy.proof(key, offset)
    with pytest.raises(InvalidPartOffsetError):
        store.read_part(key, 32 * max(1, -(-size // 32)))  # the first part past the end


@pytest.mark.parametrize("how", ["flipped", "truncated", "deleted", "moved"])
def test_a_changed_model_file_is_a_typed_error_on_first_use(tmp_path, how):
    data = random.Random(how).randbytes(5000)
    root, key, model = _range_store(tmp_path, data)
    _flip(model, 500)  # a byte outside the range does not matter
    assert PreimageStore(root).get(key) == data
    if how == "flipped":
        _flip(model, 1000 + 4321)
    elif how == "truncated":
        os.truncate(model, 1000 + 4999)
    elif how == "deleted":
        model.unlink()
    else:
        model.rename(tmp_path / "elsewhere.bin")
    # A missing file is an integrity error, not a missing preimage: the store says it holds the key.
    why = {"flipped": "another key", "truncated": "only 5999 bytes"}.get(how, "missing")
    store = PreimageStore(root)
    assert key in store
    pattern = f"do not hold the preimage of key 0x{key.hex()}.*{why}"
    for read in (store.get, store.length, store.array, store.tree, lambda k: store.read_part(k, 0)):
        with pytest.raises(StoreIntegrityError, match=pattern):
            read(key)
    with pytest.raises(StoreIntegrityError, match="put the model again"):
        OracleView(PreimageStore(root)).preimage_length(key)


def test_the_oracle_view_reads_a_range_as_it_reads_a_copy(tmp_path):
    data = random.Random(7).randbytes(3000)
    root, key, _ = _range_store(tmp_path, data)
    copy = PreimageStore(tmp_path / "copies")
    copy.put_chunk_merkle(data)
    ranged, copied = OracleView(PreimageStore(root)), OracleView(copy)
    assert ranged.preimage_length(key) == copied.preimage_length(key) == 3000
    for offset in (0, 32, 1024, 2976):
        assert ranged.preimage_part(key, offset) == copied.preimage_part(key, offset)
    array = ranged.preimage_array(key)
    assert not array.flags.writeable and np.array_equal(array, copied.preimage_array(key))


def test_a_copy_wins_over_a_range(tmp_path):
    data = random.Random(8).randbytes(2000)
    model = _file_with(tmp_path, data)
    store = PreimageStore(tmp_path / "store")
    key = store.put_chunk_merkle(data)
    assert store.put_chunk_merkle_range(key, model, 1000, 2000) == key
    assert not store.path(key).with_name(key.hex() + ".range").exists()
    model.unlink()  # the copy does not depend on the model file
    assert PreimageStore(tmp_path / "store").checked_path(key).read_bytes() == data

    # The other way round: a copy put after a range is what a fresh store reads.
    data = random.Random(9).randbytes(2000)
    model = _file_with(tmp_path, data, name="second.bin")
    key = store.put_chunk_merkle_range(_by_hand.chunk_merkle_key(data), model, 1000, 2000)
    assert store.put_chunk_merkle(data) == key
    model.unlink()
    assert PreimageStore(tmp_path / "store").get(key) == data


def _record(root, key) -> dict:
    return json.loads((root / "chunk-merkle" / (key.hex() + ".range")).read_text())


def test_a_range_whose_file_is_unchanged_keeps_its_record_when_another_file_is_put(tmp_path):
    # two model files sharing a tensor (two registrations of one model) must not take turns
    data = random.Random(11).randbytes(4000)
    root, key, old = _range_store(tmp_path, data)
    store = PreimageStore(root)
    assert store.get(key) == data
    other = _file_with(tmp_path, data, before=64, name="other.bin")
    store.put_chunk_merkle_range(key, other, 64, 4000)
    assert _record(root, key)["file"] == str(old.resolve())
    assert store.get(key) == data and key in store._ranges  # still checked: not hashed again


def test_putting_a_range_again_after_its_file_changed_rewrites_its_record(tmp_path):
    data = random.Random(10).randbytes(4000)
    root, key, old = _range_store(tmp_path, data)
    store = PreimageStore(root)
    assert store.get(key) == data  # checked against the old file
    _flip(old, 1000 + 10)  # in place: a map of the old file would serve the flipped byte
    new = _file_with(tmp_path, data, before=64, name="moved.bin")
    store.put_chunk_merkle_range(key, new, 64, 4000)
    assert _record(root, key)["file"] == str(new.resolve()) and _record(root, key)["offset"] == 64
    assert store.get(key) == data  # the same store reads the new place, checked anew
    old.unlink()
    assert PreimageStore(root).array(key).tobytes() == data


def test_a_file_rewritten_in_place_after_its_range_was_checked_is_hashed_again(tmp_path):
    data = random.Random(12).randbytes(6000)
    root, key, model = _range_store(tmp_path, data)
    store = PreimageStore(root)
    assert store.get(key) == data
    _flip(model, 1000 + 100)  # the same inode (as cp or rsync --inplace would): mtime changes
    os.utime(model, ns=(0, model.stat().st_mtime_ns + 1))  # even within the clock's resolution
    for read in (store.get, store.array, store.tree, lambda k: store.proof(k, 0)):
        with pytest.raises(StoreIntegrityError, match="another key"):
            read(key)


def test_a_malformed_range_record_is_an_integrity_error(tmp_path):
    data = random.Random(13).randbytes(100)
    root, key, _ = _range_store(tmp_path, data)
    (root / "chunk-merkle" / (key.hex() + ".range")).write_text('{"file": 3}')
    with pytest.raises(StoreIntegrityError, match="not a range record"):
        PreimageStore(root).get(key)
    with pytest.raises(StoreIntegrityError, match="not a range record"):
        OracleView(PreimageStore(root)).preimage_length(key)


def test_a_range_needs_a_chunk_merkle_key_and_bytes_of_an_existing_file(tmp_path):
    data = bytes(range(200))
    model = _file_with(tmp_path, data)
    key = _by_hand.chunk_merkle_key(data)
    store = PreimageStore(tmp_path / "store")
    for other in (_by_hand.keccak_key(data), _by_hand.local_key(1, bytes(20), CTX), bytes([9]) + key[1:]):
        with pytest.raises(InvalidKeyTypeError):
            store.put_chunk_merkle_range(other, model, 1000, 200)
    for offset, size in ((-1, 200), (1000, -1)):
        with pytest.raises(ValueError, match="non-negative"):
            store.put_chunk_merkle_range(key, model, offset, size)
    with pytest.raises(ValueError, match="past the end"):
        store.put_chunk_merkle_range(key, model, 1000, 278)
    with pytest.raises(FileNotFoundError):
        store.put_chunk_merkle_range(key, tmp_path / "no-such-model.bin", 0, 200)
    assert key not in store
    store.put_chunk_merkle_range(key, model, np.int64(1000), np.int64(200))  # a manifest's integers
    assert key in store
    with pytest.raises(ValueError, match="held as a range"):  # it has no store file to name
        store.checked_path(key)


def test_ranges_into_one_file_share_one_memory_map(tmp_path):
    rng = random.Random(11)
    tensors = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(20)]
    model = tmp_path / "model.bin"
    model.write_bytes(b"".join(tensors))
    store = PreimageStore(tmp_path / "store")
    keys, offset = [], 0
    for tensor in tensors:
        key = _by_hand.chunk_merkle_key(tensor)
        keys.append(store.put_chunk_merkle_range(key, model, offset, len(tensor)))
        offset += len(tensor)
    assert store._maps == {}  # mapped on first use, not when put
    for key, tensor in zip(keys, tensors, strict=True):
        assert store.array(key).tobytes() == tensor
    assert list(store._maps) == [model.resolve()]
    whole = store._maps[model.resolve()][1]
    assert all(np.shares_memory(store.array(key), whole) for key in keys)  # slices, not copies
