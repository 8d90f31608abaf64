"""The compiled bulk Keccak (opml.hashing.bulk) against pysha3, chunk-Merkle roots built with it against
the from-scratch definition of oracle-spec §1.3 at every boundary size, and the incremental prefix keys
(the run commitments S_i of ml-spec §5) against one tree per prefix."""

import random

import _by_hand
import numpy as np
import pytest

from opml.hashing import ZERO_HASHES, keccak256
from opml.hashing.bulk import LANES, hash_messages, parents
from opml.oracle.chunk_tree import BLOCK_CHUNKS, CACHE_LEVEL, ChunkTree, prefix_keys


def test_zero_hashes_by_hand():
    z = [bytes(32)]
    for _ in range(256):
        z.append(_by_hand.keccak(z[-1] + z[-1]))
    assert list(ZERO_HASHES) == z
    assert keccak256(b"abc") == _by_hand.keccak(b"abc")


@pytest.mark.parametrize("count", [*range(2 * LANES + 2), 31, 32, 33, 1000])
def test_hash_messages_match_pysha3(count):
    data = random.Random(count).randbytes(64 * count)
    want = b"".join(_by_hand.keccak(data[64 * k : 64 * k + 64]) for k in range(count))
    assert hash_messages(data).tobytes() == want


def test_hash_messages_takes_any_buffer_without_changing_it():
    arr = np.random.default_rng(1).integers(0, 256, 64 * 9, dtype=np.uint8)
    want = hash_messages(arr.tobytes()).tobytes()
    for buf in (bytearray(arr.tobytes()), memoryview(arr.tobytes()), arr, arr.view(np.uint64)):
        assert hash_messages(buf).tobytes() == want
    assert arr.flags.writeable


def test_hash_messages_special_lanes():
    """Messages that differ only in the words next to the padding lanes 8 and 16, and extreme words."""
    messages = [
        bytes(64),
        b"\xff" * 64,
        bytes(56) + b"\x01" + bytes(7),
        bytes(63) + b"\x80",
        b"\x80" + bytes(63),
    ]
    data = b"".join(messages)
    assert hash_messages(data).tobytes() == b"".join(_by_hand.keccak(m) for m in messages)


def test_hash_messages_rejects_partial_messages():
    with pytest.raises(ValueError):
        hash_messages(bytes(65))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8, 9, 127])
def test_parents_pair_an_odd_node_with_zero(count):
    nodes = random.Random(count).randbytes(32 * count)
    zero = ZERO_HASHES[3]
    padded = nodes + (zero if count % 2 else b"")
    want = b"".join(_by_hand.keccak(padded[64 * k : 64 * k + 64]) for k in range(len(padded) // 64))
    assert parents(nodes, zero) == want


def _boundary_sizes() -> list[int]:
    sizes = [0, 1, 31, 32, 33, 63, 64, 65]
    for k in (1, 2, 3, 4, CACHE_LEVEL, CACHE_LEVEL + 1, 12, 15, 16):
        for chunks in (2**k - 1, 2**k, 2**k + 1):
            sizes += [32 * chunks, 32 * chunks - 5]
    return sorted(set(sizes))


@pytest.mark.parametrize("size", _boundary_sizes())
def test_chunk_roots_at_boundary_sizes(size):
    data = random.Random(size).randbytes(size)
    tree = ChunkTree.from_bytes(data)
    assert tree.root == _by_hand.chunk_root(data)
    assert tree.key == _by_hand.chunk_key(tree.root, size)


def test_chunk_root_of_a_few_mib():
    """Several 1 MiB build blocks and a partial last one."""
    size = 3 * 32 * BLOCK_CHUNKS + 12_345
    data = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8)
    assert ChunkTree.from_bytes(data).root == _by_hand.chunk_root(data.tobytes())


def test_chunk_root_of_a_memory_map(tmp_path):
    data = random.Random(5).randbytes(32 * BLOCK_CHUNKS + 77)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert ChunkTree.from_file(path).root == _by_hand.chunk_root(data)


def test_prefix_keys_match_one_tree_per_prefix():
    """N = 1 … 300, so every power of two up to 256 and its neighbours."""
    chunks = [random.Random(i).randbytes(32) for i in range(300)]
    joined = b"".join(chunks)
    want = [_by_hand.chunk_key(_by_hand.chunk_root(joined[: 32 * n]), 32 * n) for n in range(1, 301)]
    assert prefix_keys(chunks) == want
    assert prefix_keys(chunks[:1]) == want[:1]
    assert prefix_keys([]) == []


def test_prefix_keys_reject_other_sizes():
    with pytest.raises(ValueError):
        prefix_keys([bytes(32), bytes(31)])
