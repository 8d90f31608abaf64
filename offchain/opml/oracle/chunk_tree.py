"""Chunk-Merkle trees: roots and part proofs (docs/oracle-spec.md §1.3), dense or sparse.

``data`` is cut into ``n = ⌈len/32⌉`` chunks of 32 bytes, the last one zero-padded. The tree has depth
``d = ⌈log2(max(n, 1))⌉`` and ``2^d`` leaves: chunk ``i`` is leaf ``i``, leaves ``n … 2^d − 1`` are zero.
Leaves are the raw 32 bytes, inner nodes ``keccak256(left ‖ right)``; an all-zero subtree of height
``k`` has the root ``Z[k]`` of vm-spec §3.1.

Two implementations share the :class:`ChunkTree` interface:

- :class:`DenseChunkTree` hashes every chunk of a buffer (bytes, numpy array, memmap of a file), a
  whole level at a time with the compiled kernel of :mod:`opml.hashing.bulk`. It keeps the nodes from
  level ``CACHE_LEVEL`` (4 KiB pages) up, 1/64 of the data's size, and recomputes a page's lower levels
  when a proof needs them (as cannon caches its memory tree per page).
- :class:`SparseChunkTree` takes a length and the non-zero chunks only. Its cost grows with the number
  of non-zero chunks times the depth, not with the length, so a 1 GiB preimage with a few non-zero
  chunks is committed to and proven in milliseconds.

Both give the same roots and proofs for the same bytes; :func:`verify_part_proof` checks a proof in the
contract's order of checks. :func:`prefix_keys` gives the keys of every prefix of a list of chunks (the
run commitments ``S_i`` of ml-spec §5) incrementally, and :func:`chunk_merkle_keys` the keys of many
buffers at once (a model run's values), all their trees a level at a time.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opml.hashing import ZERO_HASHES, keccak256
from opml.hashing.bulk import hash_messages, parents
from opml.oracle.errors import (
    InvalidKeyTypeError,
    InvalidPartOffsetError,
    InvalidPartProofError,
    InvalidPartProofLengthError,
    KeyMismatchError,
    NonZeroPaddingError,
)
from opml.oracle.keys import PART_SIZE, KeyType, chunk_merkle_key

CHUNK = 32
CACHE_LEVEL = 7
"""Lowest tree level a dense tree keeps: one node per 2^7 chunks = 4 KiB page."""
BLOCK_CHUNKS = 1 << 15
"""Chunks hashed per block (1 MiB) while building, so temporaries stay small for any data size."""

_Z = ZERO_HASHES


def zero_root(level: int) -> bytes:
    """``Z[level]``, the root of an all-zero subtree of height ``level``."""
    return _Z[level]


def chunk_count(size: int) -> int:
    """``⌈size/32⌉``."""
    return -(-size // CHUNK)


def tree_depth(size: int) -> int:
    """``⌈log2(max(⌈size/32⌉, 1))⌉``, the contract's ``treeDepth``."""
    n = max(chunk_count(size), 1)
    return (n - 1).bit_length()


def check_part_offset(part_offset: int, size: int) -> None:
    """The contract's ``_checkPartOffset``: a multiple of 32 below ``size``, or 0 for empty data."""
    aligned = part_offset % PART_SIZE == 0 and part_offset >= 0
    if not aligned or (part_offset >= size and not size == part_offset == 0):
        raise InvalidPartOffsetError(f"part offset {part_offset} for a {size}-byte preimage")


def padding_of(part: bytes, remaining: int) -> bytes:
    """The bytes of ``part`` from byte ``remaining`` on (past the end of the data); empty if ≥ 32."""
    return bytes(part[remaining:]) if remaining < PART_SIZE else b""


@dataclass(frozen=True)
class PartProof:
    """Arguments of ``loadChunkMerklePart`` for one part."""

    key: bytes
    chunk_root: bytes
    size: int
    part_offset: int
    part: bytes
    siblings: tuple[bytes, ...]

    def args(self) -> tuple:
        """``(key, chunkRoot, size, partOffset, part, siblings)`` in contract order."""
        return (self.key, self.chunk_root, self.size, self.part_offset, self.part, list(self.siblings))

    def calldata_size(self) -> int:
        """Bytes of ABI-encoded calldata: selector, 6 head words, array length and the siblings."""
        return 4 + 32 * 6 + 32 + 32 * len(self.siblings)


def merkle_root(part: bytes, index: int, siblings) -> bytes:
    """Root of the path from leaf ``index`` (value ``part``) through ``siblings``, lowest level first."""
    node = bytes(part)
    for sib in siblings:
        node = keccak256(bytes(sib) + node) if index & 1 else keccak256(node + bytes(sib))
        index >>= 1
    return node


