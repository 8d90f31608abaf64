"""The MIPS programs' side of a run (docs/ml-spec.md §7–§8): their local values, the preimages they
read, their initial VM state, and running them.

    setup = node_program_setup(model, x, k, claim, store)        # the game's phase 2 starts here
    result = run_program(setup)                                  # exit 0: claim valid, 1: invalid

The game derives the same local values on-chain (:func:`node_local_values`), so this module is the
one place that says what the node program starts from. ``model_program_setup`` does the same for the
whole-model program (the single-phase mode).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opml.ml.errors import ProgramNotBuiltError, ProgramRunError
from opml.ml.format import KEY_SIZE, V1_OPS, Model, Op, named_keys
from opml.ml.runner import RunResult, run_model, value_bytes
from opml.oracle.chunk_tree import ChunkTree, DenseChunkTree
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.preimage import ZERO_CALLER, ZERO_CONTEXT, OracleView
from opml.vm.state import VMState

TOOLCHAIN_BUILD = Path(__file__).resolve().parents[3] / "mips-toolchain" / "build"
NODE_PROGRAM = TOOLCHAIN_BUILD / "ml_node"
MODEL_PROGRAM = TOOLCHAIN_BUILD / "ml_model"

# Local identifiers (ml-spec §7.1 and §7.2).
NODE_LOCAL_COMMITMENT = 1
NODE_LOCAL_INDEX = 2
NODE_LOCAL_PREV_STATE = 3
NODE_LOCAL_CLAIM = 4
MODEL_LOCAL_COMMITMENT = 1
MODEL_LOCAL_INPUT_KEY = 2
MODEL_LOCAL_CLAIM = 3

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_ORACLE = 2
EXIT_MALFORMED = 3

ML_MEMORY_BASE = 128 * 1024
"""Code, data, the 4 KiB weight buffer and the stack of either program (ml-spec §7.3)."""
DEFAULT_MAX_STEPS = 20_000_000_000
"""Steps after which :func:`run_program` gives up: far above any model the format allows to run."""

_KEY_LINE = re.compile(rb"^key 0x([0-9a-f]{64})$")


@dataclass(frozen=True)
class ProgramSetup:
    """A MIPS program ready to run: its ELF, initial state, local values and oracle."""

    program: Path
    state: VMState
    """The loaded ELF at step 0 (it holds no input: everything arrives through the oracle)."""
    local_values: dict[int, bytes]
    """``ident → value``, as the game stores them on-chain under its context."""
    oracle: OracleView
    """The store holding every preimage the program reads, with the local values stored for
    ``oracle.caller`` and ``oracle.local_context``."""


@dataclass(frozen=True)
class ProgramResult:
    """How a program run ended."""

    exit_code: int
    steps: int
    stdout: bytes
    stderr: bytes
    touched_pages: int
    """Guest pages held at the end (memory is never freed, so also the peak)."""

    @property
    def keys(self) -> list[bytes]:
        """The keys the program printed, one per ``key 0x…`` line."""
        keys = []
        for line in self.stdout.splitlines():
            match = _KEY_LINE.match(line)
            if match:
                keys.append(bytes.fromhex(match.group(1).decode()))
        return keys

    @property
    def memory_bytes(self) -> int:
        return self.touched_pages * 4096


def _program(path: Path) -> Path:
    if not path.is_file():
        raise ProgramNotBuiltError(f"{path} is not built: run `make -C mips-toolchain` (or `make`)")
    return path


def put_model(store: PreimageStore, model: Model) -> None:
    """Put the manifest and every tensor of ``model`` in ``store`` under their chunk-Merkle keys. The
    tensors of a model read from a file that is still there are put as ranges of that file (no copy:
    a 1B model's weights stay in one file however many agents serve it; the store hashes a range when
    it first serves it); the others are copied, once (a model's tensors match their keys): a model
    built in memory, or one whose file was replaced since it was read (it holds the old bytes)."""
    store.put_chunk_merkle(model.manifest)
    source = model.source
    in_file = source is not None and source.unchanged()
    for key in named_keys(model.nodes):
        if in_file:
            assert source is not None
            store.put_chunk_merkle_range(key, source.path, source.offsets[key], len(model.tensor(key)))
        elif not store.path(key).exists():  # a copy, not a range that may be stale
            store.put_chunk_merkle(model.tensor(key))


def node_kinds(model: Model) -> list[int]:
    """The first node of each kind (op, params, input and output descs): nodes of one kind run the
    same code path of the node program on different bytes, within the same step bound."""
    first: dict[tuple[object, ...], int] = {}
    for k, node in enumerate(model.nodes):
        kind = (node.op, node.params, node.out, *(model.values[v] for v in node.inputs))
        first.setdefault(kind, k)
    return sorted(first.values())


def state_path_preimages(tree: ChunkTree) -> list[bytes]:
    """The keccak-type preimages (64 bytes each) that the node program reads of ``S_{k−1}``, whose
    chunk-Merkle tree over its ``k + 1`` keys is ``tree``, to compute ``S_k`` (ml-spec §7.1):
    ``abi.encode(root, size)``, then the two children of each node on the walk from the root toward
    leaf ``p = k + 1`` (the new key's) while the node holds a leaf below ``p``: at most ``⌈log2(k + 1)⌉``
    nodes, none when ``k + 1`` is a power of two."""
    p = tree.size // KEY_SIZE
    preimages = [tree.root + tree.size.to_bytes(32, "big")]
    level = tree.depth
    while level > 0 and p % (1 << level):
        index = p >> level  # p's ancestor at this level
        preimages.append(tree.node(level - 1, 2 * index) + tree.node(level - 1, 2 * index + 1))
        level -= 1
    return preimages


def put_state(store: PreimageStore, preimage: bytes) -> bytes:
    """Put a state's preimage (its concatenated value keys) in ``store`` under its chunk-Merkle key,
    with the keccak-type preimages the node program reads of it (:func:`state_path_preimages`), so the
    oracle serves them and an agent can reveal them on-chain; return the key."""
    tree = DenseChunkTree(preimage)
    key = store.put_chunk_merkle(tree)
    for data in state_path_preimages(tree):
        store.put_keccak(data)
    return key


def node_local_values(commitment: bytes, k: int, prev_state: bytes, claim: bytes) -> dict[int, bytes]:
    """The node program's local values (ml-spec §7.1): the model commitment, ``k`` (u32 little-endian),
    ``S_{k−1}`` and the claimed ``S_k``."""
    return {
        NODE_LOCAL_COMMITMENT: bytes(commitment),
        NODE_LOCAL_INDEX: struct.pack("<I", k),
        NODE_LOCAL_PREV_STATE: bytes(prev_state),
        NODE_LOCAL_CLAIM: bytes(claim),
    }


def model_local_values(commitment: bytes, input_key: bytes, claim: bytes) -> dict[int, bytes]:
    """The whole-model program's local values (ml-spec §7.2)."""
    return {
        MODEL_LOCAL_COMMITMENT: bytes(commitment),
        MODEL_LOCAL_INPUT_KEY: bytes(input_key),
        MODEL_LOCAL_CLAIM: bytes(claim),
    }


def _setup(
    program: Path, local_values: dict[int, bytes], store: PreimageStore, caller: Any, local_context: bytes
) -> ProgramSetup:
    for ident, value in local_values.items():
        store.put_local(ident, caller, local_context, value)
    oracle = OracleView(store, caller, local_context)
    return ProgramSetup(program, load_elf(program), local_values, oracle)


def node_program_setup(
    model: Model,
    x: Any,
    k: int,
    claim: bytes,
    store: PreimageStore,
    *,
    caller: Any = ZERO_CALLER,
    local_context: bytes = ZERO_CONTEXT,
    run: RunResult | None = None,
) -> ProgramSetup:
    """The node program for node ``k`` of ``model`` on input ``x`` with the claimed ``S_k``.

    Puts in ``store`` what the program reads: the manifest and tensors, ``S_{k−1}``'s preimage (the
    ``k + 1`` value keys) and the keccak-type preimages of its tree that the program reads
    (:func:`put_state`), and the bytes of node ``k``'s input values, all computed by the native
    runner (pass ``run``, a :func:`run_model` result for ``x``, to reuse one).
    """
    if not 0 <= k < len(model.nodes):
        raise IndexError(f"node index {k}: the model has nodes 0 … {len(model.nodes) - 1}")
    program = _program(NODE_PROGRAM)
    run = run_model(model, x) if run is None else run
    put_model(store, model)
    prev = put_state(store, run.state_preimage(k - 1))
    assert prev == run.state(k - 1)
    for v in model.nodes[k].inputs:
        store.put_chunk_merkle(value_bytes(run.values[v], model.values[v]))
    local_values = node_local_values(model.commitment, k, prev, claim)
    return _setup(program, local_values, store, caller, local_context)


def model_program_setup(
    model: Model,
    x: Any,
    claim: bytes,
    store: PreimageStore,
    *,
    caller: Any = ZERO_CALLER,
    local_context: bytes = ZERO_CONTEXT,
) -> ProgramSetup:
    """The whole-model program on input ``x`` with the claimed ``S_{N−1}``; puts the manifest, the
    tensors and the input's bytes in ``store``."""
    program = _program(MODEL_PROGRAM)
    v0 = model.check_input(x)
    input_key = store.put_chunk_merkle(value_bytes(v0, model.input))
    put_model(store, model)
    local_values = model_local_values(model.commitment, input_key, claim)
    return _setup(program, local_values, store, caller, local_context)


def run_program(setup: ProgramSetup, max_steps: int = DEFAULT_MAX_STEPS) -> ProgramResult:
    """Run ``setup`` in the fast executor (which agrees with the reference VM at every step) to its
    exit; :class:`ProgramRunError` if it has not exited after ``max_steps``."""
    from opml.vm.fast import FastVM  # numba is imported only when needed

    vm = FastVM.from_state(setup.state, copy_memory=True, oracle=setup.oracle)
    vm.run(max_steps)
    if not vm.exited:
        raise ProgramRunError(f"{setup.program.name} did not exit within {max_steps} steps")
    out, err = vm.take_output()
    return ProgramResult(vm.exit_code, vm.step, out, err, vm.touched_pages)


def scratch_bytes(model: Model, k: int) -> int:
    """The scratch memory of node ``k``'s version-2 kernel (ml-spec §7.3's table; 0 for the others)."""
    node = model.nodes[k]
    x = model.values[node.inputs[0]]
    op = node.op
    if op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        t, kk = x.shape
        m = node.out.shape[1] if op is Op.QDENSE else node.params[4]
        return 8 * t * m + 4 * t * (kk // 32)
    if op is Op.RMSNORM:
        return 10 * x.shape[1]
    if op in (Op.ROPE, Op.SWIGLU):
        return 8 * x.shape[1]
    if op is Op.ATTENTION:
        return 20 * model.values[node.inputs[1]].shape[0] + 8 * x.shape[1]
    return 0


def node_memory_bound(model: Model, k: int) -> int:
    """ml-spec §7.3: ``128 KiB + Σ bytes of node k's input values + 4·elems(output)`` for the
    version-1 ops, ``128 KiB + Σ bytes of its input values + bytes(output) + scratch(k)`` for the
    version-2 ops."""
    node = model.nodes[k]
    inputs = sum(model.values[v].nbytes for v in node.inputs)
    if node.op in V1_OPS:  # a version-2 reshape of a row-scaled value may have more bytes than 4·elems
        return ML_MEMORY_BASE + inputs + max(4 * node.out.elems, node.out.nbytes)
    return ML_MEMORY_BASE + inputs + node.out.nbytes + scratch_bytes(model, k)


def model_memory_bound(model: Model) -> int:
    """ml-spec §7.3: ``128 KiB + Σ_v bytes(v) + 4·max elems(output)``, plus ``4·max scratch(k)`` (the
    version-2 nodes' shared scratch area, which at most doubles past the largest need)."""
    scratch = max(scratch_bytes(model, k) for k in range(len(model.nodes)))
    values = sum(d.nbytes for d in model.values)
    return ML_MEMORY_BASE + values + 4 * max(n.out.elems for n in model.nodes) + 4 * scratch


__all__ = [
    "EXIT_INVALID",
    "EXIT_MALFORMED",
    "EXIT_ORACLE",
    "EXIT_VALID",
    "KEY_SIZE",
    "MODEL_PROGRAM",
    "NODE_PROGRAM",
    "ProgramResult",
    "ProgramSetup",
    "model_local_values",
    "model_memory_bound",
    "model_program_setup",
    "node_local_values",
    "node_memory_bound",
    "node_program_setup",
    "put_model",
    "put_state",
    "run_program",
    "state_path_preimages",
]
