"""Quantized ONNX graphs as opML models (docs/ml-spec.md §11): ``opml model import model.onnx``.

A graph quantized by onnxruntime in the QDQ format (``QuantizeLinear``/``DequantizeLinear`` around each
float op) is read as the int8 computation onnxruntime runs for it, op by op:

- the float input, through shape-only ops (``Reshape``, ``Flatten``), into its first ``QuantizeLinear``:
  that int8 tensor is the model's input (:meth:`OnnxModel.quantize_input` quantizes a float input as
  ONNX does, half to even);
- ``DequantizeLinear`` of an initializer is a constant: int8 weights (zero point 0, one scale) or an
  int32 bias (scale ``x_scale·w_scale``, zero point 0), with one scale or one per output channel;
- ``Gemm`` (``transB = 1``, ``alpha = beta = 1``) or ``MatMul`` (no bias), and ``Conv``, on
  dequantized activations and constants, into a ``QuantizeLinear``: ``dense``/``conv2d`` (int32
  accumulators ``Σ (x − zx)·w + b``), then ``requantize`` in mode 2 (onnxruntime's arithmetic: the
  product rounded to float32, then half to even) with the float32 multiplier
  ``x_scale·w_scale/y_scale`` written exactly as ``M0·2^−t`` (per channel: a table of them); a
  ``Relu`` before the ``QuantizeLinear`` (or one the quantizer folded) is the clamp at ``y_zero_point``;
- ``MaxPool``, ``Relu``, ``Reshape``/``Flatten`` between a ``DequantizeLinear`` and a
  ``QuantizeLinear`` of the same scale and zero point: the op on the int8 tensor;
- ``ArgMax`` over the last axis: ``argmax``; the graph's output ``DequantizeLinear``: the model's output
  is the int8 tensor it dequantizes.

opML values are channels last: an ONNX ``[1, C, H, W]`` tensor is our ``(H, W, C)``, and a ``Flatten``
of one is our ``(H·W·C)`` order, so the ``Gemm`` after it takes its weight columns permuted
(:attr:`OnnxModel.layouts` says how each ONNX tensor maps to its value). Anything else (another op, a
float op left in the graph, a dynamic or batched shape, scales along another axis, a nonzero weight
zero point) is an :class:`~opml.ml.errors.OnnxImportError` naming the op and the node; an
unsupported op lists every unsupported node of the graph at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.errors import ModelFormatError, OnnxImportError, UnsupportedOnnxOpError
from opml.ml.format import VERSION_2, GraphBuilder, Model, int8

SUPPORTED = (
    "QuantizeLinear",
    "DequantizeLinear",
    "Gemm",
    "MatMul",
    "Conv",
    "Relu",
    "MaxPool",
    "Reshape",
    "Flatten",
    "ArgMax",
)
FLOAT32_PRODUCT = 2
"""``requantize``'s rounding mode of onnxruntime: the product rounded to float32, then half to even."""


@dataclass(frozen=True)
class _Quant:
    """An int8 activation: opML value ``value`` holding ONNX's tensor at ``scale``, ``zero``; ``onnx_shape``
    is ONNX's, and ``perm[j]`` is the ONNX (row-major) index of our element ``j`` (``None``: the same)."""

    value: int
    scale: np.float32
    zero: int
    onnx_shape: tuple[int, ...]
    perm: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class _Const:
    """A dequantized initializer: its integers, its float32 scales (one, or one per index of ``axis``)
    and zero points."""

    q: npt.NDArray[Any]
    scale: npt.NDArray[np.float32]
    zero: npt.NDArray[Any]
    axis: int


@dataclass(frozen=True)
class _Acc:
    """An int32 accumulator at ``x_scale·w_scale`` awaiting its ``QuantizeLinear`` (``relu``: clamp)."""

    value: int
    x_scale: np.float32
    w_scale: npt.NDArray[np.float32]
    """One scale, or one per output channel (our last axis)."""
    onnx_shape: tuple[int, ...]
    perm: npt.NDArray[np.int64] | None
    relu: bool = False


@dataclass(frozen=True)
class _Float:
    """A float tensor that is only a reshaped graph input (before its first ``QuantizeLinear``)."""

    onnx_shape: tuple[int, ...]


