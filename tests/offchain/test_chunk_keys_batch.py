"""Chunk-Merkle keys of many buffers at once (``chunk_merkle_keys``, oracle-spec §1.3): each key equals
``ChunkTree.from_bytes(b).key`` for every size around the chunk, pair and tree-depth boundaries, mixed
in one call, in order, across batches; and the runner's keys and states with it equal the per-value
path on the digits models and the tiny LLaMA's task graph."""

import random

import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from hypothesis import given
from hypothesis import strategies as st

from opml.ml.format import read_model, tensor_key
from opml.ml.llama import task_graph, task_input
from opml.ml.runner import RunResult, run_from, run_model, value_bytes
from opml.ml.tiny_llama import tiny_llama
from opml.oracle import chunk_tree
from opml.oracle.chunk_tree import ChunkTree, chunk_merkle_keys, prefix_keys

EDGE_SIZES = [0, 1, 31, 32, 33, 63, 64, 65, 96, 1000, 4096, 4097, 65536]


def one_by_one(buffers) -> list[bytes]:
    return [ChunkTree.from_bytes(b).key for b in buffers]


def mixed_buffers(seed: int, count: int) -> list[bytes]:
    """The edge sizes and ``count`` random sizes up to 200,000 (most small), shuffled, random bytes."""
    rng = random.Random(seed)
    sizes = EDGE_SIZES + [rng.choice([rng.randrange(300), rng.randrange(200_001)]) for _ in range(count)]
    rng.shuffle(sizes)
    return [rng.randbytes(size) for size in sizes]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_sizes_in_one_call_equal_one_tree_each(seed):
    buffers = mixed_buffers(seed, 60)
    assert chunk_merkle_keys(buffers) == one_by_one(buffers)


def test_each_edge_size_alone_and_order_is_kept():
    rng = random.Random(7)
    buffers = [rng.randbytes(size) for size in EDGE_SIZES]
    for b in buffers:
        assert chunk_merkle_keys([b]) == [ChunkTree.from_bytes(b).key]
    want = one_by_one(buffers)
    assert chunk_merkle_keys(buffers[::-1]) == want[::-1]
    assert chunk_merkle_keys(buffers + buffers) == want + want  # the same data twice, two equal keys
    assert chunk_merkle_keys([]) == []


def test_zero_and_padding_like_data():
    """All-zero buffers (their nodes equal the zero roots the odd nodes pair with) and trailing zeros:
    the size still tells them apart."""
    buffers = [bytes(size) for size in EDGE_SIZES] + [b"\x01" + bytes(size) for size in EDGE_SIZES]
    keys = chunk_merkle_keys(buffers)
    assert keys == one_by_one(buffers)
    assert len(set(keys)) == len(keys)


def test_buffer_types():
    rng = np.random.default_rng(5)
    arrays = [
        rng.integers(-(2**31), 2**31, size=shape, dtype=np.int32) for shape in [(0,), (3, 5), (7, 9, 11)]
    ]
    buffers = [
        bytearray(b"abc" * 50),
        memoryview(b"xyz" * 1000),
        *arrays,
        np.asfortranarray(rng.integers(0, 255, size=(40, 30), dtype=np.uint8)),  # copied C-contiguous
    ]
    assert chunk_merkle_keys(buffers) == one_by_one(buffers)


def test_small_batches_and_large_buffers_alone(monkeypatch):
    """With 4 KiB batches: many batch boundaries, and buffers over the limit built by a dense tree."""
    monkeypatch.setattr(chunk_tree, "BATCH_BYTES", 4096)
    buffers = mixed_buffers(3, 40)
    assert chunk_merkle_keys(buffers) == one_by_one(buffers)


@given(st.lists(st.binary(max_size=3000), max_size=20))
def test_any_buffers(buffers):
    assert chunk_merkle_keys(buffers) == one_by_one(buffers)


# --- the runner -----------------------------------------------------------------------------------


def assert_per_value_keys(model, run: RunResult) -> None:
    """Keys and states of ``run`` equal those of one tensor key per value (the runner's former path)."""
    keys = tuple(tensor_key(value_bytes(v, d)) for v, d in zip(run.values, model.values, strict=True))
    assert run.keys == keys
    assert run.states == tuple(prefix_keys(keys))


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_runner_keys_on_the_digits_models(name):
    model = read_model(MODELS / f"{name}.opml")
    pixels, _ = digits_test_split()
    for image in pixels[:3]:
        x = image.reshape(DIGITS_SHAPES[name]).astype(np.int8)
        assert_per_value_keys(model, run_model(model, x))


def test_runner_keys_on_the_tiny_llama_task_graph():
    task = task_graph(tiny_llama(0), 6, 8)
    model = task.model
    run = run_model(model, task_input([1, 2, 3, 4], 8, 6, 8))
    assert_per_value_keys(model, run)
    middle = len(model.nodes) // 2  # a run from a node on (the lying server's path) keys the same
    again = run_from(model, run.values, middle)
    assert again.keys == run.keys and again.states == run.states
