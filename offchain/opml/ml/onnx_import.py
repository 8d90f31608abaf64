"""Quantized ONNX graphs as opML models (docs/ml-spec.md §11): ``opml model import model.onnx``.

A graph quantized by onnxruntime with int8 activations and weights, in the QDQ format
(``QuantizeLinear``/``DequantizeLinear`` around each float op) or the QOperator format (``QLinearConv``,
``QLinearMatMul`` on int8 tensors, standard domain), is read as the int8 computation onnxruntime runs for
it, op by op:

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
- ``QLinearConv`` (int32 bias ``B``, implicitly at ``x_scale·w_scale``) and ``QLinearMatMul`` (no bias)
  are the same two ops with the same multiplier; their scales, zero points, weights and bias are
  constants, ``x``'s scale and zero point those its tensor was quantized with, every zero point int8
  and the weights' 0;
- ``MaxPool``, ``Relu``, ``Reshape``/``Flatten`` on an int8 tensor (QOperator), or between a
  ``DequantizeLinear`` and a ``QuantizeLinear`` of the same scale and zero point (QDQ): the op on the
  int8 tensor;
- ``ArgMax`` over the last axis: ``argmax``; the graph's output ``DequantizeLinear``: the model's output
  is the int8 tensor it dequantizes.

opML values are channels last: an ONNX ``[1, C, H, W]`` tensor is our ``(H, W, C)``, and a ``Flatten``
of one is our ``(H·W·C)`` order, so the ``Gemm`` after it takes its weight columns permuted
(:attr:`OnnxModel.layouts` says how each ONNX int8 tensor maps to its value). Anything else (another op or
domain, such as ``com.microsoft``'s ``QGemm``, a float op left in the graph, a dynamic or batched shape,
a scale or zero point that is a graph input, a uint8 tensor, scales along another axis, a nonzero weight
zero point) is an :class:`~opml.ml.errors.OnnxImportError` naming the op and the node; an unsupported op
lists every unsupported node of the graph at once.
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
from opml.ml.onnx_card import OnnxInput, chw_perm

SUPPORTED = (
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
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
    is ONNX's, and ``perm[j]`` is the ONNX (row-major) index of our element ``j`` (``None``: the same).
    A 4-d tensor's value is always ``(H, W, C)`` (``perm`` is :func:`~opml.ml.onnx_card.chw_perm`)."""

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
    input: OnnxInput
    """The float graph input and its quantization (the model's card, :mod:`opml.ml.onnx_card`)."""
    layouts: dict[str, tuple[int, npt.NDArray[np.int64] | None]] = field(default_factory=dict)

    def quantize_input(self, x: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """The model's int8 input for the float graph input ``x``: ``QuantizeLinear`` (half to even,
        saturated), in our layout."""
        return self.input.quantize(x, self.model.input)

    def ours(self, name: str, onnx_value: npt.ArrayLike) -> npt.NDArray[Any]:
        """ONNX's value of the int8 tensor ``name`` in our value's layout (to compare with a run)."""
        index, perm = self.layouts[name]
        flat = np.asarray(onnx_value).reshape(-1)
        flat = flat if perm is None else flat[perm]
        return flat.reshape(self.model.values[index].shape)


def _real_multipliers(
    x_scale: np.float32, w_scale: npt.NDArray[np.float32], y_scale: np.float32
) -> npt.NDArray[np.float32]:
    """onnxruntime's requantization multipliers, ``fl(fl(x_scale·w_scale) / y_scale)``, one per weight
    scale."""
    return ((x_scale * w_scale).astype(np.float32) / y_scale).astype(np.float32)


def _multiplier(real: np.float32, where: str) -> tuple[int, int]:
    """``(M0, t)`` with ``M0·2^−t`` exactly the float32 ``real`` (> 0), ``M0 < 2^24``; below 2^−32,
    ``(1, 62)``: for every int32 accumulator both products are below 1/2 (their float32 roundings at
    most 1/2), so both round to 0 and the output is the zero point either way."""
    if real < np.float32(2.0**-32):
        return 1, 62
    mant, exp = np.frexp(np.float64(real))  # real = mant·2^exp, 0.5 ≤ mant < 1
    m0, t = int(mant * (1 << 24)), 24 - int(exp)
    while m0 % 2 == 0 and t > 1:
        m0, t = m0 // 2, t - 1
    if not 1 <= t <= 62:
        raise OnnxImportError(f"{where}: a requantize multiplier {float(real)!r} is 2^23 or more")
    return m0, t


class _Importer:
    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        # int8 tensors (QOperator's, and QuantizeLinear's outputs), constants, accumulators, float inputs
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

    def _zero(self, name: str, node: Any) -> int:
        zero = self._scalar(name, node)
        if zero.dtype != np.int8:
            raise OnnxImportError(
                f"{_where(node)}: zero point {name!r} of type {zero.dtype}: opML imports int8 graphs"
            )
        return int(zero)

    def _activation(self, name: str, node: Any) -> tuple[_Quant, bool]:
        """The int8 activation ``name`` is (QOperator's int8 tensor, or a QDQ float view of one), and
        whether it is a float view: an int8 op's output is of the same kind as its input."""
        if name in self.dequantized:
            return self.dequantized[name], True
        src = self.tensors.get(name)
        if isinstance(src, _Quant):
            return src, False
        raise OnnxImportError(
            f"{_where(node)}: input {name!r} is not an int8 activation (a float op left in the graph? "
            "quantize it with onnxruntime.quantization)"
        )

    def _put(self, node: Any, quant: _Quant, float_view: bool) -> None:
        """Record ``node``'s output: a float view, or an int8 tensor (whose layout :meth:`OnnxModel.ours`
        knows)."""
        if float_view:
            self.dequantized[node.output[0]] = quant
        else:
            self.tensors[node.output[0]] = quant
            self.layouts[node.output[0]] = (quant.value, quant.perm)

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
                + f"; opML imports {', '.join(SUPPORTED)} (int8 graphs, QDQ or QOperator)"
            )
        inputs = [i for i in self.graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            # QOperator graphs (the onnx backend tests') may feed scales and zero points as inputs
            readers = {i.name: [_where(n) for n in self.graph.node if i.name in n.input][:1] for i in inputs}
            raise OnnxImportError(
                f"the graph has {len(inputs)} inputs: "
                + ", ".join(f"{name!r} (read by {', '.join(r) or 'no node'})" for name, r in readers.items())
                + "; opML takes one, and scales, zero points and weights must be constants"
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
            "QLinearConv": self._qlinear_conv,
            "QLinearMatMul": self._qlinear_matmul,
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
        card = OnnxInput(self.input_name, self.input_dims, float(q.scale), q.zero, q.onnx_shape)
        return OnnxModel(model, card, self.layouts)

    def _quantize(self, node: Any) -> None:
        x, zero = node.input[0], self._zero(node.input[2], node)
        scale = np.float32(self._scalar(node.input[1], node))
        src = self.tensors.get(x)
        if isinstance(src, _Float):  # the graph input: opML's input is this int8 tensor
            shape, perm = _our_shape(src.onnx_shape)
            if self.g is not None:
                raise OnnxImportError(f"{_where(node)}: the graph input is quantized twice")
            self.g = GraphBuilder(int8(*shape), version=VERSION_2)
            quant = self.input_quant = _Quant(0, scale, zero, src.onnx_shape, perm)
        elif isinstance(src, _Acc):
            quant = self._requantize(node, src, scale, zero)
        elif x in self.dequantized:
            quant = self.dequantized[x]
            if (quant.scale, quant.zero) != (scale, zero):
                raise OnnxImportError(
                    f"{_where(node)}: requantizing an int8 tensor to another scale is not supported"
                )
        else:
            raise OnnxImportError(f"{_where(node)}: quantizes {x!r}, which is not an op opML computes")
        self._put(node, quant, float_view=False)

    def _requantize(self, node: Any, acc: _Acc, scale: np.float32, zero: int) -> _Quant:
        """``acc`` at the int8 ``scale``, ``zero``: ``requantize`` in mode 2 with onnxruntime's multiplier
        (:func:`_real_multipliers`), one or one per channel (QDQ and QOperator alike)."""
        real = _real_multipliers(acc.x_scale, acc.w_scale, scale)
        rows = [_multiplier(np.float32(r), _where(node)) for r in real.reshape(-1)]
        lo = zero if acc.relu else -128
        if real.size == 1:
            (m0, t), table = rows[0], None
        else:
            (m0, t), table = (0, 0), np.array(rows, np.int32)
        value = self._builder().requantize(
            acc.value, m0, t, zero, lo, 127, mode=FLOAT32_PRODUCT, channels=table
        )
        return _Quant(value, scale, zero, acc.onnx_shape, acc.perm)

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
        out_axis: int,
    ) -> _Acc:
        """The accumulator ``value`` (``dense``/``conv2d`` of ``x`` and ``w``) once its weights and bias
        are checked: int8 weights at zero point 0 with one scale or one per output channel (the weight's
        axis ``out_axis``), an int32 bias at ``x_scale·w_scale`` with zero point 0."""
        if w.zero.any() or w.q.dtype != np.int8:
            raise OnnxImportError(f"{_where(node)}: weights must be int8 with zero point 0")
        channels = shape[1]  # ONNX's channel axis: Gemm's [1, M], Conv's [1, OC, H, W]
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
        return _Acc(value, x.scale, w.scale, shape, perm)

    def _dense(self, node: Any, x: _Quant, w: _Const, bias: _Const | None, trans_b: bool) -> _Acc:
        """``dense`` of ``x`` and the ``[K, M]`` weights ``w`` (``[M, K]``: ``trans_b``)."""
        wt = w.q if trans_b else w.q.T  # [M, K]
        k = wt.shape[1]
        if len(x.onnx_shape) != 2 or x.onnx_shape[-1] != k:
            raise OnnxImportError(
                f"{_where(node)}: input {list(x.onnx_shape)} does not meet weights of {k} columns"
            )
        if x.perm is not None:  # our flat order is (h, w, c): the columns follow it
            wt = wt[:, x.perm]
        b = None if bias is None else bias.q.astype(np.int32)
        value = self._builder().dense(x.value, wt.astype(np.int8), b, zx=x.zero)
        return self._linear(node, x, w, bias, value, (1, wt.shape[0]), None, 0 if trans_b else 1)

    def _conv2d(self, node: Any, x: _Quant, w: _Const, bias: _Const | None) -> _Acc:
        """``conv2d`` of the ``[1, C, H, W]`` ``x`` and the ``[OC, C, KH, KW]`` weights ``w``."""
        attrs = _attrs(node)
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise OnnxImportError(f"{_where(node)}: {node.op_type} with groups or dilations is not supported")
        if len(x.onnx_shape) != 4:
            raise OnnxImportError(f"{_where(node)}: input {list(x.onnx_shape)} is not [1, C, H, W]")
        pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
        strides = tuple(attrs.get("strides", [1, 1]))
        _, _, h, wd = x.onnx_shape
        _, _, kh, kw = w.q.shape
        # ONNX floors the output size; opML's windows tile exactly: the rows and columns ONNX leaves
        # unread come off the bottom and right padding (an input crop is not supported)
        pb -= (h + pt + pb - kh) % strides[0]
        pr -= (wd + pl + pr - kw) % strides[1]
        if pb < 0 or pr < 0:
            raise OnnxImportError(
                f"{_where(node)}: the last {'rows' if pb < 0 else 'columns'} of the input are outside every "
                "window (floored output size): cropping the input is not supported"
            )
        b = None if bias is None else bias.q.astype(np.int32)
        wq = np.transpose(w.q, (0, 2, 3, 1)).astype(np.int8)  # OCHW → OHWC
        value = self._builder().conv2d(x.value, wq, b, zx=x.zero, strides=strides, pads=(pt, pl, pb, pr))
        oh, ow, oc = self._builder().values[value].shape
        return self._linear(node, x, w, bias, value, (1, oc, oh, ow), chw_perm(oc, oh, ow), 0)

    def _gemm(self, node: Any) -> None:
        attrs = _attrs(node)
        x = self._float_view(node.input[0], node)
        w = self._const(node.input[1], node)
        if node.op_type == "Gemm" and (
            attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
        ):
            raise OnnxImportError(f"{_where(node)}: Gemm with transA, alpha or beta ≠ 1 is not supported")
        trans_b = node.op_type == "Gemm" and bool(attrs.get("transB", 0))
        bias = self._const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        self.tensors[node.output[0]] = self._dense(node, x, w, bias, trans_b)

    def _conv(self, node: Any) -> None:
        x = self._float_view(node.input[0], node)
        w = self._const(node.input[1], node)
        bias = self._const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        self.tensors[node.output[0]] = self._conv2d(node, x, w, bias)

    # QOperator: QLinearConv(x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero[, B]) and
    # QLinearMatMul (the same, no B) on int8 tensors; scales and zero points are constants.

    def _qlinear_operands(self, node: Any, w_axis: int) -> tuple[_Quant, _Const]:
        x, float_view = self._activation(node.input[0], node)
        if float_view:
            raise OnnxImportError(f"{_where(node)}: input {node.input[0]!r} is a float tensor, not int8")
        if (np.float32(self._scalar(node.input[1], node)), self._zero(node.input[2], node)) != (
            x.scale,
            x.zero,
        ):
            raise OnnxImportError(
                f"{_where(node)}: x's scale and zero point are not those {node.input[0]!r} was quantized with"
            )
        q, scale, zero = (self.inits.get(name) for name in node.input[3:6])
        if q is None or scale is None or zero is None:
            raise OnnxImportError(
                f"{_where(node)}: the weights, their scales and zero points must be constants"
            )
        return x, _Const(q, np.asarray(scale, np.float32).reshape(-1), zero.reshape(-1), w_axis)

    def _silenced(self, node: Any, x: _Quant, w: _Const, bias: _Const | None) -> tuple[_Const, _Const | None]:
        """``w`` and ``bias`` with the output channels whose multiplier is below 2^−32 zeroed: such a
        channel outputs its zero point whatever its accumulator (:func:`_multiplier`), and onnxruntime's
        may wrap in int32 (a dead unit quantized per channel gets a weight scale near 1e−22 and a bias
        clipped at −2^31), which opML's overflow bound refuses."""
        real = _real_multipliers(x.scale, w.scale, np.float32(self._scalar(node.input[6], node)))
        silent = np.broadcast_to(real < np.float32(2.0**-32), (w.q.shape[w.axis],))
        if not silent.any():
            return w, bias
        q = np.moveaxis(w.q.copy(), w.axis, 0)
        q[silent] = 0
        w = _Const(np.moveaxis(q, 0, w.axis), w.scale, w.zero, w.axis)
        if bias is not None:
            bias = _Const(np.where(silent, 0, bias.q).astype(np.int32), bias.scale, bias.zero, bias.axis)
        return w, bias

    def _qlinear_output(self, node: Any, acc: _Acc) -> None:
        scale = np.float32(self._scalar(node.input[6], node))
        zero = self._zero(node.input[7], node)
        self._put(node, self._requantize(node, acc, scale, zero), float_view=False)

    def _qlinear_conv(self, node: Any) -> None:
        x, w = self._qlinear_operands(node, w_axis=0)
        bias = None
        if len(node.input) > 8 and node.input[8]:
            b = self.inits.get(node.input[8])
            if b is None:
                raise OnnxImportError(f"{_where(node)}: the bias {node.input[8]!r} must be a constant")
            # QOperator's bias has no scale of its own: it is x_scale·w_scale by definition
            bias = _Const(b, (x.scale * w.scale).astype(np.float32), np.zeros(1, np.int32), 0)
        w, bias = self._silenced(node, x, w, bias)
        self._qlinear_output(node, self._conv2d(node, x, w, bias))

    def _qlinear_matmul(self, node: Any) -> None:
        x, w = self._qlinear_operands(node, w_axis=1)
        w, _ = self._silenced(node, x, w, None)
        self._qlinear_output(node, self._dense(node, x, w, None, trans_b=False))

    def _relu(self, node: Any) -> None:
        src = self.tensors.get(node.input[0])
        if isinstance(src, _Acc):
            self.tensors[node.output[0]] = _Acc(
                src.value, src.x_scale, src.w_scale, src.onnx_shape, src.perm, relu=True
            )
            return
        x, float_view = self._activation(node.input[0], node)
        value = self._builder().relu(x.value, x.zero)
        self._put(node, _Quant(value, x.scale, x.zero, x.onnx_shape, x.perm), float_view)

    def _maxpool(self, node: Any) -> None:
        attrs = _attrs(node)
        x, float_view = self._activation(node.input[0], node)
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
        self._put(node, _Quant(value, x.scale, x.zero, (1, c, oh, ow), chw_perm(c, oh, ow)), float_view)

    def _reshape(self, node: Any) -> None:
        src = self.tensors.get(node.input[0])
        if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
            raise OnnxImportError(f"{_where(node)}: Flatten is imported with axis = 1 only")
        shape_in = (
            src.onnx_shape if isinstance(src, _Float) else self._activation(node.input[0], node)[0].onnx_shape
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
        x, float_view = self._activation(node.input[0], node)
        # Our reshape keeps our element order, whose ONNX indices are x.perm, and ONNX's keeps the
        # row-major order: the result is x.perm again, which a 4-d result must have as its (H, W, C)
        # order (any other result may carry it: a Flatten's, for the next dense's columns).
        shape, want = _our_shape(out_shape)
        if want is not None and not np.array_equal(_order(x.perm, want.size), want):
            raise OnnxImportError(
                f"{_where(node)}: reshape {list(shape_in)} → {list(out_shape)} is not supported"
            )
        value = self._builder().reshape(x.value, shape)
        self._put(node, _Quant(value, x.scale, x.zero, out_shape, x.perm), float_view)

    def _argmax(self, node: Any) -> None:
        attrs = _attrs(node)
        x, _ = self._activation(node.input[0], node)
        if (
            attrs.get("axis", 0) not in (-1, len(x.onnx_shape) - 1)
            or x.onnx_shape[0] != 1
            or len(x.onnx_shape) != 2
            or not np.array_equal(_order(x.perm, x.onnx_shape[1]), np.arange(x.onnx_shape[1]))
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
        return (h, w, c), chw_perm(c, h, w)
    return tuple(onnx_shape[1:]) or (1,), None


def _order(perm: npt.NDArray[np.int64] | None, n: int) -> npt.NDArray[np.int64]:
    """``perm`` of ``n`` elements, ``None`` being the identity."""
    return np.arange(n, dtype=np.int64) if perm is None else perm


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