def prefix_keys(chunks: Sequence[bytes]) -> list[bytes]:
    """The chunk-Merkle keys of ``chunks[:1]``, ``chunks[:2]``, …, ``chunks[:n]`` (32-byte chunks), with
    O(n log n) hashes instead of the O(n²) of one tree per prefix.

    Invariant: after ``count`` chunks, ``full[k]`` is the root of a complete subtree of height ``k``
    iff bit ``k`` of ``count`` is set (else ``None``); these subtrees cover the chunks in order, highest
    first, as the bits of ``count`` do. Adding a chunk carries like a binary increment (one hash per
    chunk on average), and a prefix's root folds them from level 0 up to its depth: ≤ depth hashes.
    """
    full: list[bytes | None] = []
    keys = []
    for count, chunk in enumerate(chunks, 1):
        if len(chunk) != CHUNK:
            raise ValueError(f"chunk {count - 1} has {len(chunk)} bytes, want 32")
        node, k = bytes(chunk), 0
        while k < len(full) and (left := full[k]) is not None:
            node, full[k], k = keccak256(left + node), None, k + 1
        if k == len(full):
            full.append(node)
        else:
            full[k] = node
        keys.append(chunk_merkle_key(_prefix_root(full, count), CHUNK * count))
    return keys


def _prefix_root(full: list[bytes | None], count: int) -> bytes:
    """The root of the tree over the ``count`` chunks that ``full`` covers (see :func:`prefix_keys`)."""
    depth = (count - 1).bit_length()
    root = None  # the tree right of the subtrees folded so far; None while it is all zero
    for k in range(depth):
        left = full[k]
        if left is not None:
            root = keccak256(left + (_Z[k] if root is None else root))
        elif root is not None:
            root = keccak256(root + _Z[k])
    if root is None:  # count = 2^depth: one complete subtree
        root = full[depth]
    assert root is not None
    return root


BATCH_BYTES = 1 << 22
"""Bytes of data :func:`chunk_merkle_keys` copies into one batch (4 MiB); a larger buffer gets its own
:class:`DenseChunkTree`, so the copies stay bounded whatever the sizes."""


def chunk_merkle_keys(buffers: Sequence[bytes | bytearray | memoryview | np.ndarray]) -> list[bytes]:
    """``ChunkTree.from_bytes(b).key`` of each buffer (bytes-like or a numpy array), in order.

    The trees are built together, a level at a time: every tree's pairs of a level go to one call of
    :func:`hash_messages`, an odd last node paired with ``Z[level]``, and the ``(root, size)`` of every
    key to one more, so the cost per buffer is a few numpy operations rather than a tree's Python calls
    (hundreds of keys of a few KiB each: a model run's values). A buffer of ≤ 32 bytes is its own root
    (depth 0, empty data ``Z[0]``); one of over :data:`BATCH_BYTES` is built alone, 1 MiB at a time.
    """
    views = [b if isinstance(b, bytes) else as_byte_view(b) for b in buffers]
    sizes = [len(v) for v in views]
    roots = [b""] * len(views)
    batches: list[list[int]] = [[]]
    batch_bytes = 0
    for i, (view, size) in enumerate(zip(views, sizes, strict=True)):
        if size <= CHUNK:
            roots[i] = bytes(view) + bytes(CHUNK - size)
        elif size > BATCH_BYTES:
            roots[i] = DenseChunkTree(view).root
        else:
            if batch_bytes >= BATCH_BYTES:
                batches.append([])
                batch_bytes = 0
            batches[-1].append(i)
            batch_bytes += size
    for batch in batches:
        if batch:
            for i, root in zip(batch, _batch_roots([views[i] for i in batch]), strict=True):
                roots[i] = root
    # keccak256(abi.encode(root, size)) with the type in byte 0, as chunk_merkle_key.
    messages = np.zeros((len(views), 2 * CHUNK), np.uint8)
    messages[:, :CHUNK] = np.frombuffer(b"".join(roots), np.uint8).reshape(-1, CHUNK)
    messages[:, -8:] = np.array(sizes, ">u8").view(np.uint8).reshape(-1, 8)
    digests = hash_messages(messages.reshape(-1)).reshape(-1, CHUNK)
    digests[:, 0] = KeyType.CHUNK_MERKLE
    out = digests.tobytes()
    return [out[CHUNK * i : CHUNK * (i + 1)] for i in range(len(views))]


