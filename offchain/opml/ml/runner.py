"""The native runner (docs/ml-spec.md §5–§6): every value, its key, and the states ``S_i`` of a run.

    result = run_model(model, x)
    result.output, result.keys[v], result.states[i + 1]   # S_i, i = −1 … N−1

:func:`run_batch` runs a batch of inputs through the same operators (leading batch axis), returning
the output values only; it is the path for accuracy figures and benchmarks, and gives the same bytes
per sample as :func:`run_model`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml import blocks, ops
from opml.ml.errors import InvalidInputError
from opml.ml.format import V1_OPS, DType, Model, Op, TensorDesc, check_value
from opml.oracle.chunk_tree import chunk_merkle_keys, prefix_keys

Array = npt.NDArray[Any]
_V2_OPS = frozenset(Op) - V1_OPS


@dataclass(frozen=True)
class RunResult:
    """A run of a model on one input."""

    values: tuple[Array, ...]
    """Values ``0 … N``: the input, then each node's output (arrays of the value's dtype and shape)."""
    keys: tuple[bytes, ...]
    """``key(v)`` for values ``0 … N``: the chunk-Merkle key of each value's bytes."""
    states: tuple[bytes, ...]
    """``S_{−1} … S_{N−1}``: ``states[i + 1] = chunkMerkleKey(keys[0] ‖ … ‖ keys[i + 1])``."""

    @property
    def output(self) -> Array:
        return self.values[-1]

    @property
    def output_key(self) -> bytes:
        return self.keys[-1]

    def state(self, i: int) -> bytes:
        """``S_i`` for ``i = −1 … N−1``."""
        if not -1 <= i < len(self.states) - 1:
            raise IndexError(f"no state S_{i}: a run has S_-1 … S_{len(self.states) - 2}")
        return self.states[i + 1]

    def state_preimage(self, i: int) -> bytes:
        """The ``32·(i + 2)`` bytes whose chunk-Merkle key is ``S_i``."""
        return b"".join(self.keys[: i + 2])


def value_bytes(value: Array, desc: TensorDesc) -> bytes:
    """A value's tensor bytes (row-major, little-endian, the dtype of ``desc``)."""
    return np.ascontiguousarray(value, dtype=desc.np_dtype).tobytes()


def _w_t(model: Model, index: int) -> npt.NDArray[np.float64]:
    """Node ``index``'s weights as the float64 ``[K, M]`` matrix of its matrix product, cached."""
    cache_key = ("w_t", index)
    cached = model._cache.get(cache_key)
    if cached is None:
        w = model.param(index, 0)
        assert w is not None
        cached = model._cache[cache_key] = ops.weights_f64(w)
    assert isinstance(cached, np.ndarray)
    return cached


def _block_rows(model: Model, index: int, rows: Any) -> blocks.BlockRows:
    """Rows ``rows`` of node ``index``'s block tensor as integers at the node's ``F``."""
    node = model.nodes[index]
    key = node.tensor_keys[0]
    assert key is not None
    k = model.values[node.inputs[0]].shape[1] if node.op is not Op.EMBEDDING else node.out.shape[1]
    is_q4_1 = node.params[0] == DType.Q4_1
    return blocks.decode_rows(model.tensors[key], is_q4_1, k, rows, node.params[1], f"node {index}")


def _q_weights(model: Model, index: int, row0: int, m: int) -> ops.QWeights:
    """Weight rows ``row0 … row0 + m − 1`` of node ``index`` for :func:`ops.qdense_acc`, cached by how
    they are read: tensor, wtype, row length ``K``, ``F`` and rows (every decoding step of a generation
    graph reads the same matrices; the same bytes read another way are other weights). The cache holds
    the blocks as a view of the model's tensor bytes and their int32 scales: 4 (``q8_0``) or 8
    (``q4_1``) bytes a block beside the tensor itself."""
    node = model.nodes[index]
    k = model.values[node.inputs[0]].shape[1]
    cache_key = ("q_weights", node.tensor_keys[0], node.params[0], k, node.params[1], row0, m)
    cached = model._cache.get(cache_key)
    if cached is None:
        key = node.tensor_keys[0]
        assert key is not None
        is_q4_1 = node.params[0] == DType.Q4_1
        rows = slice(row0, row0 + m)
        w = ops.QWeights.read(model.tensors[key], is_q4_1, k, rows, node.params[1], f"node {index}")
        cached = model._cache[cache_key] = w
    assert isinstance(cached, ops.QWeights)
    return cached


