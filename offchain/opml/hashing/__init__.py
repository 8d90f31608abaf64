"""Keccak-256 and the roots of all-zero Merkle subtrees, below both the VM and the oracle.

:func:`keccak256` hashes one message through pysha3: for the many small hashes (a state, a proof
path, a key) a compiled call would cost more than the hash. :mod:`opml.hashing.bulk` hashes whole
levels of large trees at once, compiled.

Both the VM memory tree (vm-spec §3.1) and chunk-Merkle trees (oracle-spec §1.3) have 32-byte nodes
and parents ``keccak256(left ‖ right)``, so they share the zero-subtree roots ``Z``.
"""

import sha3

NODE_SIZE = 32
"""Bytes of a tree node: a leaf (a chunk, a memory word group) or a digest."""


def keccak256(data) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's hash, not NIST SHA3-256)."""
    return sha3.keccak_256(data).digest()


def zero_hashes(depth: int) -> tuple[bytes, ...]:
    """Return ``Z[0..depth]``: ``Z[0]`` is 32 zero bytes, ``Z[i+1] = keccak256(Z[i] ‖ Z[i])``."""
    z = [bytes(NODE_SIZE)]
    for _ in range(depth):
        z.append(keccak256(z[-1] + z[-1]))
    return tuple(z)


ZERO_HASHES = zero_hashes(256)
"""``Z[0..256]``: the root of an all-zero subtree of every height a tree over 2^256 leaves can have."""