def _batch_roots(views: list[bytes | memoryview]) -> list[bytes]:
    """The roots of trees of ≥ 2 chunks each, hashed together level by level (see
    :func:`chunk_merkle_keys`)."""
    # Level 0: each buffer zero-padded to whole pairs of chunks (the last chunk's padding and an odd
    # last leaf's sibling Z[0] are both zero bytes).
    pair = 2 * CHUNK
    zeros = bytes(pair)
    parts: list[bytes | memoryview] = []
    for view in views:
        parts.append(view)
        if len(view) % pair:
            parts.append(zeros[len(view) % pair :])
    rows = hash_messages(b"".join(parts)).reshape(-1, CHUNK)
    counts = np.array([-(-len(v) // pair) for v in views], np.int64)  # nodes of level 1 per tree
    ids = np.arange(len(views))
    roots = [b""] * len(views)
    level = 1
    while True:
        done = counts == 1  # a tree of depth `level`: its one node is the root
        if done.any():
            got = rows[(np.cumsum(counts) - 1)[done]].tobytes()
            for k, i in enumerate(ids[done].tolist()):
                roots[i] = got[CHUNK * k : CHUNK * (k + 1)]
            keep = ~done
            if not keep.any():
                return roots
            rows, ids, counts = rows[np.repeat(keep, counts)], ids[keep], counts[keep]
        odd = counts & 1
        if odd.any():  # insert Z[level] after each odd tree's last node
            padded = counts + odd
            out = np.empty((int(padded.sum()), CHUNK), np.uint8)
            out[(np.cumsum(padded) - 1)[odd == 1]] = np.frombuffer(_Z[level], np.uint8)
            out[np.arange(len(rows)) + np.repeat(np.cumsum(odd) - odd, counts)] = rows
            rows, counts = out, padded
        rows = hash_messages(rows.reshape(-1)).reshape(-1, CHUNK)
        counts //= 2
        level += 1


class ChunkKeyStream:
    """The chunk-Merkle key of data given in pieces of any size: the key ``ChunkTree.from_bytes`` gives
    their concatenation, while holding the current piece (page-aligned pieces of 1 MiB or more are
    hashed in place; the rest waits, under 1 MiB plus a piece) and the level-``CACHE_LEVEL`` nodes
    (1/128 of the data). It keys a model file's tensors of any size without one in memory."""

    PAGE = CHUNK << CACHE_LEVEL

    def __init__(self) -> None:
        self.size = 0
        self._pending = bytearray()
        self._pages: list[np.ndarray] = []
        """Level ``CACHE_LEVEL`` nodes of the whole pages hashed so far, in order."""

    def update(self, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        view = as_byte_view(data)
        self.size += len(view)
        if self._pending:
            self._pending += view
            view = memoryview(bytes(self._pending))
            self._pending.clear()
        whole = len(view) - len(view) % self.PAGE
        if whole >= CHUNK * BLOCK_CHUNKS:  # hashed in place: no copy of page-aligned pieces
            self._hash_pages(view[:whole])
            view = view[whole:]
        self._pending += view

    def _hash_pages(self, data: memoryview | bytes) -> None:
        nodes = np.frombuffer(data, np.uint8)
        for _ in range(CACHE_LEVEL):
            nodes = hash_messages(nodes)
        self._pages.append(nodes)

    def key(self) -> bytes:
        """The key of everything given so far; call it after the last piece."""
        depth = tree_depth(self.size)
        if not self._pages:  # under 1 MiB: all of it is pending
            return DenseChunkTree(bytes(self._pending)).key
        if self._pending:  # zero-padded to a whole page, as the dense tree pads its last block
            self._hash_pages(bytes(self._pending) + bytes(-len(self._pending) % self.PAGE))
            self._pending.clear()
        nodes = np.concatenate(self._pages).tobytes()
        for level in range(CACHE_LEVEL, depth):
            nodes = parents(nodes, _Z[level])
        return chunk_merkle_key(nodes, self.size)


def verify_part_proof(key: bytes, chunk_root: bytes, size: int, part_offset: int, part: bytes, siblings):
    """Check a part proof exactly as ``loadChunkMerklePart`` does, in the same order; raise its error."""
    if bytes(key)[0] != KeyType.CHUNK_MERKLE:
        raise InvalidKeyTypeError(f"key type {key[0]}, want 3")
    if chunk_merkle_key(chunk_root, size) != bytes(key):
        raise KeyMismatchError("keccak256(abi.encode(chunkRoot, size)) does not give the key")
    check_part_offset(part_offset, size)
    if len(siblings) != tree_depth(size):
        raise InvalidPartProofLengthError(f"{len(siblings)} siblings, want {tree_depth(size)}")
    if merkle_root(part, part_offset // PART_SIZE, siblings) != bytes(chunk_root):
        raise InvalidPartProofError("the path does not recompute chunkRoot")
    if any(padding_of(part, size - part_offset)):
        raise NonZeroPaddingError("non-zero bytes past the end of the data")


def as_byte_view(data) -> memoryview:
    """A flat, read-only byte view of bytes, bytearray, memoryview or a (C-contiguous) numpy array."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("data must be contiguous")
    return mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv


class ChunkTree:
    """The chunk-Merkle tree of a preimage: ``size``, ``depth``, ``root``, ``key`` and part proofs."""

    size: int
    depth: int
    root: bytes

    # --- constructors -------------------------------------------------------------------------

    @staticmethod
    def from_bytes(data) -> DenseChunkTree:
        """A dense tree over bytes-like data or a numpy array (hashes every chunk)."""
        return DenseChunkTree(data)

    @staticmethod
    def from_file(path) -> DenseChunkTree:
        """A dense tree over a file, read through a read-only memory map."""
        return DenseChunkTree.from_file(path)

    @staticmethod
    def from_sparse(size: int, chunks: dict[int, bytes]) -> SparseChunkTree:
        """A tree over ``size`` bytes that are zero except for ``chunks`` (chunk index → 32 bytes)."""
        return SparseChunkTree(size, chunks)

    # --- interface ----------------------------------------------------------------------------

    @property
    def key(self) -> bytes:
        return chunk_merkle_key(self.root, self.size)

    @property
    def chunks(self) -> int:
        """Number of chunks ``⌈size/32⌉``."""
        return chunk_count(self.size)

    def chunk(self, index: int) -> bytes:
        """Leaf ``index`` (32 bytes; zero past the data)."""
        raise NotImplementedError

    def node(self, level: int, index: int) -> bytes:
        """Node ``index`` at ``level`` (level 0 = leaves)."""
        raise NotImplementedError

    def part(self, part_offset: int) -> bytes:
        """The 32-byte part at ``part_offset`` (zero-padded past the end)."""
        check_part_offset(part_offset, self.size)
        return self.chunk(part_offset // PART_SIZE)

    def siblings(self, index: int) -> tuple[bytes, ...]:
        """The ``depth`` siblings of leaf ``index``, lowest level first."""
        return tuple(self.node(level, (index >> level) ^ 1) for level in range(self.depth))

    def proof(self, part_offset: int) -> PartProof:
        """The ``loadChunkMerklePart`` arguments for the part at ``part_offset``."""
        part = self.part(part_offset)
        sibs = self.siblings(part_offset // PART_SIZE)
        return PartProof(self.key, self.root, self.size, part_offset, part, sibs)


class DenseChunkTree(ChunkTree):
    """A chunk tree over a whole buffer, with the nodes of level ``CACHE_LEVEL`` and up kept."""

    def __init__(self, data: bytes | bytearray | memoryview | np.ndarray | mmap.mmap, *, _keep=None) -> None:
        self._data = as_byte_view(data)
        self._keep = _keep  # keeps a memory map alive
        self.size = len(self._data)
        self.depth = tree_depth(self.size)
        self._cache_level = min(CACHE_LEVEL, self.depth)
        self._levels: dict[int, bytes] = {}
        self._build()

    @classmethod
    def from_file(cls, path) -> DenseChunkTree:
        path = Path(path)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return cls(b"")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(mm, _keep=mm)

    @property
    def data(self) -> memoryview:
        return self._data

    def _page_nodes(self, page: int) -> bytes:
        """Leaves of page ``page`` (2^cache_level chunks), zero-padded to whole chunks."""
        span = CHUNK << self._cache_level
        raw = bytes(self._data[page * span : (page + 1) * span])
        if len(raw) % CHUNK:
            raw += bytes(CHUNK - len(raw) % CHUNK)
        return raw

    def _build(self) -> None:
        c = self._cache_level
        span = CHUNK << c  # bytes under one node of level c
        # Level c from 1 MiB blocks of the data, read in place, so that lower levels never exist for
        # more than one block. Every block but the last holds whole level-c subtrees; the last is
        # zero-padded to whole subtrees, since zero leaves hash to the Z the tree pairs with.
        block = CHUNK * max(BLOCK_CHUNKS, 1 << c)
        tops = []
        for start in range(0, max(self.size, 1), block):
            piece = self._data[start : start + block]
            whole = max(-(-len(piece) // span), 1) * span
            lower = np.frombuffer(
                piece if whole == len(piece) else bytes(piece) + bytes(whole - len(piece)), np.uint8
            )
            for _ in range(c):
                lower = hash_messages(lower)
            tops.append(lower)
        nodes = np.concatenate(tops).tobytes()
        for level in range(c, self.depth):
            self._levels[level] = nodes
            nodes = parents(nodes, _Z[level])
        self._levels[self.depth] = nodes
        assert len(nodes) == CHUNK
        self.root = nodes

    def chunk(self, index: int) -> bytes:
        raw = bytes(self._data[index * CHUNK : (index + 1) * CHUNK])
        return raw + bytes(CHUNK - len(raw))

    def node(self, level: int, index: int) -> bytes:
        if level >= self._cache_level:
            nodes = self._levels[level]
            return nodes[index * CHUNK : (index + 1) * CHUNK] if index * CHUNK < len(nodes) else _Z[level]
        if level == 0:
            return self.chunk(index)
        # Recompute the page that holds the node, up to this level.
        shift = self._cache_level - level
        nodes = self._page_nodes(index >> shift)
        for k in range(level):
            nodes = parents(nodes, _Z[k])
        local = index & ((1 << shift) - 1)
        got = nodes[local * CHUNK : (local + 1) * CHUNK]
        return got if got else _Z[level]

    def siblings(self, index: int) -> tuple[bytes, ...]:
        # One page recomputation for all the low levels instead of one per level.
        c = self._cache_level
        sibs = []
        nodes = self._page_nodes(index >> c) if c else b""
        local = index & ((1 << c) - 1)
        for level in range(self.depth):
            j = (index >> level) ^ 1
            if level < c:
                lj = (local >> level) ^ 1
                got = nodes[lj * CHUNK : (lj + 1) * CHUNK]
                sibs.append(got if got else _Z[level])
                nodes = parents(nodes, _Z[level])
            else:
                sibs.append(self.node(level, j))
        return tuple(sibs)


class SparseChunkTree(ChunkTree):
    """A chunk tree over ``size`` bytes that are zero except for a few chunks."""

    def __init__(self, size: int, chunks: dict[int, bytes]):
        if size < 0:
            raise ValueError("size must be ≥ 0")
        self.size = size
        self.depth = tree_depth(size)
        n = self.chunks
        leaves: dict[int, bytes] = {}
        for index, value in chunks.items():
            value = bytes(value)
            if len(value) != CHUNK:
                raise ValueError(f"chunk {index} has {len(value)} bytes, want 32")
            if not 0 <= index < max(n, 1) or (n == 0 and any(value)):
                raise InvalidPartOffsetError(f"chunk {index} is past the end of {size} bytes")
            if any(padding_of(value, size - index * CHUNK)):
                raise NonZeroPaddingError(f"chunk {index} has non-zero bytes past the end")
            if any(value):
                leaves[index] = value
        self._levels: list[dict[int, bytes]] = [leaves]
        level_nodes = leaves
        for level in range(self.depth):
            z = _Z[level]
            parents: dict[int, bytes] = {}
            for index in level_nodes:
                p = index >> 1
                if p not in parents:
                    left = level_nodes.get(2 * p, z)
                    right = level_nodes.get(2 * p + 1, z)
                    parents[p] = keccak256(left + right)
            self._levels.append(parents)
            level_nodes = parents
        self.root = level_nodes.get(0, _Z[self.depth])

    @classmethod
    def from_bytes(cls, data) -> SparseChunkTree:  # type: ignore[override]  # sparse from dense data
        """A sparse tree over dense data (keeps only its non-zero chunks)."""
        mv = as_byte_view(data)
        size = len(mv)
        arr = np.frombuffer(mv, dtype=np.uint8)
        pad = (-size) % CHUNK
        if pad:
            arr = np.concatenate([arr, np.zeros(pad, np.uint8)])
        words = arr.reshape(-1, CHUNK)
        nz = np.flatnonzero(words.any(axis=1))
        return cls(size, {int(i): words[i].tobytes() for i in nz})

    @property
    def nonzero_chunks(self) -> dict[int, bytes]:
        return dict(self._levels[0])

    def chunk(self, index: int) -> bytes:
        return self._levels[0].get(index, _Z[0])

    def node(self, level: int, index: int) -> bytes:
        return self._levels[level].get(index, _Z[level])

    def write_to(self, f) -> None:
        """Write the ``size`` bytes to the binary file ``f`` as a sparse file (holes stay holes)."""
        f.truncate(self.size)
        for index in sorted(self._levels[0]):
            f.seek(index * CHUNK)
            f.write(self._levels[0][index][: self.size - index * CHUNK])
