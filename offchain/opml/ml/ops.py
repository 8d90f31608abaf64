"""The integer operators of docs/ml-spec.md §4 in numpy, one function per op.

Every function computes exactly the bytes the spec defines, with int64 intermediates. ``dense`` and
``conv2d`` multiply through float64 BLAS (ml-spec §6): every product ``(x − zx)·w`` is an integer of
magnitude ≤ 2^15 and every partial sum stays below 2^31 by the load-time bound, so each float64
partial sum is an exact integer in any summation order and converts back exactly.

Tensors are numpy arrays of the op's dtype. The spatial ops (``conv2d``, pools) take ``[..., H, W, C]``
and the elementwise ops any shape, so a leading batch axis passes through them unchanged;
:func:`dense_batch`, :func:`argmax_batch` are the batch forms of the two ops that flatten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
I64 = np.int64


def _i64(x: Array) -> npt.NDArray[np.int64]:
    return np.asarray(x).astype(I64)


def _f64_centered(x: Array, zx: int) -> npt.NDArray[np.float64]:
    """``x − zx`` as float64 (exact: |x − zx| ≤ 255)."""
    out = np.asarray(x).astype(np.float64)
    if zx:
        out -= zx
    return out


def _accumulate(prod: npt.NDArray[np.float64], bias: Array | None) -> npt.NDArray[np.int32]:
    """The exact integer float64 sums to int32, plus the bias (int64, then int32; bounded at load)."""
    acc = prod.astype(I64)
    if bias is not None:
        acc += _i64(bias)
    return acc.astype(np.int32)


def weights_f64(w: Array) -> npt.NDArray[np.float64]:
    """``W`` as a float64 ``[M, K]`` matrix, transposed to ``[K, M]`` for ``x @ W^T`` (C-contiguous)."""
    w2 = np.asarray(w).reshape(np.shape(w)[0], -1)
    return np.ascontiguousarray(w2.T, dtype=np.float64)


def dense_batch(
    x: Array, w: Array, bias: Array | None, zx: int, *, w_t: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.int32]:
    """``dense`` over a batch: ``x`` is ``[B, ...]`` with ``K`` elements per sample → int32 ``[B, M]``.

    ``w_t`` may pass :func:`weights_f64` of ``w``, computed once.
    """
    wt = weights_f64(w) if w_t is None else w_t
    xs = _f64_centered(np.asarray(x).reshape(np.shape(x)[0], -1), zx)
    return _accumulate(xs @ wt, bias)


def dense(
    x: Array, w: Array, bias: Array | None, zx: int, *, w_t: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.int32]:
    """``y[m] = bias[m] + Σ_k (x[k] − zx)·W[m, k]``; ``x`` any shape (flattened), ``W`` int8 ``[M, K]``."""
    out: npt.NDArray[np.int32] = dense_batch(np.asarray(x).reshape(1, -1), w, bias, zx, w_t=w_t)[0]
    return out


def conv2d(
    x: Array,
    w: Array,
    bias: Array | None,
    zx: int,
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    *,
    w_t: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.int32]:
    """``x`` int8 ``[..., H, W, C]``, ``W`` int8 ``[OC, KH, KW, C]`` → int32 ``[..., OH, OW, OC]``.

    ``pads`` is (top, left, bottom, right); positions outside the input read as ``zx``. A matrix product
    over im2col patches, patch elements in ``(i, j, c)`` order as ``W[oc]`` flattens.
    """
    x = np.asarray(x)
    _, kh, kw, c = np.shape(w)
    sh, sw = strides
    pt, pl, pb, pr = pads
    *lead, h, wd, cx = x.shape
    assert cx == c, "channel mismatch"
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    xs = np.zeros((*lead, h + pt + pb, wd + pl + pr, c), np.float64)  # x − zx, padding → 0
    xs[..., pt : pt + h, pl : pl + wd, :] = _f64_centered(x, zx)
    cols = [
        xs[..., i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = np.stack(cols, axis=-2).reshape(*lead, oh, ow, kh * kw * c)
    wt = weights_f64(w) if w_t is None else w_t
    return _accumulate(patches @ wt, bias)


def requantize(x: Array, m0: int, t: int, zy: int, lo: int, hi: int) -> npt.NDArray[np.int8]:
    """``y = clamp(zy + ((x·M0 + 2^(t−1)) >> t), lo, hi)``: int32 → int8, one rounding half up."""
    v = (_i64(x) * I64(m0) + I64(1 << (t - 1))) >> I64(t)
    return np.clip(v + zy, lo, hi).astype(np.int8)


def add(
    a: Array, b: Array, za: int, ma: int, zb: int, mb: int, t: int, zy: int, lo: int, hi: int
) -> npt.NDArray[np.int8]:
    """``y = clamp(zy + (((a − za)·Ma + (b − zb)·Mb + 2^(t−1)) >> t), lo, hi)``, elementwise."""
    v = ((_i64(a) - za) * I64(ma) + (_i64(b) - zb) * I64(mb) + I64(1 << (t - 1))) >> I64(t)
    return np.clip(v + zy, lo, hi).astype(np.int8)


def relu(x: Array, z: int) -> Array:
    """``y = max(x, z)``, same dtype."""
    x = np.asarray(x)
    return np.maximum(x, np.asarray(z, dtype=x.dtype))


def _windows(x: Array, kernel: tuple[int, int], strides: tuple[int, int]) -> list[Array]:
    """The ``KH·KW`` strided views ``x[..., oh·sh + i, ow·sw + j, :]`` of VALID windows."""
    kh, kw = kernel
    sh, sw = strides
    h, wd = x.shape[-3], x.shape[-2]
    oh = (h - kh) // sh + 1
    ow = (wd - kw) // sw + 1
    return [
        x[..., i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


def maxpool(x: Array, kernel: tuple[int, int], strides: tuple[int, int]) -> npt.NDArray[np.int8]:
    """``y[oh, ow, c] = max_{i, j} x[oh·sh + i, ow·sw + j, c]`` over VALID windows."""
    views = _windows(np.asarray(x), kernel, strides)
    out = views[0].copy()
    for v in views[1:]:
        np.maximum(out, v, out=out)
    return out.astype(np.int8)


def avgpool(x: Array, kernel: tuple[int, int], strides: tuple[int, int]) -> npt.NDArray[np.int8]:
    """``y = (2·s + n) // (2·n)`` (floor), ``s`` the window sum, ``n = KH·KW``: ``s / n`` half up."""
    views = _windows(_i64(x), kernel, strides)
    s = views[0].copy()
    for v in views[1:]:
        s += v
    n = kernel[0] * kernel[1]
    return ((2 * s + n) // (2 * n)).astype(np.int8)


def reshape(x: Array, shape: tuple[int, ...]) -> Array:
    """The same bytes with another shape (row-major)."""
    return np.ascontiguousarray(x).reshape(shape)


def argmax_batch(x: Array) -> npt.NDArray[np.int32]:
    """``argmax`` of each sample of ``[B, ...]`` → int32 ``[B, 1]``."""
    flat = np.asarray(x).reshape(np.shape(x)[0], -1)
    out: npt.NDArray[np.int32] = np.argmax(flat, axis=1).astype(np.int32).reshape(-1, 1)
    return out


def argmax(x: Array) -> npt.NDArray[np.int32]:
    """The smallest flat index of a maximal element, int32 ``[1]`` (numpy's argmax takes the first)."""
    return np.array([int(np.argmax(np.asarray(x).reshape(-1)))], dtype=np.int32)


def lut(x: Array, table: Array) -> npt.NDArray[np.int8]:
    """``y[i] = T[x[i] + 128]``."""
    t = np.asarray(table, dtype=np.int8).reshape(256)
    out: npt.NDArray[np.int8] = t[_i64(x) + 128]
    return out


def softmax(x: Array, table: Array) -> npt.NDArray[np.int8]:
    """Integer softmax over the last axis (ml-spec §4): output scale 1/256, zero point −128.

    ``d = x − max(x)``, ``e = E[d + 255]``, ``S = Σ e``, ``y = clamp(−128 + (256·e + (S >> 1)) // S)``;
    all −128 when ``S = 0``.
    """
    xi = _i64(x)
    e_table = np.asarray(table).astype(I64).reshape(256)
    d = xi - xi.max(axis=-1, keepdims=True)
    e = e_table[d + 255]
    s = e.sum(axis=-1, keepdims=True)
    safe = np.where(s == 0, 1, s)
    q = (256 * e + (s >> 1)) // safe
    y = np.clip(q - 128, -128, 127)
    return np.where(s == 0, -128, y).astype(np.int8)
