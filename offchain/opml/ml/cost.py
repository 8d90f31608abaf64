"""The cost bound (docs/ml-spec.md §9): an upper bound on the VM steps of the MIPS programs of
ml-spec §7, computed from the manifest alone.

A dispute runs the node program on one node (multi-phase) or the whole-model program (single-phase);
an honest agent must be able to trace either to its exit. :func:`node_step_bound` bounds the node
program's steps on node ``k`` from the node's op, shapes and params (and ``k``: its state update costs
O(log k)); :func:`model_step_bound` bounds every program a dispute on the model can run, and
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

from opml.ml import blocks
from opml.ml.errors import NodeCostError
from opml.ml.format import KEY_SIZE, V1_OPS, DType, Model, Node, Op, TensorDesc

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
STEPS_STATE_NODE = 1_600
"""Node program, per 64-byte keccak-type preimage of ``S_{k−1}``'s tree it reads to compute ``S_k`` (its
``(root, size)`` or an inner node on the new key's path): select, length, two reads, the walk."""

DENSE_MAC = 6
DENSE_ROW = 64
ROW_BOUND_WEIGHT = 8
ROW_BOUND_ROW = 400
CONV_MAC = 10
CONV_TAP = 27
CONV_ROW = 21
CONV_OUT = 28
CONV_FILTER = 1_400
REQUANTIZE_ELEM = 28
REQUANTIZE_F32_ELEM = 185
"""requantize in mode 2 (the float32 product, ml-spec §4): three int64 roundings, ≈ 145 steps an element."""
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

