"""Model files are read through a read-only memory map (the tensors are views of it, not copies), and
a file state's tensor keys are checked once per process (issue 18, ml-spec §3.3)."""

import gc
import mmap
import os

import numpy as np
import pytest
from _digits import DIGITS_REPORT, MODELS

from opml.ml import errors
from opml.ml import format as fmt
from opml.ml.format import (
    GraphBuilder,
    Model,
    decode_model_file,
    encode_model_file,
    int8,
    read_model,
    write_model,
)
from opml.ml.runner import run_model


def small_model(seed: int = 0) -> Model:
    """Three dense layers with random weights: three tensors of distinct sizes."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder(int8(64))
    v = g.dense(0, rng.integers(-128, 128, (32, 64)), rng.integers(-1000, 1000, 32))
    v = g.requantize(v, 1 << 30, 40, 0)
    v = g.dense(v, rng.integers(-128, 128, (16, 32)))
    v = g.requantize(v, 1 << 30, 40, 0)
    g.argmax(g.dense(v, rng.integers(-128, 128, (10, 16))))
    return g.build()


@pytest.fixture
def hashed(monkeypatch):
    """The tensors that the key function hashes (the manifest's own key, the commitment, left out)."""
    seen: list[bytes] = []
    key = fmt.tensor_key

    def counting(data):
        out = key(data)
        if not (len(data) >= 4 and bytes(data[:4]) == fmt.MAGIC):
            seen.append(bytes(data))
        return out

    monkeypatch.setattr(fmt, "tensor_key", counting)
    return seen


def file_offset(data: bytes, tensor: bytes) -> int:
    offset = data.find(tensor)
    assert offset > 0 and data.find(tensor, offset + 1) == -1
    return offset


def test_the_tensors_are_views_of_the_mapping(tmp_path):
    model = small_model()
    path = tmp_path / "m.opml"
    write_model(model, path)
    data = path.read_bytes()
    got = read_model(path)
    assert got.commitment == model.commitment and got.tensors == model.tensors
    for key, view in got.tensors.items():
        assert isinstance(view, memoryview) and view.readonly
        assert isinstance(view.obj, mmap.mmap)
        # the view's first byte is the mapping's byte at the tensor's offset in the file: no copy
        start = np.frombuffer(view, np.uint8).ctypes.data - np.frombuffer(view.obj, np.uint8).ctypes.data
        assert start == file_offset(data, bytes(model.tensors[key]))
    tensor = got.tensor(got.nodes[0].tensor_keys[0])
    del got
    gc.collect()
    assert not tensor.obj.closed  # a view keeps the mapping open
    assert tensor == model.tensors[model.nodes[0].tensor_keys[0]]


def test_a_model_built_in_memory_keeps_bytes():
    assert all(type(t) is bytes for t in small_model().tensors.values())


def test_writable_buffers_are_copied():
    data = bytearray(encode_model_file(small_model()))
    model = decode_model_file(data)
    assert all(type(t) is bytes for t in model.tensors.values())
    data[-1] ^= 1  # the model keeps the bytes it checked
    assert model.tensors == small_model().tensors


def test_a_second_read_does_not_hash_the_tensors(tmp_path, hashed):
    model = small_model()
    path = tmp_path / "m.opml"
    write_model(model, path)
    hashed.clear()  # building the model hashed its tensors
    assert read_model(path).commitment == model.commitment
    assert sorted(hashed) == sorted(bytes(t) for t in model.tensors.values())
    hashed.clear()
    again = read_model(path)
    assert hashed == []
    assert again.commitment == model.commitment and again.tensors == model.tensors
    read_model(path, verify=True)
    assert len(hashed) == len(model.tensors)


def test_a_rewritten_file_is_checked_again(tmp_path):
    model = small_model()
    path = tmp_path / "m.opml"
    write_model(model, path)
    read_model(path)
    data = bytearray(path.read_bytes())
    data[file_offset(bytes(data), bytes(model.tensors[model.nodes[2].tensor_keys[0]]))] ^= 1
    before = os.stat(path)
    path.write_bytes(data)  # in place: the same inode and size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # a new mtime, surely
    with pytest.raises(errors.TensorKeyMismatchError):
        read_model(path)


def test_a_change_that_restores_size_and_mtime_is_still_caught(tmp_path):
    """A file changed in place with its size and mtime put back has a new ctime: it is re-hashed and
    rejected (and ``verify=True`` always re-hashes)."""
    model = small_model()
    path = tmp_path / "m.opml"
    write_model(model, path)
    read_model(path)
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[file_offset(bytes(data), bytes(model.tensors[model.nodes[0].tensor_keys[0]]))] ^= 1
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns and os.stat(path).st_size == before.st_size
    with pytest.raises(errors.TensorKeyMismatchError):
        read_model(path)
    with pytest.raises(errors.TensorKeyMismatchError):
        read_model(path, verify=True)


def test_a_changed_manifest_under_an_unchanged_state_is_checked_in_full(tmp_path, hashed):
    a, b = small_model(1), small_model(2)
    path = tmp_path / "m.opml"
    write_model(a, path)
    read_model(path)
    before = os.stat(path)
    path.write_bytes(encode_model_file(b))  # same size: same shapes
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    hashed.clear()
    assert read_model(path).commitment == b.commitment
    assert len(hashed) == len(b.tensors)


def test_the_cache_is_bounded(tmp_path, monkeypatch, hashed):
    monkeypatch.setattr(fmt, "_verified", {})
    monkeypatch.setattr(fmt, "VERIFIED_CACHE_SIZE", 2)
    paths = [tmp_path / f"m{i}.opml" for i in range(3)]
    models = [small_model(i) for i in range(3)]
    for model, path in zip(models, paths, strict=True):
        write_model(model, path)
        read_model(path)
    assert len(fmt._verified) == 2
    hashed.clear()
    read_model(paths[2])
    assert hashed == []
    read_model(paths[0])  # the oldest state was forgotten
    assert len(hashed) == len(models[0].tensors)


def test_write_model_leaves_a_read_model_intact(tmp_path):
    a, b = small_model(1), small_model(2)
    path = tmp_path / "m.opml"
    write_model(a, path)
    got = read_model(path)
    write_model(b, path)  # a new file renamed over the old one, whose mapping stays
    assert got.tensors == a.tensors
    assert read_model(path).commitment == b.commitment
    assert [p.name for p in tmp_path.iterdir()] == ["m.opml"]


def test_an_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.opml"
    path.write_bytes(b"")
    with pytest.raises(errors.BadMagicError):
        read_model(path)


def test_the_digits_cnn_reads_and_runs_as_before():
    path = MODELS / "digits_cnn.opml"
    before = decode_model_file(path.read_bytes())
    copied = Model.create(before.input, before.nodes, {k: bytes(t) for k, t in before.tensors.items()})
    model = read_model(path)
    assert model.commitment.hex() == DIGITS_REPORT["models"]["digits_cnn"]["commitment"].removeprefix("0x")
    assert model.commitment == copied.commitment
    x = np.random.default_rng(7).integers(0, 17, (8, 8, 1))
    got, want = run_model(model, x), run_model(copied, x)
    assert got.keys == want.keys and got.states == want.states
    assert np.array_equal(got.output, want.output)
    assert encode_model_file(model) == path.read_bytes()
