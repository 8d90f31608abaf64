"""Keccak-256 and the roots of all-zero Merkle subtrees (vm-spec §3.1)."""

import sha3

from opml.vm.constants import LEAF_SIZE, MEM_TREE_DEPTH


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's hash, not NIST SHA3-256)."""
    return sha3.keccak_256(data).digest()


def zero_hashes(depth: int) -> tuple[bytes, ...]:
    """Return ``Z[0..depth]``: ``Z[0]`` is 32 zero bytes, ``Z[i+1] = keccak256(Z[i] ‖ Z[i])``."""
    z = [bytes(LEAF_SIZE)]
    for _ in range(depth):
        z.append(keccak256(z[-1] + z[-1]))
    return tuple(z)


ZERO_HASHES = zero_hashes(MEM_TREE_DEPTH)