# Version-2 ops (ml-spec §10.4): measured in the VM (exact steps of the node program's ml_exec_v2, least
# squares and an upper-envelope fit over seeded random nodes of every op), times 1.25, rounded up (§9.3).
QDENSE_MAC_Q4_1 = 5
"""Per multiply-accumulate of a ``q4_1`` block sum: a nibble, an activation load and a ``madd`` (3.6)."""
QDENSE_MAC_Q8_0 = 4
"""Per multiply-accumulate of a ``q8_0`` block sum: two loads and a ``madd`` (3.1)."""
QDENSE_BLOCK = 90
"""Per input row and weight block, besides the 32 MACs: the call, ``D·s + M·Σx`` into the accumulator, and
the block's own decoding (its fp16 scales, checked; charged per row since ``T ≥ 1``, its bytes read are
in ``params``): 153 per q4_1 block and row with 116 in the MACs, plus 41 per block; 124 with 100, plus
24, for q8_0."""
QDENSE_X = 12
"""Per input element of a ``q4_1`` node: the block sums ``Σ_j x`` (9.4)."""
QDENSE_OUT_R16 = 60
"""Per output element: clearing its accumulator and the row quantization (47.4)."""
QDENSE_OUT_INT32 = 68
"""Per output element: clearing its accumulator and the saturating 64-bit shift to int32 (54.1)."""
QDENSE_OUT_ARGMAX = 33
"""Per logit of ``qdense_argmax``: clearing its accumulator and a 64-bit compare (26.4)."""
QDENSE_ROW = 240
"""Per input row: its exponent, the pass over each buffer fill, the output row (≤ 190)."""
MERGE_ROW = 38
"""Per row of ``argmax_merge`` (30)."""
EMBED_ELEM = 70
"""Per output element: ``q·D + M`` and the saturating shift to int32, the block's scales shared (≤ 55.4)."""
EMBED_ROW = 440
"""Per row: the id's check and the row's pieces read (≤ 350)."""
RMSNORM_ELEM = 120
"""Per element: maximum, shift, square-accumulate, ``x'·inv`` (64 bits), rounding, ``·g``, quantize (≤ 95)."""
RMSNORM_ROW = 1_100
"""Per row: an integer square root of a 61-bit number and two 64-bit divisions (≤ 869)."""
ROPE_ELEM = 58
"""Per element: two 16×32-bit products, a 64-bit add and the row quantization (≤ 45.9)."""
ROPE_ROW = 500
"""Per row: its table position read and checked, the quantization's set-up (≤ 400)."""
ATTENTION_MAC = 6
"""Per multiply-accumulate of ``q·k`` and of ``p·v`` (16 or 8 ``madd`` an iteration; 4.5)."""
ATTENTION_SCORE = 310
"""Per (row, head, key): ``dot·mul`` and its variable shift, the exp2 interpolation, ``w·r``, two rounding
shifts, the calls of the two dot products; the key's exponent scan and alignment per row (≤ 245)."""
ATTENTION_HEAD = 215
"""Per (row, head): maximum, sum, one 64-bit division (169)."""
ATTENTION_OUT = 102
"""Per output element: its strided ``p·v`` call and the row quantization (≤ 81.5)."""
ATTENTION_ROW = 940
"""Per query row: the value exponents' maximum and alignments, the row's set-up (≤ 750)."""
SWIGLU_ELEM = 150
"""Per element: the gate's shift to ``2^−16``, the sigmoid interpolation, two products and the row
quantization (≤ 120)."""
QUANTIZE_ELEM = 27
"""``quantize`` per element: a maximum scan and a 32-bit rounding shift (≤ 21.5)."""
QUANTIZE_ROW = 84
"""``quantize`` per row (67)."""
ROW_FIXED = 64
"""Per row of ``swiglu``: its exponents and the quantization's set-up."""
ADD32_ELEM = 29
"""Per element: a saturating add (23)."""
COPY_BYTE = 7
"""concat and slice per output byte (a byte copy, 5.0)."""
EMIT_FIXED = 64
"""emit's comparisons and the one token it writes (fixed, unmeasured: 64 covers a dozen instructions)."""
CONCAT_BLOCK = 32
"""concat per index over ``dims[0 … axis−1]``: two copies' set-up (25)."""
EXP2_TABLE_BYTES = 4 * 1025
SIGMOID_TABLE_BYTES = 4 * 2049


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
    overflow bound and into the output; with the per-row bound the weights and the bias once more, row
    by row)."""
    op, out = node.op, node.out
    has_bias = node.tensor_keys[1] is not None
    if op is Op.DENSE:
        m = out.shape[0]
        w = m * ins[0].elems
        return w + (8 * m if has_bias else 0) + (w + 4 * m if node.params[1] else 0)
    if op is Op.CONV2D:
        oc = out.shape[2]
        w = oc * node.params[1] * node.params[2] * ins[0].shape[2]
        return w + (4 * oc if has_bias else 0) + (w + 4 * oc if node.params[9] else 0)
    if op is Op.LUT:
        return LUT_TABLE_BYTES
    if op is Op.SOFTMAX:
        return SOFTMAX_TABLE_BYTES
    if op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        rows = out.shape[1] if op is Op.QDENSE else node.params[4]
        return rows * _block_row_bytes(node.params[0], ins[0].shape[1])
    if op is Op.EMBEDDING:
        return out.shape[0] * _block_row_bytes(node.params[0], out.shape[1])
    if op is Op.RMSNORM:
        return 2 * ins[0].shape[1]
    if op is Op.ROPE:
        return 4 * out.shape[0] * node.params[0]
    if op is Op.ATTENTION:
        return EXP2_TABLE_BYTES
    if op is Op.SWIGLU:
        return SIGMOID_TABLE_BYTES
    if op is Op.REQUANTIZE and node.tensor_keys[0] is not None:
        return 8 * ins[0].shape[-1]  # the per-channel table, (M0_c, t_c) int32 per channel
    return 0


def _block_row_bytes(wtype: int, k: int) -> int:
    """Bytes of one row of ``k`` weights of a ``q4_1`` (dtype 6) or ``q8_0`` tensor."""
    return (k // blocks.BLOCK) * blocks.block_bytes(wtype == int(DType.Q4_1))


def _row_bound_work(rows: int, k: int) -> int:
    """The per-row overflow bound's pass over W ``[rows, k]`` (dense/conv2d ``bound`` = 1)."""
    return ROW_BOUND_WEIGHT * rows * k + ROW_BOUND_ROW * rows


def op_work(node: Node, ins: Sequence[TensorDesc]) -> int:
    """The bound on the op's kernel (ml-spec §9.2's per-op table), without reading and hashing."""
    op, out, p = node.op, node.out, node.params
    e = out.elems
    x = ins[0]
    if op is Op.DENSE:
        m = out.shape[0]
        return DENSE_MAC * m * x.elems + DENSE_ROW * m + (_row_bound_work(m, x.elems) if p[1] else 0)
    if op is Op.CONV2D:
        kh, kw, c, oc = p[1], p[2], x.shape[2], out.shape[2]
        return (
            CONV_MAC * e * kh * kw * c
            + CONV_TAP * e * kh * kw
            + CONV_ROW * e * kh
            + CONV_OUT * e
            + CONV_FILTER * oc
            + (_row_bound_work(oc, kh * kw * c) if p[9] else 0)
        )
    if op is Op.REQUANTIZE:
        return (REQUANTIZE_F32_ELEM if p[5] == 2 else REQUANTIZE_ELEM) * e
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
    return _op_work_v2(node, ins)


