"""The float → int8 exporter: a float layer stack to a :class:`~opml.ml.format.Model`.

Quantization scheme (per tensor; ``real = scale · (q − zero_point)``):

- **weights**: symmetric, ``scale_w = max|W| / 127``, ``q = clip(rint(W / scale_w), −127, 127)``
  (zero point 0; −128 is never used, so ``|w| ≤ 127``).
- **activations**: asymmetric int8 over the calibrated range ``[lo, hi]`` (widened to contain 0):
  ``scale = (hi − lo) / 255``, ``zero_point = clip(rint(−128 − lo / scale), −128, 127)``. A ReLU output
  has ``lo = 0``, so its zero point is −128 and the ReLU is fused into ``requantize`` as ``lo = zy``.
- **bias**: int32, ``rint(b / (scale_x · scale_w))``, the accumulator's scale.
- **requantize multiplier** ``M = scale_x · scale_w / scale_y`` becomes ``(M0, t)`` by an
  integer-exact rule (:func:`quantize_multiplier`): the float64 scales are exact binary fractions, so
  ``M`` is an exact :class:`~fractions.Fraction`; ``t`` is the largest shift in ``[1, 62]`` with
  ``M0 = ⌊M · 2^t + 1/2⌋ ≤ 2^31 − 1``, computed in rational arithmetic, never in floating point.
  The same scales thus give the same ``(M0, t)`` on every machine.
- **softmax table**: ``E[j] = ⌊2^16 · exp(s · (j − 255)) + 1/2⌋`` for input scale ``s``
  (:func:`softmax_table`); ``E[255] = 2^16`` exactly.

Layers (:class:`Dense`, :class:`Conv2D`, :class:`MaxPool`, :class:`Flatten`) use the channels-last
layout of the format: images ``[H, W, C]``, conv weights ``[OC, KH, KW, C]``, dense weights ``[M, K]``.
:func:`float_forward` is the float model; :func:`export` calibrates on sample inputs and emits
``dense/conv2d → requantize`` per layer (the last layer's int32 logits go to ``argmax``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.format import INT32_MAX, DType, GraphBuilder, Model, TensorDesc

F64 = npt.NDArray[np.float64]


def quantize_multiplier(real: Fraction | float) -> tuple[int, int]:
    """``(M0, t)`` with ``M0 / 2^t`` nearest to ``real`` at the largest ``t ∈ [1, 62]`` such that
    ``M0 = ⌊real · 2^t + 1/2⌋ ≤ 2^31 − 1`` (exact rational arithmetic). Raises ``ValueError`` when no
    ``t`` gives ``1 ≤ M0 ≤ 2^31 − 1`` (``real`` ≥ 2^30 or below 2^−63)."""
    m = Fraction(real)
    if m <= 0:
        raise ValueError(f"a requantize multiplier must be positive, got {real}")
    for t in range(62, 0, -1):
        m0 = math.floor(m * (1 << t) + Fraction(1, 2))
        if m0 <= INT32_MAX:
            if m0 < 1:
                raise ValueError(f"multiplier {float(m):.3g} is below 2^-63")
            return m0, t
    raise ValueError(f"multiplier {float(m):.3g} needs t < 1")


def quantize_weights(w: F64) -> tuple[npt.NDArray[np.int8], float]:
    """Symmetric per-tensor int8 weights ``(q, scale)``."""
    peak = float(np.max(np.abs(w)))
    scale = peak / 127 if peak > 0 else 1.0
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """``(scale, zero_point)`` of an int8 activation over ``[lo, hi]`` (widened to contain 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        return 1.0, -128
    scale = (hi - lo) / 255
    zero = int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zero


def quantize_bias(b: F64, scale: float) -> npt.NDArray[np.int32]:
    q = np.rint(np.asarray(b, np.float64) / scale)
    out: npt.NDArray[np.int32] = np.clip(q, -(1 << 31), INT32_MAX).astype(np.int32)
    return out


def softmax_table(scale: float) -> npt.NDArray[np.int32]:
    """``E[j] = ⌊2^16 · exp(scale · (j − 255)) + 1/2⌋`` for ``j = 0 … 255``."""
    j = np.arange(256, dtype=np.float64)
    table: npt.NDArray[np.int32] = np.floor(65536.0 * np.exp(scale * (j - 255)) + 0.5).astype(np.int32)
    return table


# --- float layers ---------------------------------------------------------------------------------


@dataclass
class Dense:
    w: F64  # [M, K]
    b: F64  # [M]
    relu: bool = True


@dataclass
class Conv2D:
    w: F64  # [OC, KH, KW, C]
    b: F64  # [OC]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    relu: bool = True


@dataclass
class MaxPool:
    kernel: tuple[int, int]
    strides: tuple[int, int]


@dataclass
class Flatten:
    pass


Layer = Dense | Conv2D | MaxPool | Flatten


def conv2d_f64(x: F64, w: F64, strides: tuple[int, int], pads: tuple[int, int, int, int]) -> F64:
    """Float cross-correlation of ``x [B, H, W, C]`` with ``w [OC, KH, KW, C]`` → ``[B, OH, OW, OC]``."""
    _, kh, kw, c = w.shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (xp.shape[1] - kh) // sh + 1
    ow = (xp.shape[2] - kw) // sw + 1
    cols = [
        xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = np.stack(cols, axis=-2).reshape(x.shape[0], oh, ow, kh * kw * c)
    out: F64 = patches @ w.reshape(w.shape[0], -1).T
    return out


def maxpool_f64(x: F64, kernel: tuple[int, int], strides: tuple[int, int]) -> F64:
    (kh, kw), (sh, sw) = kernel, strides
    oh = (x.shape[1] - kh) // sh + 1
    ow = (x.shape[2] - kw) // sw + 1
    views = [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    out: F64 = np.max(np.stack(views), axis=0)
    return out


def layer_f64(layer: Layer, x: F64) -> F64:
    """One float layer over a batch."""
    if isinstance(layer, Dense):
        y: F64 = x.reshape(x.shape[0], -1) @ layer.w.T + layer.b
        return np.maximum(y, 0) if layer.relu else y
    if isinstance(layer, Conv2D):
        y = conv2d_f64(x, layer.w, layer.strides, layer.pads) + layer.b
        return np.maximum(y, 0) if layer.relu else y
    if isinstance(layer, MaxPool):
        return maxpool_f64(x, layer.kernel, layer.strides)
    return x.reshape(x.shape[0], -1)


def float_forward(layers: Sequence[Layer], x: F64) -> list[F64]:
    """Every layer's float output over a batch ``x`` (the input first)."""
    outs = [np.asarray(x, np.float64)]
    for layer in layers:
        outs.append(layer_f64(layer, outs[-1]))
    return outs


# --- export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputQuant:
    """How a float input is quantized: ``q = clip(rint(x / scale) + zero_point, −128, 127)``."""

    scale: float
    zero_point: int

    def quantize(self, x: npt.ArrayLike) -> npt.NDArray[np.int8]:
        q = np.rint(np.asarray(x, np.float64) / self.scale) + self.zero_point
        out: npt.NDArray[np.int8] = np.clip(q, -128, 127).astype(np.int8)
        return out


def export(
    layers: Sequence[Layer], input_shape: tuple[int, ...], input_quant: InputQuant, calibration: Any
) -> Model:
    """Quantize a float layer stack ending in a :class:`Dense` without ReLU into a model whose output is
    the argmax of its int32 logits. ``calibration`` is a float input batch ``[B, *input_shape]`` whose
    per-layer float ranges set the activation scales."""
    if not layers or not isinstance(layers[-1], Dense) or layers[-1].relu:
        raise ValueError("the last layer must be a Dense layer without ReLU (its logits go to argmax)")
    outs = float_forward(layers, np.asarray(calibration, np.float64))
    g = GraphBuilder(TensorDesc(DType.INT8, tuple(input_shape)))
    v, scale, zero = 0, input_quant.scale, input_quant.zero_point
    for n, layer in enumerate(layers):
        last = n == len(layers) - 1
        if isinstance(layer, Dense | Conv2D):
            wq, sw = quantize_weights(layer.w)
            acc_scale = scale * sw
            bq = quantize_bias(layer.b, acc_scale)
            if isinstance(layer, Dense):
                v = g.dense(v, wq, bq, zx=zero)
            else:
                v = g.conv2d(v, wq, bq, zx=zero, strides=layer.strides, pads=layer.pads)
            if last:
                break
            out = outs[n + 1]
            scale, zero = activation_qparams(float(out.min()), float(out.max()))
            m0, t = quantize_multiplier(Fraction(acc_scale) / Fraction(scale))
            v = g.requantize(v, m0, t, zero, lo=zero if layer.relu else -128, hi=127)
        elif isinstance(layer, MaxPool):
            v = g.maxpool(v, layer.kernel, layer.strides)
        else:
            v = g.reshape(v, [g.values[v].elems])
    g.argmax(v)
    return g.build()


def logits_node(model: Model) -> int:
    """Value number of the int32 logits an :func:`export`-ed model takes the argmax of."""
    return model.nodes[-1].inputs[0]


__all__ = [
    "Conv2D",
    "Dense",
    "Flatten",
    "InputQuant",
    "MaxPool",
    "activation_qparams",
    "export",
    "float_forward",
    "quantize_bias",
    "quantize_multiplier",
    "quantize_weights",
    "softmax_table",
]
