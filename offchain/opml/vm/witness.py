"""Step witnesses: compact memory proofs, their verifier and the ``step`` calldata (vm-spec §3.3, §3.4).

Memory proof layout (integers big-endian):

| bytes   | field                                                                   |
|--------:|-------------------------------------------------------------------------|
|      32 | ``leaf``: the 32 bytes of the leaf                                      |
|       4 | ``zeroMask``: bit k set ⇔ the sibling at level k is ``Z[k]`` (omitted)  |
| 32 each | the siblings whose bit is clear, lowest level first                     |

``proof = instructionProof (27 levels) ‖ dataProof (L levels)?``. Both sides run the one reference
``step``: the producer, :func:`step_witness`, over a :class:`RecordingMemory` that proves each leaf
when the step first touches it; the consumer, :func:`apply_step_proof`, over a :class:`ProofMemory`
that consumes a proof at the same accesses, as the contract does.
"""

import contextlib
from dataclasses import dataclass, replace

import eth_abi

from opml.hashing import ZERO_HASHES, keccak256
from opml.oracle.errors import PreimageNotFoundError
from opml.vm.constants import LEAF_SHIFT, LEAF_SIZE, MASK32, MEM_TREE_DEPTH, MEMORY_PROOF_HEADER_SIZE
from opml.vm.errors import (
    InvalidMemoryProofError,
    InvalidProofLengthError,
    InvalidZeroMaskError,
    WitnessShapeError,
)
from opml.vm.memory import Memory
from opml.vm.preimage import PreimageOracle
from opml.vm.state import VMState, decode_state, encode_state
from opml.vm.step import step

STEP_SELECTOR = keccak256(b"step(bytes,bytes)")[:4]
STEP_WITH_CONTEXT_SELECTOR = keccak256(b"step(bytes,bytes,bytes32)")[:4]


@dataclass(frozen=True)
class StepWitness:
    """The two arguments of the contract's ``step``: the pre-state and the proof it consumes."""

    state_data: bytes
    proof: bytes
    leaves: tuple[int, ...] = ()
    """The indices of the leaves ``proof`` proves, in the order the step touches them."""


def data_proof_levels(instruction_leaf: int, data_leaf: int) -> int:
    """Return ``L = floor(log2(i XOR j))``: the level where the two paths meet (§3.3), for ``i ≠ j``."""
    return (instruction_leaf ^ data_leaf).bit_length() - 1


# --- Producing proofs -----------------------------------------------------------------------------


def encode_memory_proof(memory: Memory, leaf_index: int, levels: int = MEM_TREE_DEPTH) -> bytes:
    """Return the compact proof of leaf ``leaf_index`` with its siblings at levels ``0 … levels-1``."""
    zero_mask, siblings = 0, bytearray()
    for level, sibling in enumerate(memory.merkle_proof(leaf_index)[:levels]):
        if sibling == ZERO_HASHES[level]:
            zero_mask |= 1 << level
        else:
            siblings += sibling
    return memory.leaf(leaf_index) + zero_mask.to_bytes(4, "big") + bytes(siblings)


class RecordingMemory:
    """The memory a step runs over while its witness is built: the producer side of :class:`ProofMemory`.

    Reads come from ``memory``, which is never written: the step's writes go to an overlay of aligned
    words. The first access to a leaf appends that leaf's proof to ``proof``: all 27 levels for the
    instruction's leaf, then, for a data leaf, the levels below where the two paths meet (§3.3), the
    rule by which ``ProofMemory`` and ``MIPSMemory.sol`` consume them. Proofs come from the pre-state
    and are exact: a leaf is proven before the step writes it, and a data proof's siblings lie outside
    the instruction's leaf. A step touches at most those two leaves, in that order (§3.4); any other
    access raises :class:`WitnessShapeError`, as the contract could not consume such a proof.
    """

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self._written: dict[int, int] = {}
        self.leaves: list[int] = []
        self.proof = bytearray()

    def _access(self, leaf_index: int) -> None:
        if self.leaves and self.leaves[-1] == leaf_index:
            return
        if len(self.leaves) == 2:
            raise WitnessShapeError(
                f"the step touches leaf {leaf_index:#x} after leaves {self.leaves[0]:#x} and "
                f"{self.leaves[1]:#x}: a witness proves the instruction's leaf and one data leaf only"
            )
        levels = data_proof_levels(self.leaves[0], leaf_index) if self.leaves else MEM_TREE_DEPTH
        self.proof += encode_memory_proof(self._memory, leaf_index, levels)
        self.leaves.append(leaf_index)

    def read_u32(self, addr: int) -> int:
        """Return the word at the aligned ``addr`` as the step has left it, proving its leaf first."""
        self._access(addr >> LEAF_SHIFT)
        word = self._written.get(addr)
        return self._memory.read_u32(addr) if word is None else word

    def write_u32(self, addr: int, value: int) -> None:
        """Record ``value`` at the aligned ``addr`` in the overlay, proving its leaf first."""
        self._access(addr >> LEAF_SHIFT)
        self._written[addr] = value & MASK32


