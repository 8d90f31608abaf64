"""Memory: byte order, sparse pages, and the incremental Merkle root against a naive full tree."""

import sha3
from hypothesis import given, settings
from hypothesis import strategies as st

from opml.hashing import ZERO_HASHES
from opml.vm.memory import Memory


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _naive_zero_hashes() -> list[bytes]:
    z = [bytes(32)]
    for _ in range(27):
        z.append(_keccak(z[-1] + z[-1]))
    return z


NAIVE_Z = _naive_zero_hashes()


def naive_root(contents: dict[int, int]) -> bytes:
    """Root of the 2^27-leaf tree over ``{address: byte}``, built level by level from scratch."""
    leaves: dict[int, bytearray] = {}
    for addr, value in contents.items():
        leaves.setdefault(addr >> 5, bytearray(32))[addr & 31] = value
    nodes = {index: bytes(leaf) for index, leaf in leaves.items()}
    for level in range(27):
        nodes = {
            k: _keccak(nodes.get(2 * k, NAIVE_Z[level]) + nodes.get(2 * k + 1, NAIVE_Z[level]))
            for k in {index >> 1 for index in nodes}
        }
    return nodes.get(0, NAIVE_Z[27])


def root_from_proof(leaf_index: int, leaf: bytes, siblings: list[bytes]) -> bytes:
    node = leaf
    for level, sibling in enumerate(siblings):
        node = _keccak(sibling + node if leaf_index >> level & 1 else node + sibling)
    return node


def test_zero_hashes_match_spec_definition():
    assert list(ZERO_HASHES[: len(NAIVE_Z)]) == NAIVE_Z  # the table goes on to Z[256]


def test_empty_memory_reads_zero_and_has_root_z27():
    memory = Memory()
    assert memory.read_u32(0x12345678) == 0
    assert memory.read_bytes(0xFFFFFFF0, 8) == bytes(8)
    assert memory.pages == {}  # reading never allocates
    assert memory.merkle_root() == ZERO_HASHES[27]


def test_words_are_little_endian_inside_the_leaf():
    memory = Memory()
    memory.write_u32(0x1004, 0x11223344)
    assert [memory.read_u8(0x1004 + k) for k in range(4)] == [0x44, 0x33, 0x22, 0x11]
    assert memory.read_u16(0x1004) == 0x3344
    assert memory.read_u16(0x1006) == 0x1122
    leaf = memory.leaf(0x1004 >> 5)
    assert leaf[4:8] == bytes([0x44, 0x33, 0x22, 0x11])  # byte a mod 32 of leaf a >> 5
    memory.write_u16(0x1004, 0xBEEF)
    memory.write_u8(0x1007, 0x99)
    assert memory.read_u32(0x1004) == 0x9922BEEF


def test_accesses_across_pages_and_the_top_of_memory():
    memory = Memory()
    memory.write_u32(0x1FFE, 0xAABBCCDD)  # straddles pages 1 and 2
    assert memory.read_bytes(0x1FFE, 4) == bytes([0xDD, 0xCC, 0xBB, 0xAA])
    assert memory.read_u32(0x1FFE) == 0xAABBCCDD
    assert set(memory.pages) == {1, 2}
    memory.write_bytes(0xFFFFFFFE, b"\x01\x02\x03\x04")  # wraps to address 0
    assert memory.read_bytes(0xFFFFFFFE, 4) == b"\x01\x02\x03\x04"
    assert memory.read_u16(0) == 0x0403


def test_large_write_bytes_spans_many_pages():
    memory = Memory()
    data = bytes(range(256)) * 40  # 10 KiB
    memory.write_bytes(0x3000_0F00, data)
    assert memory.read_bytes(0x3000_0F00, len(data)) == data
    contents = {0x3000_0F00 + k: b for k, b in enumerate(data) if b}
    assert memory.merkle_root() == naive_root(contents)


writes = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, 2**32 - 1),  # anywhere
            st.integers(0x0040_0000, 0x0040_3FFF),  # a few neighbouring pages
            st.integers(0x7FFF_E000, 0x7FFF_FFFF),  # around the stack
        ),
        st.integers(0, 255),
        st.booleans(),  # take a root after this write (exercises the incremental path)
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(writes)
def test_incremental_root_equals_naive_root(ops):
    memory = Memory()
    contents: dict[int, int] = {}
    for addr, value, take_root in ops:
        memory.write_u8(addr, value)
        contents[addr] = value
        if take_root:
            assert memory.merkle_root() == naive_root(contents)
    assert memory.merkle_root() == naive_root(contents)


@settings(max_examples=30, deadline=None)
@given(writes, st.integers(0, 2**27 - 1))
def test_merkle_proofs_recompute_the_root(ops, other_leaf):
    memory = Memory()
    for addr, value, _ in ops:
        memory.write_u8(addr, value)
    root = memory.merkle_root()
    for leaf_index in [addr >> 5 for addr, _, _ in ops[:5]] + [other_leaf, 0, 2**27 - 1]:
        siblings = memory.merkle_proof(leaf_index)
        assert len(siblings) == 27
        assert root_from_proof(leaf_index, memory.leaf(leaf_index), siblings) == root


def test_mark_dirty_picks_up_direct_page_mutation():
    memory = Memory()
    memory.write_u32(0x5000, 1)
    memory.merkle_root()
    memory.pages[5][0:4] = b"\x07\x00\x00\x00"  # what the fast executor does
    memory.mark_dirty(5)
    assert memory.merkle_root() == naive_root({0x5000: 7})


def test_copy_is_independent():
    memory = Memory()
    memory.write_u32(0x8000, 0x01020304)
    root = memory.merkle_root()
    clone = memory.copy()
    clone.write_u32(0x8000, 0)
    assert memory.read_u32(0x8000) == 0x01020304
    assert memory.merkle_root() == root
    assert clone.merkle_root() == ZERO_HASHES[27]
