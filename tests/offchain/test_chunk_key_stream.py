"""The chunk-Merkle key of data given in pieces (``ChunkKeyStream``, oracle-spec §1.3): the key
``ChunkTree.from_bytes`` gives the whole, for sizes around the chunk, page (4 KiB) and block (1 MiB)
boundaries and any cut into pieces, including page-aligned pieces hashed in place and numpy arrays."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml.oracle.chunk_tree import ChunkKeyStream, ChunkTree

MIB = 1 << 20
SIZES = [0, 1, 31, 32, 33, 4095, 4096, 4097, MIB - 1, MIB, MIB + 1, 2 * MIB + 4095, 3 * MIB + 12345]


def streamed(data: bytes, cuts: list[int]) -> bytes:
    stream = ChunkKeyStream()
    start = 0
    for end in [*cuts, len(data)]:
        stream.update(data[start:end])
        start = end
    return stream.key()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [1000, 4096, MIB, 777_777, 8 * MIB])
def test_pieces_of_one_size_give_the_whole_key(size, piece):
    data = random.Random(size).randbytes(size)
    cuts = list(range(piece, size, piece))
    assert streamed(data, cuts) == ChunkTree.from_bytes(data).key


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3 * MIB), st.lists(st.integers(0, 3 * MIB), max_size=6), st.randoms())
def test_any_cut_gives_the_whole_key(size, cuts, rng):
    data = rng.randbytes(size)
    assert streamed(data, sorted(c for c in cuts if c <= size)) == ChunkTree.from_bytes(data).key


def test_numpy_pieces_and_a_second_call_of_key():
    data = np.frombuffer(random.Random(5).randbytes(2 * MIB + 100), np.uint8)
    stream = ChunkKeyStream()
    stream.update(data[: MIB + 4096])
    stream.update(data[MIB + 4096 :])
    key = stream.key()
    assert key == stream.key() == ChunkTree.from_bytes(data).key
    assert stream.size == len(data)