def step_witness(state: VMState) -> StepWitness:
    """Return the witness of the step that ``state`` executes next; ``state`` is not changed.

    The step runs over a :class:`RecordingMemory`, so its proof holds exactly the leaves it reads and
    writes, in the order it touches them: none for an exited state or a misaligned ``pc``, otherwise
    the instruction's leaf, then the data leaf (§3.4) if that is another one. Which leaves a step
    touches is decided only by the step's own code (``opml.vm.instructions``, ``opml.vm.syscalls``).
    It runs without an oracle: a step touches every leaf before it asks the oracle anything (§5.5),
    so stopping at the first question loses no proof.
    """
    recorder = RecordingMemory(state.memory)
    scratch = replace(
        state,
        memory=recorder,  # type: ignore[arg-type]  # duck-typed memory
        registers=list(state.registers),
        stdout=None,
        stderr=None,
    )
    with contextlib.suppress(PreimageNotFoundError):  # its first question comes after its last new leaf
        step(scratch)
    return StepWitness(encode_state(state), bytes(recorder.proof), tuple(recorder.leaves))


def encode_step_calldata(state_data: bytes, proof: bytes, local_context: bytes | None = None) -> bytes:
    """Return the ABI calldata of ``step(bytes stateData, bytes proof)``, or, with ``local_context``,
    of ``step(bytes stateData, bytes proof, bytes32 localContext)`` (§5.5, §8)."""
    if local_context is None:
        return STEP_SELECTOR + eth_abi.encode(["bytes", "bytes"], [state_data, proof])
    if len(local_context) != 32:
        raise ValueError(f"local_context is a bytes32, got {len(local_context)} bytes")
    return STEP_WITH_CONTEXT_SELECTOR + eth_abi.encode(
        ["bytes", "bytes", "bytes32"], [state_data, proof, bytes(local_context)]
    )


# --- Consuming proofs (what the contract does) ----------------------------------------------------


def decode_memory_proof(proof: bytes, offset: int, levels: int) -> tuple[bytes, list[bytes], int]:
    """Read a compact proof at ``proof[offset:]``; return ``(leaf, siblings, end offset)``.

    ``siblings`` has ``levels`` entries, with ``Z[k]`` filled in where the mask omits one.
    Raises :class:`InvalidProofLengthError` when bytes are missing and
    :class:`InvalidZeroMaskError` when a mask bit at or above ``levels`` is set.
    """
    if len(proof) < offset + MEMORY_PROOF_HEADER_SIZE:
        raise InvalidProofLengthError(f"memory proof at byte {offset} is cut short in its header")
    leaf = proof[offset : offset + LEAF_SIZE]
    zero_mask = int.from_bytes(proof[offset + LEAF_SIZE : offset + MEMORY_PROOF_HEADER_SIZE], "big")
    if zero_mask >> levels:
        raise InvalidZeroMaskError(f"zeroMask {zero_mask:#010x} sets bits at or above level {levels}")
    offset += MEMORY_PROOF_HEADER_SIZE
    siblings = []
    for level in range(levels):
        if zero_mask >> level & 1:
            siblings.append(ZERO_HASHES[level])
        else:
            if len(proof) < offset + LEAF_SIZE:
                raise InvalidProofLengthError(f"memory proof is missing its level-{level} sibling")
            siblings.append(proof[offset : offset + LEAF_SIZE])
            offset += LEAF_SIZE
    return leaf, siblings, offset


def path_nodes(leaf_index: int, leaf: bytes, siblings: list[bytes]) -> list[bytes]:
    """Return the nodes on the path from the leaf upwards: ``[leaf, level 1, …, top]`` (§3.3)."""
    nodes = [leaf]
    for level, sibling in enumerate(siblings):
        node = nodes[-1]
        nodes.append(keccak256(sibling + node if leaf_index >> level & 1 else node + sibling))
    return nodes