def _apply_v2(model: Model, index: int, inputs: Sequence[Array]) -> Array:
    """Node ``index`` whose op is one of ml-spec §10 (no batch axis)."""
    node = model.nodes[index]
    p, op, x = node.p, node.op, inputs[0]
    if op is Op.QDENSE:
        m = node.out.shape[1]
        r = p[4] if node.out.dtype is DType.INT32 else None
        return ops.qdense(x, _q_weights(model, index, p[3], m), p[1], r)
    if op is Op.QDENSE_ARGMAX:
        return ops.qdense_argmax(x, _q_weights(model, index, p[3], p[4]), p[3])
    if op is Op.ARGMAX_MERGE:
        return ops.argmax_merge(x, inputs[1])
    if op is Op.EMBEDDING:
        return ops.embedding(x, lambda rows: _block_rows(model, index, rows), p[2], p[1], p[3])
    if op is Op.QUANTIZE:
        return ops.quantize(x, node.out.dtype is DType.R8, p[0])
    if op is Op.ADD32:
        return ops.add32(x, inputs[1])
    if op is Op.CONCAT:
        return ops.concat(x, inputs[1], p[0])
    if op is Op.SLICE:
        return ops.slice_rows(x, p[0], node.out.shape[0])
    if op is Op.EMIT:
        return ops.emit(x, inputs[1], p[0])
    table = model.param(index, 0)  # read only here: a tensor view per call
    assert table is not None
    if op is Op.RMSNORM:
        return ops.rmsnorm(x, table, p[0], p[1])
    if op is Op.ROPE:
        return ops.rope(x, table[p[1] : p[1] + node.out.shape[0]], p[0])
    if op is Op.ATTENTION:
        return ops.attention(x, inputs[1], table, *p)
    if op is Op.SWIGLU:
        return ops.swiglu(x, inputs[1], table)
    raise AssertionError(op)  # pragma: no cover - Op is closed


def apply_node(model: Model, index: int, inputs: Sequence[Array], *, batch: bool = False) -> Array:
    """Node ``index`` of ``model`` on its input values (with a leading batch axis when ``batch``; the ops
    of ml-spec §10 run without one)."""
    node = model.nodes[index]
    p = node.p
    x = inputs[0]
    op = node.op
    result: Array
    if op in _V2_OPS and batch:
        raise InvalidInputError(f"node {index} ({op.name.lower()}): run_batch runs version-1 ops only")
    if op in _V2_OPS:
        result = _apply_v2(model, index, inputs)
    elif op is Op.DENSE:
        w, bias = model.param(index, 0), model.param(index, 1)
        assert w is not None
        fn = ops.dense_batch if batch else ops.dense
        result = fn(x, w, bias, p[0], w_t=_w_t(model, index))
    elif op is Op.CONV2D:
        w, bias = model.param(index, 0), model.param(index, 1)
        assert w is not None
        zx, _, _, sh, sw, pt, pl, pb, pr, _ = p  # the bound is a load-time rule
        result = ops.conv2d(x, w, bias, zx, (sh, sw), (pt, pl, pb, pr), w_t=_w_t(model, index))
    elif op is Op.REQUANTIZE:
        table = model.param(index, 0)  # per-channel (M0_c, t_c), or None
        if table is None:
            result = ops.requantize(x, *p)
        else:
            result = ops.requantize_channels(x, table, p[2], p[3], p[4], p[5])
    elif op is Op.ADD:
        result = ops.add(x, inputs[1], *p)
    elif op is Op.RELU:
        result = ops.relu(x, p[0])
    elif op is Op.MAXPOOL:
        result = ops.maxpool(x, (p[0], p[1]), (p[2], p[3]))
    elif op is Op.AVGPOOL:
        result = ops.avgpool(x, (p[0], p[1]), (p[2], p[3]))
    elif op is Op.RESHAPE:
        shape = node.out.np_shape
        result = ops.reshape(x, (x.shape[0], *shape) if batch else shape)
    elif op is Op.ARGMAX:
        result = ops.argmax_batch(x) if batch else ops.argmax(x)
    elif op is Op.LUT:
        table = model.param(index, 0)
        assert table is not None
        result = ops.lut(x, table)
    elif op is Op.SOFTMAX:
        table = model.param(index, 0)
        assert table is not None
        result = ops.softmax(x, table)
    else:  # pragma: no cover - Op is closed
        raise AssertionError(op)
    shape, dtype = _out_desc(model, index)
    want = ((x.shape[0],) if batch else ()) + shape
    assert result.shape == want and result.dtype == dtype, (index, result.shape, want)
    return result


