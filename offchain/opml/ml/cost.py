"""The cost bound (docs/ml-spec.md §9): an upper bound on the VM steps of the MIPS programs of
ml-spec §7, computed from the manifest alone.

A dispute runs the node program on one node (multi-phase) or the whole-model program (single-phase);
an honest agent must be able to trace either to its exit. :func:`node_step_bound` bounds the node
program's steps on node ``k`` from the node's op, shapes and params (and ``k``, which sets the size of
the state it hashes); :func:`model_step_bound` bounds every program a dispute on the model can run, and
is the number a model registers on-chain as its ``maxSteps``. The reader rejects a node whose bound is
above :data:`MAX_NODE_STEPS`, or a model whose bound is above :data:`MAX_MODEL_STEPS`
(:class:`~opml.ml.errors.NodeCostError`), and the C programs (``mips-toolchain/ml/cost.c``) compute the
same integers and exit 3 before the node's work, so even a model registered by hand has bounded runs.

Every coefficient is a cost measured in the VM (steps per unit, the largest seen over seeded random
shapes of every op and extreme values), multiplied by 1.25 and rounded up (ml-spec §9.3). Integer
arithmetic only: the C side gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from opml.ml.errors import NodeCostError
from opml.ml.format import KEY_SIZE, Model, Node, Op, TensorDesc

MAX_NODE_STEPS = 1 << 31
"""The format's cap on :func:`node_step_bound`: a node above it must be split."""
MAX_MODEL_STEPS = 1 << 44
"""The format's cap on :func:`model_step_bound`."""

CHUNK = 32
"""Bytes of a chunk-Merkle leaf (oracle-spec §1.3)."""
WEIGHT_PIECE = 4096
"""The C programs' weight buffer: dense weights stream through it in pieces of this size."""

# --- coefficients (steps per unit; ml-spec §9.2) ---------------------------------------------------

STEPS_NODE_BASE = 20_000
"""Node program, fixed: local values, the manifest header, node ``k``'s record, the records and keys of
up to two inputs, the op checks, a table's check, printing the key, comparing the claim."""
STEPS_MODEL_BASE = 10_000
"""Whole-model program, fixed: local values, the manifest header, the input's key."""
STEPS_MODEL_NODE = 10_000
"""Whole-model program, per node: its record, the op checks, its output buffer, printing its key."""
STEPS_READ_BYTE = 4
"""Per byte read through the oracle (input values, the state's keys, weights, biases, tables)."""
STEPS_KECCAK = 36_000
"""Per keccak-256 permutation of a chunk-Merkle key (the 64-byte absorb included)."""
STEPS_HASH_BYTE = 14
"""Per byte passed to a chunk-Merkle key (copying it into chunks and leaves)."""

DENSE_MAC = 6
DENSE_ROW = 64
CONV_MAC = 10
CONV_TAP = 27
CONV_ROW = 21
CONV_OUT = 28
CONV_FILTER = 1_400
REQUANTIZE_ELEM = 28
ADD_ELEM = 50
RELU_ELEM = 7
MAXPOOL_WIN = 8
MAXPOOL_ROW = 12
MAXPOOL_OUT = 35
AVGPOOL_WIN = 13
AVGPOOL_ROW = 12
AVGPOOL_OUT = 220
RESHAPE_BYTE = 6
ARGMAX_ELEM = 8
LUT_ELEM = 8
SOFTMAX_ELEM = 46

LUT_TABLE_BYTES = 256
SOFTMAX_TABLE_BYTES = 4 * 256