@dataclass
class OnnxModel:
    """An imported graph: the model, how to quantize its float input, and where each ONNX int8
    activation is (value index and permutation from ONNX's row-major order to ours)."""

    model: Model
    input_name: str
    input_shape: tuple[int, ...]
    """ONNX's shape of the float graph input."""
    input_scale: float
    input_zero: int
    input_perm: npt.NDArray[np.int64] | None
    layouts: dict[str, tuple[int, npt.NDArray[np.int64] | None]] = field(default_factory=dict)

    def quantize_input(self, x: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """The model's int8 input for the float graph input ``x``: ``QuantizeLinear`` (half to even,
        saturated), in our layout."""
        q = np.rint(np.asarray(x, np.float32) / np.float32(self.input_scale)) + self.input_zero
        flat = np.clip(q, -128, 127).astype(np.int8).reshape(-1)
        flat = flat if self.input_perm is None else flat[self.input_perm]
        out: npt.NDArray[np.int8] = flat.reshape(self.model.input.shape)
        return out

    def ours(self, name: str, onnx_value: npt.ArrayLike) -> npt.NDArray[Any]:
        """ONNX's value of the int8 tensor ``name`` in our value's layout (to compare with a run)."""
        index, perm = self.layouts[name]
        flat = np.asarray(onnx_value).reshape(-1)
        flat = flat if perm is None else flat[perm]
        return flat.reshape(self.model.values[index].shape)


def _multiplier(real: np.float32) -> tuple[int, int]:
    """``(M0, t)`` with ``M0·2^−t`` exactly the float32 ``real`` (> 0), ``M0 < 2^24``."""
    mant, exp = np.frexp(np.float64(real))  # real = mant·2^exp, 0.5 ≤ mant < 1
    m0, t = int(mant * (1 << 24)), 24 - int(exp)
    while m0 % 2 == 0 and t > 1:
        m0, t = m0 // 2, t - 1
    if not 1 <= t <= 62:
        raise OnnxImportError(f"a requantize multiplier {float(real)!r} is outside 2^−62 … 2^23")
    return m0, t


def _chw_perm(c: int, h: int, w: int) -> npt.NDArray[np.int64]:
    """ONNX's row-major index (``[C, H, W]``) of each element of our ``(H, W, C)`` order."""
    return np.arange(c * h * w, dtype=np.int64).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


class _Importer:
    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.tensors: dict[str, _Quant | _Const | _Acc | _Float] = {}
        self.dequantized: dict[str, _Quant] = {}  # DQ outputs that are an activation's float view
        self.g: GraphBuilder | None = None
        self.input_quant: _Quant | None = None
        self.layouts: dict[str, tuple[int, npt.NDArray[np.int64] | None]] = {}
        self.output: int | None = None

    # --- helpers ---------------------------------------------------------------------------

    def _scalar(self, name: str, node: Any) -> Any:
        value = self.inits.get(name)
        if value is None or value.size != 1:
            raise OnnxImportError(
                f"{_where(node)}: {name!r} must be a constant scalar (per-tensor scale/zero point)"
            )
        return value.reshape(())

    def _float_view(self, name: str, node: Any) -> _Quant:
        quant = self.dequantized.get(name)
        if quant is None:
            raise OnnxImportError(
                f"{_where(node)}: input {name!r} is not a dequantized int8 activation (a float op left in "
                "the graph? quantize it with onnxruntime.quantization in the QDQ format)"
            )
        return quant

    def _const(self, name: str, node: Any) -> _Const:
        const = self.tensors.get(name)
        if not isinstance(const, _Const):
            raise OnnxImportError(f"{_where(node)}: {name!r} must be a dequantized constant (weights, bias)")
        return const

    def _builder(self) -> GraphBuilder:
        assert self.g is not None, "no QuantizeLinear of the graph input yet"
        return self.g

    # --- ops ---------------------------------------------------------------------------------

    def run(self) -> OnnxModel:
        unsupported = [n for n in self.graph.node if n.op_type not in SUPPORTED]
        if unsupported:
            raise UnsupportedOnnxOpError(
                "unsupported ONNX ops: "
                + ", ".join(f"{n.op_type} ({n.name or n.output[0]})" for n in unsupported)
                + f"; opML imports {', '.join(SUPPORTED)} (QDQ int8 graphs)"
            )
        inputs = [i for i in self.graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            raise OnnxImportError(
                f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}: opML takes one"
            )
        (graph_input,) = inputs
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else -1 for d in graph_input.type.tensor_type.shape.dim
        )
        if not dims or any(d <= 0 for d in dims) or dims[0] != 1:
            raise OnnxImportError(
                f"input {graph_input.name!r} has shape {list(dims)}: opML takes one static input of batch 1"
            )
        self.tensors[graph_input.name] = _Float(dims)
        self.input_name, self.input_dims = graph_input.name, dims
        ops: dict[str, Callable[[Any], None]] = {
            "QuantizeLinear": self._quantize,
            "DequantizeLinear": self._dequantize,
            "Gemm": self._gemm,
            "MatMul": self._gemm,
            "Conv": self._conv,
            "Relu": self._relu,
            "MaxPool": self._maxpool,
            "Reshape": self._reshape,
            "Flatten": self._reshape,
            "ArgMax": self._argmax,
        }
        origin: list[str] = []  # the ONNX node each of our nodes comes from
        for node in self.graph.node:
            ops[node.op_type](node)
            if self.g is not None:
                origin += [_where(node)] * (len(self.g.nodes) - len(origin))
        (out,) = self.graph.output
        last = self.tensors.get(out.name)
        if self.output is None:
            quant = self.dequantized.get(out.name) or (last if isinstance(last, _Quant) else None)
            if quant is None:
                raise OnnxImportError(
                    f"output {out.name!r} is not an int8 activation dequantized (or an ArgMax)"
                )
            self.output = quant.value
        g = self._builder()
        if self.output != len(g.nodes):
            raise OnnxImportError(f"output {out.name!r} is not the last op's value")
        q = self.input_quant
        assert q is not None
        try:
            model = g.build()
        except ModelFormatError as exc:  # a rule only the whole model checks, e.g. a dense bound
            named = re.match(r"node (\d+) ", str(exc))  # the format's errors start "node k (op)"
            k = int(named.group(1)) if named else len(origin)
            where = origin[k] if k < len(origin) else "the graph"
            raise OnnxImportError(f"{where}: {exc}") from None
        return OnnxModel(
            model, self.input_name, self.input_dims, float(q.scale), q.zero, q.perm, self.layouts
        )

    def _quantize(self, node: Any) -> None:
        x, scale, zero = node.input[0], self._scalar(node.input[1], node), self._scalar(node.input[2], node)
        if zero.dtype != np.int8:
            raise OnnxImportError(
                f"{_where(node)}: zero point of type {zero.dtype}: opML imports int8 graphs"
            )
        scale, zero = np.float32(scale), int(zero)
        src = self.tensors.get(x)
        if isinstance(src, _Float):  # the graph input: opML's input is this int8 tensor
            shape, perm = _our_shape(src.onnx_shape)
            if self.g is not None:
                raise OnnxImportError(f"{_where(node)}: the graph input is quantized twice")
            self.g = GraphBuilder(int8(*shape), version=VERSION_2)
            quant = self.input_quant = _Quant(0, scale, zero, src.onnx_shape, perm)
        elif isinstance(src, _Acc):
            # onnxruntime's multiplier: fl(fl(x_scale·w_scale) / y_scale), per channel or not
            real = ((src.x_scale * src.w_scale).astype(np.float32) / scale).astype(np.float32)
            rows = [_multiplier(np.float32(r)) for r in real.reshape(-1)]
            lo = zero if src.relu else -128
            g = self._builder()
            if real.size == 1:
                (m0, t), table = rows[0], None
            else:
                (m0, t), table = (0, 0), np.array(rows, np.int32)
            value = g.requantize(src.value, m0, t, zero, lo, 127, mode=FLOAT32_PRODUCT, channels=table)
            quant = _Quant(value, scale, zero, src.onnx_shape, src.perm)
        elif x in self.dequantized:
            quant = self.dequantized[x]
            if (quant.scale, quant.zero) != (scale, zero):
                raise OnnxImportError(
                    f"{_where(node)}: requantizing an int8 tensor to another scale is not supported"
                )
        else:
            raise OnnxImportError(f"{_where(node)}: quantizes {x!r}, which is not an op opML computes")
        self.tensors[node.output[0]] = quant
        self.layouts[node.output[0]] = (quant.value, quant.perm)

    def _dequantize(self, node: Any) -> None:
        q = node.input[0]
        if q in self.inits:
            scale = np.asarray(self.inits[node.input[1]], np.float32).reshape(-1)
            zero = np.asarray(self.inits[node.input[2]] if len(node.input) > 2 else 0).reshape(-1)
            axis = int(_attrs(node).get("axis", 1))
            self.tensors[node.output[0]] = _Const(self.inits[q], scale, zero, axis)
            return
        act_scale = np.float32(self._scalar(node.input[1], node))
        act_zero = int(self._scalar(node.input[2], node)) if len(node.input) > 2 else 0
        src = self.tensors.get(q)
        if not isinstance(src, _Quant) or (src.scale, src.zero) != (act_scale, act_zero):
            raise OnnxImportError(
                f"{_where(node)}: dequantizes {q!r} with other parameters than it was quantized with"
            )
        self.dequantized[node.output[0]] = src

    def _linear(
        self,
        node: Any,
        x: _Quant,
        w: _Const,
        bias: _Const | None,
        value: int,
        shape: tuple[int, ...],
        perm: npt.NDArray[np.int64] | None,
    ) -> None:
        if w.zero.any() or w.q.dtype != np.int8:
            raise OnnxImportError(f"{_where(node)}: weights must be int8 with zero point 0")
        channels = shape[1]  # ONNX's channel axis: Gemm's [1, M], Conv's [1, OC, H, W]
        out_axis = 1 if node.op_type == "MatMul" else 0
        if w.scale.size != 1 and (w.scale.size != channels or w.axis != out_axis):
            raise OnnxImportError(
                f"{_where(node)}: {w.scale.size} weight scales on axis {w.axis}: opML takes one, or one per "
                "output channel"
            )
        if bias is not None:
            want = (x.scale * w.scale).astype(np.float32)
            if (
                bias.q.dtype != np.int32
                or bias.zero.any()
                or bias.scale.size != w.scale.size
                or not np.allclose(bias.scale, want, rtol=1e-6)
            ):
                raise OnnxImportError(
                    f"{_where(node)}: the bias must be int32 at x_scale·w_scale, zero point 0"
                )
        self.tensors[node.output[0]] = _Acc(value, x.scale, w.scale, shape, perm)

    def _gemm(self, node: Any) -> None:
        attrs = _attrs(node)
        x = self._float_view(node.input[0], node)
        w = self._const(node.input[1], node)
        if node.op_type == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise OnnxImportError(f"{_where(node)}: Gemm with transA, alpha or beta ≠ 1 is not supported")
            wt = w.q if attrs.get("transB", 0) else w.q.T  # [M, K]
        else:
            wt = w.q.T
        k = wt.shape[1]
        if x.perm is not None:  # our flat order is (h, w, c): the columns follow it
            wt = wt[:, x.perm]
        bias = self._const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        b = None if bias is None else bias.q.astype(np.int32)
        value = self._builder().dense(x.value, wt.astype(np.int8), b, zx=x.zero)
        if x.onnx_shape[-1] != k:
            raise OnnxImportError(
                f"{_where(node)}: input {list(x.onnx_shape)} does not meet weights of {k} columns"
            )
        self._linear(node, x, w, bias, value, (1, wt.shape[0]), None)

    def _conv(self, node: Any) -> None:
        attrs = _attrs(node)
        x = self._float_view(node.input[0], node)
        w = self._const(node.input[1], node)
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise OnnxImportError(f"{_where(node)}: Conv with groups or dilations is not supported")
        pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
        strides = tuple(attrs.get("strides", [1, 1]))
        bias = self._const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        b = None if bias is None else bias.q.astype(np.int32)
        wq = np.transpose(w.q, (0, 2, 3, 1)).astype(np.int8)  # OCHW → OHWC
        value = self._builder().conv2d(x.value, wq, b, zx=x.zero, strides=strides, pads=(pt, pl, pb, pr))
        oh, ow, oc = self._builder().values[value].shape
        self._linear(node, x, w, bias, value, (1, oc, oh, ow), _chw_perm(oc, oh, ow))

    def _relu(self, node: Any) -> None:
        src = self.tensors.get(node.input[0])
        if isinstance(src, _Acc):
            self.tensors[node.output[0]] = _Acc(
                src.value, src.x_scale, src.w_scale, src.onnx_shape, src.perm, relu=True
            )
            return
        x = self._float_view(node.input[0], node)
        value = self._builder().relu(x.value, x.zero)
        self.dequantized[node.output[0]] = _Quant(value, x.scale, x.zero, x.onnx_shape, x.perm)

    def _maxpool(self, node: Any) -> None:
        attrs = _attrs(node)
        x = self._float_view(node.input[0], node)
        if (
            any(attrs.get("pads", [0]))
            or attrs.get("ceil_mode", 0)
            or any(d != 1 for d in attrs.get("dilations", [1, 1]))
        ):
            raise OnnxImportError(
                f"{_where(node)}: MaxPool with pads, ceil_mode or dilations is not supported"
            )
        kernel = tuple(attrs["kernel_shape"])
        strides = tuple(attrs.get("strides", [1, 1]))
        value = self._builder().maxpool(x.value, kernel, strides)
        oh, ow, c = self._builder().values[value].shape
        self.dequantized[node.output[0]] = _Quant(
            value, x.scale, x.zero, (1, c, oh, ow), _chw_perm(c, oh, ow)
        )

    def _reshape(self, node: Any) -> None:
        src = self.tensors.get(node.input[0])
        if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
            raise OnnxImportError(f"{_where(node)}: Flatten is imported with axis = 1 only")
        shape_in = (
            src.onnx_shape if isinstance(src, _Float) else self._float_view(node.input[0], node).onnx_shape
        )
        out_shape: tuple[int, ...]
        if node.op_type == "Flatten":
            out_shape = (shape_in[0], int(np.prod(shape_in[1:])))
        else:
            target = self.inits.get(node.input[1])
            if target is None:
                raise OnnxImportError(f"{_where(node)}: a Reshape's shape must be a constant")
            out_shape = tuple(int(d) for d in np.empty(shape_in).reshape(*target.tolist()).shape)
        if isinstance(src, _Float):
            if len(shape_in) == 4 and len(out_shape) != 4:
                raise OnnxImportError(
                    f"{_where(node)}: flattening an image input is not supported: quantize it first"
                )
            self.tensors[node.output[0]] = _Float(out_shape)
            return
        x = self._float_view(node.input[0], node)
        perm = x.perm
        if len(shape_in) == 4 and len(out_shape) == 2:
            _, c, h, w = shape_in
            perm = _chw_perm(c, h, w)
        elif len(shape_in) != len(out_shape) or perm is not None:
            raise OnnxImportError(
                f"{_where(node)}: reshape {list(shape_in)} → {list(out_shape)} is not supported"
            )
        shape, _ = _our_shape(out_shape)
        value = self._builder().reshape(x.value, shape)
        self.dequantized[node.output[0]] = _Quant(value, x.scale, x.zero, out_shape, perm)

    def _argmax(self, node: Any) -> None:
        attrs = _attrs(node)
        x = self._float_view(node.input[0], node)
        if (
            attrs.get("axis", 0) not in (-1, len(x.onnx_shape) - 1)
            or x.onnx_shape[0] != 1
            or len(x.onnx_shape) != 2
        ):
            raise OnnxImportError(
                f"{_where(node)}: ArgMax is imported over the last axis of a [1, N] tensor only"
            )
        if attrs.get("select_last_index", 0):
            raise OnnxImportError(f"{_where(node)}: ArgMax with select_last_index is not supported")
        self.output = self._builder().argmax(x.value)
        self.tensors[node.output[0]] = _Float((1,))


def _our_shape(onnx_shape: tuple[int, ...]) -> tuple[tuple[int, ...], npt.NDArray[np.int64] | None]:
    """Our value shape of ONNX's batch-1 ``onnx_shape`` and the permutation from ONNX's order."""
    if len(onnx_shape) == 4:
        _, c, h, w = onnx_shape
        return (h, w, c), _chw_perm(c, h, w)
    return tuple(onnx_shape[1:]) or (1,), None


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _where(node: Any) -> str:
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def import_onnx(path: str | Path) -> OnnxModel:
    """The opML model of the quantized ONNX graph at ``path`` (see the module docstring)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError … for a file that is not ONNX
        raise OnnxImportError(f"{path}: not an ONNX model ({exc})") from None
    opsets = {o.domain: o.version for o in model.opset_import}
    if set(opsets) - {"", "ai.onnx"}:
        raise UnsupportedOnnxOpError(
            f"{path}: ops of the domains {sorted(set(opsets) - {'', 'ai.onnx'})} are not supported"
        )
    return _Importer(model.graph).run()
