"""Errors of the MIPS VM.

The proof errors mirror the custom errors of ``contracts/vm/MIPS.sol`` (vm-spec §8) one to one, so a
Python verifier rejection can be compared with a contract revert by class name.
"""

from opml.errors import OpmlError


class VMError(OpmlError):
    """Base class of every error raised by the VM."""


class ElfLoadError(VMError):
    """Thrown when a file is not a static ELF32 little-endian MIPS executable the loader accepts (§6)."""


class MemoryLimitError(VMError):
    """Raised when a run would touch more guest memory than its limit (vm-spec §10): an off-chain
    bound against hostile programs; the on-chain step has none."""


class InvalidStateError(VMError):
    """Thrown when ``stateData`` is not a valid encoded state (§2.1). Mirrors ``InvalidState()``."""


class InvalidProofError(VMError):
    """Base class of the errors for a witness that the contract would reject (§3.3, §3.4)."""


class InvalidProofLengthError(InvalidProofError):
    """Thrown when a proof is shorter than the step needs or has bytes left over.

    Mirrors ``InvalidProofLength()``.
    """


class InvalidZeroMaskError(InvalidProofError):
    """Thrown when a proof's ``zeroMask`` has a bit set at or above its number of levels.

    Mirrors ``InvalidZeroMask()``.
    """


class InvalidMemoryProofError(InvalidProofError):
    """Thrown when a memory proof does not recompute ``memRoot``. Mirrors ``InvalidMemoryProof()``."""