def keccak_bound(nbytes: int) -> int:
    """An upper bound on the keccak permutations of the chunk-Merkle key of ``nbytes`` bytes:
    ``max(1, n + 2·d)`` for ``n = ⌈nbytes/32⌉`` chunks and depth ``d = ⌈log2 n⌉`` (the exact count is
    ``n − popcount(n)`` merges, at most ``2·d`` on the walk to the root, and the key's own)."""
    n = -(-nbytes // CHUNK)
    d = 0
    while (1 << d) < n:
        d += 1
    return max(1, n + 2 * d)


def hash_steps(nbytes: int) -> int:
    """The bound on computing the chunk-Merkle key of ``nbytes`` bytes in the VM."""
    return STEPS_KECCAK * keccak_bound(nbytes) + STEPS_HASH_BYTE * nbytes


def param_read_bytes(node: Node, ins: Sequence[TensorDesc]) -> int:
    """Bytes of the node's parameter tensors the programs read (a dense bias is read twice: for the
    overflow bound and into the output)."""
    op, out = node.op, node.out
    has_bias = node.tensor_keys[1] is not None
    if op is Op.DENSE:
        m = out.shape[0]
        return m * ins[0].elems + (8 * m if has_bias else 0)
    if op is Op.CONV2D:
        oc = out.shape[2]
        return oc * node.params[1] * node.params[2] * ins[0].shape[2] + (4 * oc if has_bias else 0)
    if op is Op.LUT:
        return LUT_TABLE_BYTES
    if op is Op.SOFTMAX:
        return SOFTMAX_TABLE_BYTES
    return 0


def op_work(node: Node, ins: Sequence[TensorDesc]) -> int:
    """The bound on the op's kernel (ml-spec §9.2's per-op table), without reading and hashing."""
    op, out, p = node.op, node.out, node.params
    e = out.elems
    x = ins[0]
    if op is Op.DENSE:
        m = out.shape[0]
        return DENSE_MAC * m * x.elems + DENSE_ROW * m
    if op is Op.CONV2D:
        kh, kw, c = p[1], p[2], x.shape[2]
        return (
            CONV_MAC * e * kh * kw * c
            + CONV_TAP * e * kh * kw
            + CONV_ROW * e * kh
            + CONV_OUT * e
            + CONV_FILTER * out.shape[2]
        )
    if op is Op.REQUANTIZE:
        return REQUANTIZE_ELEM * e
    if op is Op.ADD:
        return ADD_ELEM * e
    if op is Op.RELU:
        return RELU_ELEM * e
    if op is Op.MAXPOOL:
        kh, kw = p[0], p[1]
        return MAXPOOL_WIN * e * kh * kw + MAXPOOL_ROW * e * kh + MAXPOOL_OUT * e
    if op is Op.AVGPOOL:
        kh, kw = p[0], p[1]
        return AVGPOOL_WIN * e * kh * kw + AVGPOOL_ROW * e * kh + AVGPOOL_OUT * e
    if op is Op.RESHAPE:
        return RESHAPE_BYTE * out.nbytes
    if op is Op.ARGMAX:
        return ARGMAX_ELEM * x.elems
    if op is Op.LUT:
        return LUT_ELEM * e
    if op is Op.SOFTMAX:
        return SOFTMAX_ELEM * e
    raise AssertionError(op)  # pragma: no cover - Op is closed


def node_work(node: Node, ins: Sequence[TensorDesc]) -> int:
    """What a node costs in either program, wherever its inputs come from: its parameter tensors read,
    its kernel, its output's key."""
    return STEPS_READ_BYTE * param_read_bytes(node, ins) + op_work(node, ins) + hash_steps(node.out.nbytes)


def node_bound(index: int, node: Node, ins: Sequence[TensorDesc]) -> int:
    """:func:`node_step_bound` of node ``index`` whose (checked) inputs have descs ``ins``."""
    state_keys = KEY_SIZE * (index + 1)  # S_{k−1}'s preimage: k + 1 keys
    return (
        STEPS_NODE_BASE
        + STEPS_READ_BYTE * (sum(d.nbytes for d in ins) + state_keys)
        + node_work(node, ins)
        + hash_steps(state_keys + KEY_SIZE)
    )


def model_program_bound_of(values: Sequence[TensorDesc], nodes: Sequence[Node]) -> int:
    """The bound on the whole-model program of a checked graph (``values`` the descs of values
    ``0 … N``)."""
    total = STEPS_MODEL_BASE + STEPS_READ_BYTE * values[0].nbytes + hash_steps(KEY_SIZE * (len(nodes) + 1))
    for node in nodes:
        total += STEPS_MODEL_NODE + node_work(node, [values[v] for v in node.inputs])
    return total


def node_step_bound(model: Model, k: int) -> int:
    """An upper bound on the VM steps of the node program (``phase.NODE_PROGRAM``, run as
    ``node_program_setup`` sets it up) on node ``k`` of ``model``, whatever the input and the claim."""
    node = model.nodes[k]
    return node_bound(k, node, [model.values[v] for v in node.inputs])


def model_program_bound(model: Model) -> int:
    """An upper bound on the VM steps of the whole-model program (``phase.MODEL_PROGRAM``) on
    ``model``, whatever the input and the claim."""
    return model_program_bound_of(model.values, model.nodes)


def model_step_bound(model: Model) -> int:
    """The bound on the steps of any program a dispute on ``model`` can run: the largest
    :func:`node_step_bound` and :func:`model_program_bound`. A model registers it as ``maxSteps``."""
    return max(model_program_bound(model), *(node_step_bound(model, k) for k in range(len(model.nodes))))


def check_node_cost(index: int, node: Node, ins: Sequence[TensorDesc], where: str) -> int:
    """:func:`node_bound`, or :class:`NodeCostError` when it is above :data:`MAX_NODE_STEPS`."""
    bound = node_bound(index, node, ins)
    if bound > MAX_NODE_STEPS:
        raise NodeCostError(
            f"{where}: its node program may take {bound} VM steps, more than 2^31: "
            "split the node (fewer outputs, a smaller window or filter)"
        )
    return bound


def check_model_cost(values: Sequence[TensorDesc], nodes: Sequence[Node]) -> int:
    """:func:`model_program_bound_of`, or :class:`NodeCostError` when it is above
    :data:`MAX_MODEL_STEPS`."""
    bound = model_program_bound_of(values, nodes)
    if bound > MAX_MODEL_STEPS:
        raise NodeCostError(
            f"the whole-model program may take {bound} VM steps, more than 2^44: "
            "split the model into smaller models"
        )
    return bound


__all__ = [
    "MAX_MODEL_STEPS",
    "MAX_NODE_STEPS",
    "check_model_cost",
    "check_node_cost",
    "hash_steps",
    "keccak_bound",
    "model_program_bound",
    "model_step_bound",
    "node_bound",
    "node_step_bound",
    "node_work",
    "op_work",
    "param_read_bytes",
]