def _out_desc(model: Model, index: int) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Node ``index``'s output shape and dtype as numpy has them, cached (a row dtype is built anew
    each time it is asked for)."""
    cache_key = ("out_desc", index)
    cached = model._cache.get(cache_key)
    if cached is None:
        cached = model._cache[cache_key] = (model.nodes[index].out.np_shape, model.nodes[index].out.np_dtype)
    assert isinstance(cached, tuple)
    return cached


NodeDone = Callable[[int, Array], None]
"""Called with each node's index and output as the run computes it (progress, streaming)."""


def run_model(model: Model, x: Any, on_node: NodeDone | None = None) -> RunResult:
    """Run ``model`` on the input ``x`` (an array of the input's shape whose values fit its dtype)."""
    return run_from(model, [model.check_input(x)], 0, on_node)


def run_from(model: Model, values: Sequence[Array], start: int, on_node: NodeDone | None = None) -> RunResult:
    """The run whose values ``0 … start`` are ``values[: start + 1]`` (taken as they are): nodes
    ``start … N−1`` computed from them, then every key and state."""
    values = list(values[: start + 1])
    for i in range(start, len(model.nodes)):
        values.append(apply_node(model, i, [values[r] for r in model.nodes[i].inputs]))
        if on_node is not None:
            on_node(i, values[-1])
    keys = tuple(chunk_merkle_keys([value_bytes(v, d) for v, d in zip(values, model.values, strict=True)]))
    # S_i is the key of keys[: i + 2]: every prefix at once, O(N log N) hashes (ml-spec §5).
    states = tuple(prefix_keys(keys))
    return RunResult(tuple(values), keys, states)


def run_batch(model: Model, xs: Any, *, keep: bool = False) -> Array | list[Array]:
    """Run ``model`` on a batch ``xs`` of shape ``[B, *input_shape]``; return the outputs ``[B, ...]``
    (with ``keep``: every value ``0 … N``, each with the batch axis)."""
    arr = np.asarray(xs)
    if arr.ndim != model.input.rank + 1:
        raise InvalidInputError(f"a batch has shape [B, {', '.join(map(str, model.input.shape))}]")
    b = arr.shape[0]
    desc = TensorDesc(model.input.dtype, (b, *model.input.shape))
    v0 = check_value(arr, desc, "input batch")
    last_use = {r: i for i, n in enumerate(model.nodes) for r in n.inputs}
    values: list[Array] = [v0]
    for i, node in enumerate(model.nodes):
        values.append(apply_node(model, i, [values[r] for r in node.inputs], batch=True))
        if not keep:
            for r in node.inputs:
                if last_use[r] == i:
                    values[r] = values[r][:0]  # no later node reads it
    return values if keep else values[-1]


def read_npy(path: Path) -> Array:
    """The array of the ``.npy`` file ``path``; not one is an :class:`InvalidInputError`."""
    try:
        value: Array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise InvalidInputError(f"{path.name}: not a numpy .npy array ({exc})") from None
    return value


def load_input(path: str | Path, desc: TensorDesc) -> Array:
    """An input tensor from a file: ``.npy`` (an integer array of the shape), ``.json`` (nested lists of
    ints), or anything else as the raw tensor bytes (exactly ``desc.nbytes``, row-major, little-endian).
    Anything else is an :class:`InvalidInputError`; a file that cannot be read is an ``OSError``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        value: Any = read_npy(path)
    elif suffix == ".json":
        try:
            value = np.array(json.loads(path.read_text()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{path.name}: not a JSON array of integers ({exc})") from None
        if value.dtype == object or value.dtype.kind not in "iu":
            raise InvalidInputError(f"{path.name}: not a JSON array of integers of shape {desc}")
    else:
        data = path.read_bytes()
        if len(data) != desc.nbytes:
            raise InvalidInputError(f"{path.name}: {len(data)} bytes, the input {desc} has {desc.nbytes}")
        value = np.frombuffer(data, dtype=desc.np_dtype).reshape(desc.np_shape)
    return check_value(value, desc, path.name)