def _op_work_v2(node: Node, ins: Sequence[TensorDesc]) -> int:
    """ml-spec §10.4's work terms."""
    op, out, p = node.op, node.out, node.params
    e = out.elems
    x = ins[0]
    t = x.shape[0]
    if op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        k = x.shape[1]
        rows = out.shape[1] if op is Op.QDENSE else p[4]
        q4_1 = p[0] == int(DType.Q4_1)
        mac = QDENSE_MAC_Q4_1 if q4_1 else QDENSE_MAC_Q8_0
        if op is Op.QDENSE_ARGMAX:
            per_out = QDENSE_OUT_ARGMAX
        else:
            per_out = QDENSE_OUT_R16 if out.dtype is DType.R16 else QDENSE_OUT_INT32
        return (
            mac * t * rows * k
            + QDENSE_BLOCK * t * rows * (k // 32)
            + (QDENSE_X * t * k if q4_1 else 0)
            + per_out * t * rows
            + QDENSE_ROW * t
        )
    if op is Op.ARGMAX_MERGE:
        return MERGE_ROW * t
    if op is Op.EMBEDDING:
        return EMBED_ELEM * e + EMBED_ROW * t
    if op is Op.RMSNORM:
        return RMSNORM_ELEM * e + RMSNORM_ROW * t
    if op is Op.ROPE:
        return ROPE_ELEM * e + ROPE_ROW * t
    if op is Op.ATTENTION:
        hd = p[0]
        nh, keys = x.shape[1] // hd, ins[1].shape[0]
        return (
            ATTENTION_MAC * 2 * t * nh * keys * hd
            + ATTENTION_SCORE * t * nh * keys
            + ATTENTION_HEAD * t * nh
            + ATTENTION_OUT * e
            + ATTENTION_ROW * t
        )
    if op is Op.SWIGLU:
        return SWIGLU_ELEM * e + ROW_FIXED * t
    if op is Op.QUANTIZE:
        return QUANTIZE_ELEM * e + QUANTIZE_ROW * out.rows
    if op is Op.ADD32:
        return ADD32_ELEM * e
    if op is Op.CONCAT:
        outer = 1
        for d in x.shape[: p[0]]:
            outer *= d
        return COPY_BYTE * out.nbytes + CONCAT_BLOCK * outer
    if op is Op.SLICE:
        return COPY_BYTE * out.nbytes
    if op is Op.EMIT:
        return COPY_BYTE * out.nbytes + EMIT_FIXED
    raise AssertionError(op)  # pragma: no cover - Op is closed


def node_work(node: Node, ins: Sequence[TensorDesc]) -> int:
    """What a node costs in either program, wherever its inputs come from: its parameter tensors read,
    its kernel, its output's key."""
    return STEPS_READ_BYTE * param_read_bytes(node, ins) + op_work(node, ins) + hash_steps(node.out.nbytes)


def state_steps(index: int) -> int:
    """The bound on computing ``S_k`` from ``S_{k−1}`` in the node program (``k = index``): with
    ``D = ⌈log2(k + 2)⌉`` the depth of ``S_k``'s tree, ``2·D`` keccak permutations (per level one
    merge and one zero subtree ``Z[level]``, none for the top level's, and the key) and at most
    ``D + 1`` 64-byte preimages read (``(root, size)`` and the inner nodes on the walk)."""
    depth = (index + 1).bit_length()  # ⌈log2(k + 2)⌉
    return STEPS_KECCAK * 2 * depth + STEPS_STATE_NODE * (depth + 1)


def node_bound(index: int, node: Node, ins: Sequence[TensorDesc]) -> int:
    """:func:`node_step_bound` of node ``index`` whose (checked) inputs have descs ``ins``."""
    return (
        STEPS_NODE_BASE
        + STEPS_READ_BYTE * sum(d.nbytes for d in ins)
        + node_work(node, ins)
        + state_steps(index)
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
            f"{where}: its node program may take {bound} VM steps, more than 2^31: {_split_advice(node)}"
        )
    return bound


def _split_advice(node: Node) -> str:
    """How to bring a node under the cap (ml-spec §10.4 for the version-2 ops)."""
    if node.op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        return "split it by weight rows (row0, M) or give it fewer rows (prefill the prompt in chunks)"
    if node.op in (Op.ATTENTION, Op.CONCAT):
        return "the KV cache is too long for one value: use a shorter context or smaller prefill chunks"
    if node.op not in V1_OPS:
        return "give it fewer rows (prefill the prompt in chunks)"
    return "split the node (fewer outputs, a smaller window or filter)"


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
    "state_steps",
]