def verify_memory_proof(root: bytes, leaf_index: int, proof: bytes) -> bytes:
    """Check a full (27-level) proof of leaf ``leaf_index`` against ``root``; return the leaf.

    Raises an :class:`InvalidProofError` subclass, as the contract would for an instruction proof.
    """
    leaf, siblings, end = decode_memory_proof(proof, 0, MEM_TREE_DEPTH)
    if end != len(proof):
        raise InvalidProofLengthError(f"memory proof has {len(proof) - end} bytes left over")
    if path_nodes(leaf_index, leaf, siblings)[-1] != root:
        raise InvalidMemoryProofError(f"the proof of leaf {leaf_index:#x} does not recompute the root")
    return leaf


class ProofMemory:
    """Memory known only through a witness: the stand-in for ``Memory`` in :func:`apply_step_proof`.

    It offers the part of ``Memory``'s interface that ``step`` uses on a proven state
    (``read_u32``, ``write_u32``, ``merkle_root``). The first access consumes a full 27-level proof;
    an access to another leaf consumes a data proof whose siblings at and above the meeting level
    come from the previously proven path (§3.3). Invariant: ``_path`` is the path of the proven leaf
    ``_leaf_index`` under ``_siblings`` and ends at ``_root``.
    """

    def __init__(self, root: bytes, proof: bytes) -> None:
        self._root = root
        self._proof = proof
        self.offset = 0  # bytes of ``proof`` consumed so far
        self._leaf_index: int | None = None
        self._siblings: list[bytes] = []
        self._path: list[bytes] = []

    def merkle_root(self) -> bytes:
        """Return the current root (the pre-state's until a write)."""
        return self._root

    def _prove(self, leaf_index: int) -> None:
        """Make ``leaf_index`` the proven leaf, consuming its proof if it is not already."""
        if leaf_index == self._leaf_index:
            return
        if self._leaf_index is None:
            leaf, siblings, self.offset = decode_memory_proof(self._proof, self.offset, MEM_TREE_DEPTH)
        else:
            meet = data_proof_levels(self._leaf_index, leaf_index)
            leaf, below, self.offset = decode_memory_proof(self._proof, self.offset, meet)
            siblings = [*below, self._path[meet], *self._siblings[meet + 1 :]]
        path = path_nodes(leaf_index, leaf, siblings)
        if path[-1] != self._root:
            raise InvalidMemoryProofError(f"the proof of leaf {leaf_index:#x} does not recompute memRoot")
        self._leaf_index, self._siblings, self._path = leaf_index, siblings, path

    def read_u32(self, addr: int) -> int:
        """Return the little-endian word at the aligned ``addr`` (§3.2)."""
        self._prove(addr >> LEAF_SHIFT)
        offset = addr & (LEAF_SIZE - 1)
        return int.from_bytes(self._path[0][offset : offset + 4], "little")

    def write_u32(self, addr: int, value: int) -> None:
        """Store ``value`` at the aligned ``addr`` and recompute the root with the same siblings."""
        leaf_index = addr >> LEAF_SHIFT
        self._prove(leaf_index)
        offset = addr & (LEAF_SIZE - 1)
        leaf = bytearray(self._path[0])
        leaf[offset : offset + 4] = value.to_bytes(4, "little")
        self._path = path_nodes(leaf_index, bytes(leaf), self._siblings)
        self._root = self._path[-1]


def apply_step_proof(state_data: bytes, proof: bytes, oracle: PreimageOracle | None = None) -> bytes:
    """Execute one step from ``state_data`` with ``proof`` as the contract does; return the post-state.

    ``oracle`` plays the contract's ``IPreimageOracle`` together with ``msg.sender`` and
    ``localContext`` (e.g. an :class:`~opml.vm.preimage.OracleView`); only ``preimage_length`` and
    ``preimage_read`` steps ask it. Raises :class:`InvalidStateError` or an :class:`InvalidProofError`
    subclass where the contract reverts with the error of the same name, and
    :class:`~opml.oracle.errors.PreimageNotFoundError` where it reverts with ``PreimageNotLoaded`` /
    ``PartNotLoaded``.
    """
    memory = ProofMemory(state_data[:LEAF_SIZE], proof)
    state = decode_state(state_data, memory)  # type: ignore[arg-type]  # duck-typed memory
    state.stdout = state.stderr = None  # the contract cannot read the bytes of a write
    step(state, oracle)
    if memory.offset != len(proof):
        raise InvalidProofLengthError(
            f"proof has {len(proof) - memory.offset} bytes left over after the step"
        )
    return encode_state(state)
