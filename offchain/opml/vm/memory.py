"""Sparse guest memory with an incrementally maintained Merkle root (vm-spec §3).

The 4 GiB address space is stored as 4 KiB pages, and the Merkle tree is cached at page granularity:

- ``pages[p]`` holds bytes ``[p·4096, (p+1)·4096)``; an absent page reads as zeros.
- A page spans 128 leaves, so its leaves form a subtree of height ``PAGE_LEVEL`` (7) whose root is
  cached in ``_nodes[PAGE_LEVEL][p]``.
- ``_nodes[level][k]`` for ``PAGE_LEVEL < level ≤ MEM_TREE_DEPTH`` caches inner node ``k`` of that
  level (level 27 has the single root node 0). An absent node is ``Z[level]``.
- Invariant: every cached node is correct for the current contents of all pages *not* in
  ``_dirty``. ``merkle_root`` rehashes just the dirty pages and their ancestors.

Anything that changes ``pages`` must call ``mark_dirty`` for the page (the write methods do).
"""

import struct

from opml.hashing import ZERO_HASHES, keccak256
from opml.vm.constants import (
    LEAF_SIZE,
    LEAVES_PER_PAGE,
    MASK32,
    MEM_TREE_DEPTH,
    PAGE_LEVEL,
    PAGE_SHIFT,
    PAGE_SIZE,
)
from opml.vm.limits import MAX_MEMORY_PAGES, memory_limit_error

_PAGE_MASK = PAGE_SIZE - 1
_ZERO_PAGE = bytes(PAGE_SIZE)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _hash_pair(left: bytes, right: bytes, level: int) -> bytes:
    """Return the parent (at ``level + 1``) of two nodes at ``level``.

    Two zero subtrees make a zero subtree, so that case is a table lookup instead of a hash.
    """
    z = ZERO_HASHES[level]
    if left == z and right == z:
        return ZERO_HASHES[level + 1]
    return keccak256(left + right)


def page_tree(page: bytes) -> list[list[bytes]]:
    """Return all levels of a page's subtree: ``[leaves (128), level 1 (64), …, [page root]]``."""
    nodes = [page[i : i + LEAF_SIZE] for i in range(0, PAGE_SIZE, LEAF_SIZE)]
    levels = [nodes]
    for level in range(PAGE_LEVEL):
        nodes = [_hash_pair(nodes[k], nodes[k + 1], level) for k in range(0, len(nodes), 2)]
        levels.append(nodes)
    return levels


def _page_root(page: bytes | bytearray | None) -> bytes:
    """Return the root of a page's subtree (``Z[PAGE_LEVEL]`` for an absent or zero page)."""
    if page is None or page == _ZERO_PAGE:
        return ZERO_HASHES[PAGE_LEVEL]
    return page_tree(bytes(page))[PAGE_LEVEL][0]


