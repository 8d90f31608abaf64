"""Errors of the preimage oracle (docs/oracle-spec.md).

The proof errors mirror the custom errors of ``contracts/interfaces/IPreimageOracle.sol`` one to one
(``InvalidPartOffset()`` ↔ :class:`InvalidPartOffsetError`), so a Python rejection can be compared with
a contract revert by name: ``type(err).contract_error == "InvalidPartOffset"``.
"""

from opml.errors import OpmlError


class OracleError(OpmlError):
    """Base class of every error raised by the oracle package."""


class InvalidPartOffsetError(OracleError):
    """Thrown when a part offset is not a multiple of 32 below the length (or 0 for empty data)."""

    contract_error = "InvalidPartOffset"


class PreimageTooLargeError(OracleError):
    """Thrown when keccak-keyed data is longer than ``MAX_KECCAK_PREIMAGE`` bytes."""

    contract_error = "PreimageTooLarge"


class InvalidKeyTypeError(OracleError):
    """Thrown when a key's type byte is not the one an operation needs."""

    contract_error = "InvalidKeyType"


class KeyMismatchError(OracleError):
    """Thrown when ``(chunkRoot, size)`` does not derive the chunk-Merkle key."""

    contract_error = "KeyMismatch"


class InvalidPartProofLengthError(OracleError):
    """Thrown when a part proof does not have exactly ``tree_depth(size)`` siblings."""

    contract_error = "InvalidProofLength"


class InvalidPartProofError(OracleError):
    """Thrown when a part proof does not recompute the chunk root."""

    contract_error = "InvalidPartProof"


class NonZeroPaddingError(OracleError):
    """Thrown when a part or local value has a non-zero byte past the end of the data."""

    contract_error = "NonZeroPadding"


class LocalDataTooLargeError(OracleError):
    """Thrown when a local value is longer than 32 bytes."""

    contract_error = "LocalDataTooLarge"


class InvalidLocalIdentError(OracleError):
    """Thrown when a local identifier has more than 248 bits (no guest can name it)."""

    contract_error = "InvalidLocalIdent"


class StoreIntegrityError(OracleError):
    """Raised when a store file does not hold the preimage of its key (a flipped byte, a truncated
    file, another key's file): off-chain only, the contract never reads the store."""


class PreimageNotFoundError(OracleError, KeyError):
    """Thrown when an oracle does not hold the data a question asks for: the off-chain store has no
    preimage for a key, or (the subclasses) the on-chain oracle has not loaded it. The VM raises it
    for a step whose oracle data is missing and leaves the state unchanged (vm-spec §5.5), where the
    contract reverts with ``PreimageNotLoaded`` / ``PartNotLoaded``."""

    __str__ = Exception.__str__  # the message as it is, not KeyError's repr of it


class PartNotLoadedError(PreimageNotFoundError):
    """Thrown when a part is not on-chain and cannot be uploaded (e.g. another caller's local value)."""

    contract_error = "PartNotLoaded"


class PreimageNotLoadedError(PreimageNotFoundError):
    """Thrown when no part of a key is on-chain."""

    contract_error = "PreimageNotLoaded"
