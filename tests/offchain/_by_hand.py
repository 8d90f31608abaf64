"""The key and root formulas of docs/oracle-spec.md §1, computed from scratch with pysha3.

Tests compare the code with these, never with the code path that produced a value. Nothing here
imports ``opml``. Not a test module (leading underscore).
"""

import sha3


def keccak(data) -> bytes:
    return sha3.keccak_256(bytes(data)).digest()


def with_type(h: bytes, key_type: int) -> bytes:
    """``h`` with its most significant byte replaced by ``key_type`` (§1)."""
    return bytes([key_type]) + h[1:]


def keccak_key(data) -> bytes:
    """Type 2: ``withType(keccak256(data), 2)``."""
    return with_type(keccak(data), 2)


def local_key(ident: int, caller: bytes, local_context: bytes) -> bytes:
    """Type 1: ``withType(keccak256(abi.encode(uint256 ident, address caller, bytes32 ctx)), 1)``."""
    assert len(caller) == 20 and len(local_context) == 32
    encoded = ident.to_bytes(32, "big") + bytes(12) + caller + local_context
    return with_type(keccak(encoded), 1)


def chunk_depth(size: int) -> int:
    """``d = ceil(log2(max(n, 1)))`` with ``n = ceil(size / 32)`` chunks (§1.3)."""
    n = max(-(-size // 32), 1)
    depth = 0
    while 1 << depth < n:
        depth += 1
    return depth


def sparse_chunk_root(size: int, chunks: dict[int, bytes]) -> bytes:
    """The chunk-Merkle root of ``size`` bytes whose only non-zero chunks are ``{index: 32 bytes}``."""
    nodes, zero = {i: bytes(c) for i, c in chunks.items() if any(c)}, bytes(32)
    for _ in range(chunk_depth(size)):
        parents = {i >> 1 for i in nodes}
        nodes = {k: keccak(nodes.get(2 * k, zero) + nodes.get(2 * k + 1, zero)) for k in parents}
        zero = keccak(zero + zero)
    return nodes.get(0, zero)


def chunk_root(data) -> bytes:
    """``chunkRoot(data)``: 32-byte chunks, the last one zero-padded, as leaves (§1.3)."""
    data = bytes(data)
    chunks = {i: data[32 * i : 32 * i + 32].ljust(32, b"\0") for i in range(-(-len(data) // 32))}
    return sparse_chunk_root(len(data), chunks)


def chunk_key(root: bytes, size: int) -> bytes:
    """Type 3: ``withType(keccak256(abi.encode(bytes32 root, uint256 size)), 3)``."""
    return with_type(keccak(root + size.to_bytes(32, "big")), 3)


def chunk_merkle_key(data) -> bytes:
    return chunk_key(chunk_root(data), len(bytes(data)))