class Memory:
    """The guest's byte-addressed memory. Addresses are taken modulo 2^32, like the guest's.

    At most ``max_pages`` pages are allocated (:mod:`opml.vm.limits`); the write that would allocate
    one more raises :class:`MemoryLimitError` (the run must stop there)."""

    max_pages = MAX_MEMORY_PAGES

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self._nodes: dict[int, dict[int, bytes]] = {
            level: {} for level in range(PAGE_LEVEL, MEM_TREE_DEPTH + 1)
        }
        self._dirty: set[int] = set()

    # --- bytes -----------------------------------------------------------------------------------

    def mark_dirty(self, page_no: int) -> None:
        """Record that ``pages[page_no]`` changed, so the next ``merkle_root`` rehashes it."""
        self._dirty.add(page_no)

    def _page_for_write(self, page_no: int) -> bytearray:
        page = self.pages.get(page_no)
        if page is None:
            if len(self.pages) >= self.max_pages:
                raise memory_limit_error(self.max_pages)
            page = self.pages[page_no] = bytearray(PAGE_SIZE)
        self._dirty.add(page_no)
        return page

    def read_bytes(self, addr: int, n: int) -> bytes:
        """Return the ``n`` bytes at ``addr`` (wrapping at 2^32). Reading never allocates pages."""
        out = bytearray()
        while n > 0:
            offset = addr & _PAGE_MASK
            chunk = min(n, PAGE_SIZE - offset)
            page = self.pages.get(addr >> PAGE_SHIFT)
            out += page[offset : offset + chunk] if page is not None else bytes(chunk)
            addr = (addr + chunk) & MASK32
            n -= chunk
        return bytes(out)

    def write_bytes(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` (wrapping at 2^32)."""
        view = memoryview(data)
        while view:
            offset = addr & _PAGE_MASK
            chunk = min(len(view), PAGE_SIZE - offset)
            self._page_for_write(addr >> PAGE_SHIFT)[offset : offset + chunk] = view[:chunk]
            addr = (addr + chunk) & MASK32
            view = view[chunk:]

    def read_u8(self, addr: int) -> int:
        """Return the byte at ``addr``."""
        page = self.pages.get(addr >> PAGE_SHIFT)
        return page[addr & _PAGE_MASK] if page is not None else 0

    def write_u8(self, addr: int, value: int) -> None:
        """Store the low 8 bits of ``value`` at ``addr``."""
        self._page_for_write(addr >> PAGE_SHIFT)[addr & _PAGE_MASK] = value & 0xFF

    def read_u16(self, addr: int) -> int:
        """Return the little-endian halfword at ``addr`` (any alignment)."""
        return _U16.unpack(self.read_bytes(addr, 2))[0]

    def write_u16(self, addr: int, value: int) -> None:
        """Store the low 16 bits of ``value`` little-endian at ``addr`` (any alignment)."""
        self.write_bytes(addr, _U16.pack(value & 0xFFFF))

    def read_u32(self, addr: int) -> int:
        """Return the little-endian word at ``addr`` (any alignment; the VM only reads aligned words)."""
        offset = addr & _PAGE_MASK
        if offset > PAGE_SIZE - 4:
            return _U32.unpack(self.read_bytes(addr, 4))[0]
        page = self.pages.get(addr >> PAGE_SHIFT)
        return _U32.unpack_from(page, offset)[0] if page is not None else 0

    def write_u32(self, addr: int, value: int) -> None:
        """Store ``value & 0xFFFFFFFF`` little-endian at ``addr`` (any alignment)."""
        offset = addr & _PAGE_MASK
        if offset > PAGE_SIZE - 4:
            self.write_bytes(addr, _U32.pack(value & MASK32))
        else:
            _U32.pack_into(self._page_for_write(addr >> PAGE_SHIFT), offset, value & MASK32)

    # --- Merkle tree -----------------------------------------------------------------------------

    def leaf(self, leaf_index: int) -> bytes:
        """Return the 32 bytes of leaf ``leaf_index``, i.e. memory ``[32·i, 32·i + 32)``."""
        return self.read_bytes(leaf_index * LEAF_SIZE, LEAF_SIZE)

    def merkle_root(self) -> bytes:
        """Return the Merkle root of the whole memory, rehashing only what changed since last time."""
        if self._dirty:
            changed = self._dirty
            self._dirty = set()
            page_roots = self._nodes[PAGE_LEVEL]
            for page_no in changed:
                page_roots[page_no] = _page_root(self.pages.get(page_no))
            for level in range(PAGE_LEVEL, MEM_TREE_DEPTH):
                children, parents = self._nodes[level], self._nodes[level + 1]
                z = ZERO_HASHES[level]
                changed = {k >> 1 for k in changed}
                for k in changed:
                    left = children.get(2 * k, z)
                    right = children.get(2 * k + 1, z)
                    parents[k] = _hash_pair(left, right, level)
        return self._nodes[MEM_TREE_DEPTH].get(0, ZERO_HASHES[MEM_TREE_DEPTH])

    def merkle_proof(self, leaf_index: int) -> list[bytes]:
        """Return the 27 siblings of the path from leaf ``leaf_index`` to the root, level 0 first."""
        self.merkle_root()  # bring the cached nodes above the pages up to date
        page_no, index_in_page = divmod(leaf_index, LEAVES_PER_PAGE)
        page = self.pages.get(page_no)
        # Nodes inside a page are not cached (they would double the memory held), so rebuild them.
        tree = page_tree(bytes(page) if page is not None else _ZERO_PAGE)
        siblings = [tree[level][(index_in_page >> level) ^ 1] for level in range(PAGE_LEVEL)]
        for level in range(PAGE_LEVEL, MEM_TREE_DEPTH):
            sibling_index = (leaf_index >> level) ^ 1
            siblings.append(self._nodes[level].get(sibling_index, ZERO_HASHES[level]))
        return siblings

    def copy(self) -> "Memory":
        """Return an independent copy (pages are copied; cached hashes are immutable and shared)."""
        other = Memory()
        other.pages = {page_no: bytearray(page) for page_no, page in self.pages.items()}
        other._nodes = {level: dict(nodes) for level, nodes in self._nodes.items()}
        other._dirty = set(self._dirty)
        return other
