"""Key derivations of docs/oracle-spec.md §1, identical to ``PreimageKeyLib`` in the contracts.

A key is 32 bytes, big-endian (EVM order); its most significant byte (``key[0]``) is its type.

| type | name         | key                                                                    |
|-----:|--------------|------------------------------------------------------------------------|
|    1 | local        | ``with_type(keccak256(abi.encode(ident, caller, local_context)), 1)``  |
|    2 | keccak       | ``with_type(keccak256(data), 2)``                                      |
|    3 | chunk-Merkle | ``with_type(keccak256(abi.encode(chunk_root, len(data))), 3)``         |
"""

from enum import IntEnum

from opml.hashing import keccak256
from opml.oracle.errors import InvalidKeyTypeError, InvalidLocalIdentError

KEY_SIZE = 32
PART_SIZE = 32
MAX_KECCAK_PREIMAGE = 1 << 16
"""Longest preimage a keccak key can reveal on-chain (it travels whole in calldata)."""

IDENT_MASK = (1 << 248) - 1


class KeyType(IntEnum):
    LOCAL = 1
    KECCAK = 2
    CHUNK_MERKLE = 3


def with_type(h: bytes, key_type: int) -> bytes:
    """``h`` with its most significant byte replaced by ``key_type``."""
    if len(h) != KEY_SIZE:
        raise ValueError(f"a key has 32 bytes, got {len(h)}")
    return bytes([key_type]) + bytes(h[1:])


def key_type(key: bytes) -> KeyType:
    """The type of ``key``; raises :class:`InvalidKeyTypeError` for an unknown type byte."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a key has 32 bytes, got {len(key)}")
    try:
        return KeyType(key[0])
    except ValueError:
        raise InvalidKeyTypeError(f"unknown key type {key[0]}") from None


def address_bytes(address) -> bytes:
    """20 address bytes from an ape account/contract, a hex string or bytes."""
    address = getattr(address, "address", address)
    raw = bytes.fromhex(address.removeprefix("0x")) if isinstance(address, str) else bytes(address)
    if len(raw) != 20:
        raise ValueError(f"an address has 20 bytes, got {len(raw)}")
    return raw


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def check_local_ident(ident: int) -> None:
    """The contract's ``InvalidLocalIdent`` check: a guest names local value ``ident`` by
    ``with_type(ident, 1)``, which keeps 248 bits, so a larger identifier could never be read."""
    if not 0 <= ident <= IDENT_MASK:
        raise InvalidLocalIdentError(
            f"local identifier {ident:#x} has more than 248 bits: no guest can name it (use < 2**248)"
        )


def local_ident_key(ident: int) -> bytes:
    """The identifier key ``with_type(ident, 1)`` by which the guest names local value ``ident``."""
    check_local_ident(ident)
    return with_type(_word(ident), KeyType.LOCAL)


def localize_ident(ident: int, caller, local_context: bytes) -> bytes:
    """The localized key of local value ``ident`` stored by ``caller`` for ``local_context`` (§1.1)."""
    if len(local_context) != 32:
        raise ValueError("local_context is a bytes32")
    encoded = _word(ident) + bytes(12) + address_bytes(caller) + bytes(local_context)
    return with_type(keccak256(encoded), KeyType.LOCAL)


def localize(key: bytes, caller, local_context: bytes) -> bytes:
    """What ``MIPS.step`` asks the oracle for: a type-1 key localized, any other key unchanged."""
    if key_type(key) != KeyType.LOCAL:
        return bytes(key)
    return localize_ident(int.from_bytes(key, "big") & IDENT_MASK, caller, local_context)


def keccak_key(data) -> bytes:
    """``with_type(keccak256(data), 2)``."""
    return with_type(keccak256(bytes(data)), KeyType.KECCAK)


def chunk_merkle_key(chunk_root: bytes, size: int) -> bytes:
    """``with_type(keccak256(abi.encode(chunk_root, size)), 3)``."""
    if len(chunk_root) != 32:
        raise ValueError("chunk_root is a bytes32")
    return with_type(keccak256(bytes(chunk_root) + _word(size)), KeyType.CHUNK_MERKLE)
