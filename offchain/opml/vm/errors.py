"""Errors of the MIPS VM.

The state and proof errors mirror the custom errors of ``contracts/vm/MIPS.sol`` and its libraries
(vm-spec §8) one to one, the way the oracle's errors mirror ``IPreimageOracle``'s: ``contract_error``
names the mirrored error, so a Python rejection is compared with a contract revert by that name.
"""

from opml.errors import OpmlError


class VMError(OpmlError):
    """Base class of every error raised by the VM."""


class ElfLoadError(VMError):
    """Thrown when a file is not a static ELF32 little-endian MIPS executable the loader accepts (§6)."""


class MemoryLimitError(VMError):
    """Raised when a run would touch more guest memory than its limit (vm-spec §10): an off-chain
    bound against hostile programs; the on-chain step has none."""


class StepRangeError(VMError):
    """Raised when a runner is asked for a step it cannot reach: before a trace's first step, past
    the steps it traced, or past the fast executor's int64 step counter."""


class WitnessShapeError(VMError):
    """Raised when a step touches memory in a way no witness can prove (vm-spec §3.4: the
    instruction's leaf, then at most one other leaf): a VM rule was changed without the proof format."""


class InvalidStateError(VMError):
    """Thrown when ``stateData`` is not a valid encoded state (§2.1)."""

    contract_error = "InvalidState"


class InvalidProofError(VMError):
    """Base class of the errors for a witness that the contract would reject (§3.3, §3.4)."""


class InvalidProofLengthError(InvalidProofError):
    """Thrown when a proof is shorter than the step needs or has bytes left over."""

    contract_error = "InvalidProofLength"


class InvalidZeroMaskError(InvalidProofError):
    """Thrown when a proof's ``zeroMask`` has a bit set at or above its number of levels."""

    contract_error = "InvalidZeroMask"


class InvalidMemoryProofError(InvalidProofError):
    """Thrown when a memory proof does not recompute ``memRoot``."""

    contract_error = "InvalidMemoryProof"
