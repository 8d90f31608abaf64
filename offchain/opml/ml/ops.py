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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml import qkernels
from opml.ml.blocks import Q4_1_BYTES, Q8_0_BYTES, BlockRows, block_scales, row_blocks
from opml.ml.format import TRANSCRIPT_HEADER

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


def _bitlen(u: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The bit length of each ``0 ≤ u < 2^63`` (``bitlen(0) = 0``), exactly (no float rounding)."""
    return np.searchsorted(_POW2, u, side="right").astype(np.int64)


_POW2 = np.left_shift(I64(1), np.arange(63, dtype=np.int64))


def _rne(v: npt.NDArray[np.int64], k: Any) -> npt.NDArray[np.int64]:
    """``v / 2^k`` rounded half to even, ``(v + 2^(k−1) − 1 + ((v >> k) & 1)) >> k``; ``v`` at ``k = 0``."""
    k = np.asarray(k, dtype=np.int64)
    k1 = np.maximum(k, 1)
    r = (v + (np.left_shift(I64(1), k1 - 1) - 1) + ((v >> k1) & I64(1))) >> k1
    return np.where(k == 0, v, r)


def _rne24(v: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(q, s)`` with ``q·2^s`` = ``v`` rounded to 24 significant bits, half to even (float32's
    rounding of an integer): ``s = max(0, bitlen(|v|) − 24)``, ``q = rne(v / 2^s)`` (``|q| ≤ 2^24``)."""
    s = np.maximum(_bitlen(np.abs(v)) - 24, 0)
    return _rne(v, s), s


def _float32_product(x: Array, m0: Any, t: Any) -> npt.NDArray[np.int64]:
    """Mode 2: ``round_half_even(fl(fl(x)·r))``, ``r = M0·2^−t`` (``M0 < 2^24``: exact in float32), in
    integers: ``fl(x) = a·2^s1``, ``fl(a·M0) = q·2^s2``, then ``q·2^(s1 + s2 − t)`` rounded half to even."""
    a, s1 = _rne24(_i64(x))
    q, s2 = _rne24(a * np.asarray(m0, dtype=np.int64))
    d = np.asarray(t, dtype=np.int64) - (s1 + s2)
    return np.where(d > 0, _rne(q, np.maximum(d, 0)), np.left_shift(q, np.maximum(-d, 0)))


def requantize(x: Array, m0: int, t: int, zy: int, lo: int, hi: int, mode: int = 0) -> npt.NDArray[np.int8]:
    """``y = clamp(zy + round(v / 2^t), lo, hi)`` with ``v = x·M0``: int32 → int8, one rounding. Mode 0
    rounds half up, ``(v + 2^(t−1)) >> t``; mode 1 half to even, ``(v + 2^(t−1) − 1 + ((v >> t) & 1)) >> t``
    (``|v| < 2^62``, so both sums fit in int64); mode 2 as onnxruntime's float32 requantization,
    ``round_half_even(fl(fl(x)·fl(M0·2^−t)))`` (``M0 < 2^24``), in integers (:func:`_float32_product`)."""
    if mode == 2:
        return np.clip(_float32_product(x, m0, t) + zy, lo, hi).astype(np.int8)
    v = _i64(x) * I64(m0)
    q = (v + I64(1 << (t - 1))) >> I64(t) if mode == 0 else _rne(v, t)
    return np.clip(q + zy, lo, hi).astype(np.int8)


def requantize_channels(
    x: Array, table: Array, zy: int, lo: int, hi: int, mode: int = 0
) -> npt.NDArray[np.int8]:
    """:func:`requantize` per channel: element ``i`` (row-major) uses ``(M0, t) = table[i mod C]``, ``C``
    the size of ``x``'s last axis and ``table`` int32 ``[C, 2]``."""
    tab = np.asarray(table, dtype=np.int64)
    m0, t = tab[:, 0], tab[:, 1]
    if mode == 2:
        return np.clip(_float32_product(x, m0, t) + zy, lo, hi).astype(np.int8)
    v = _i64(x) * m0
    q = (v + np.left_shift(I64(1), t - 1)) >> t if mode == 0 else _rne(v, t)
    return np.clip(q + zy, lo, hi).astype(np.int8)


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


# --- version 2: the ops of a LLaMA block (ml-spec §10) ---------------------------------------------
#
# Row-scaled values (``r16``, ``r8``) are numpy record arrays of shape ``dims[:-1]``, one record
# ``(e int32, q int16[K] or int8[K])`` per row (:func:`rows_value`), whose bytes are the tensor's bytes.
# Every rule is in integers: the compiled kernels of opml.ml.qkernels (qdense's sums straight from the
# GGUF blocks, in int32 and int64; the row rules bitlen, rshr, scale, quant; rmsnorm, rope, swiglu and
# one-row attention), or int64 numpy. A prefill's attention (several query rows) puts its two products
# through float64 BLAS, whose partial sums are provably exact integers below 2^53: ``q·k`` (≤ 2^38)
# and ``Σ p·v`` (every partial sum ≤ (2^30 + L)·2^15 < 2^46, all ``p ≥ 0``).

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
R16_MAX = 32767
R8_MAX = 127


def bitlen(a: Array) -> npt.NDArray[np.int64]:
    """The bit length of each ``a ≥ 0`` (0 for 0, and for the negatives no rule gives it)."""
    out: npt.NDArray[np.int64] = qkernels.bitlen_u(np.asarray(a).astype(I64, copy=False))
    return out


def rshr(v: Array | int, n: Array | int) -> npt.NDArray[np.int64]:
    """``(v + 2^(n−1)) >> n`` for ``n ≥ 1``, ``v`` for ``n = 0``, 0 for ``n ≥ 63`` (ml-spec §10.1)."""
    out: npt.NDArray[np.int64] = qkernels.rshr_u(
        np.asarray(v).astype(I64, copy=False), np.asarray(n).astype(I64, copy=False)
    )
    return out


def scale(v: Array, n: Array | int, lo: int, hi: int) -> npt.NDArray[np.int64]:
    """``clamp(v·2^−n, lo, hi)``: ``rshr`` for ``n ≥ 0``, an exact saturating left shift for ``n < 0``."""
    out: npt.NDArray[np.int64] = qkernels.scale_u(
        np.asarray(v).astype(I64, copy=False), np.asarray(n).astype(I64, copy=False), I64(lo), I64(hi)
    )
    return out


def _plain(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``a`` C-contiguous and writable (a copy if not): one compiled kernel for every caller."""
    return a if a.flags.c_contiguous and a.flags.writeable else a.copy()


def quant(v: Array, c: Array | int, qmax: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row quantization ``quant(v, c, Qmax)`` over the last axis: ``(e, q)`` with ``s`` the smallest
    shift that brings the row's rounded maximum to ``≤ Qmax``, ``q = rshr(v, s)``, ``e = c + s``."""
    vv = np.asarray(v).astype(I64, copy=False)
    lead, k = vv.shape[:-1], vv.shape[-1]
    if k == 0:
        raise ValueError("quant of an empty row")
    cc = np.asarray(c).astype(I64, copy=False)
    if cc.shape != lead:
        cc = np.broadcast_to(cc, lead)
    e, q = qkernels.quant_rows(
        _plain(vv.reshape(-1, k)), _plain(cc.reshape(-1)), qmax, int(qmax).bit_length()
    )
    return e.reshape(lead), q.reshape(vv.shape)


def rows_value(e: Array, q: Array, itemsize: int = 2) -> Array:
    """A row-scaled value: records ``(e, q[K])`` of shape ``q.shape[:-1]`` (``itemsize`` 2: r16, 1: r8)."""
    qa = np.asarray(q)
    dt = np.dtype([("e", "<i4"), ("q", f"<i{itemsize}", (qa.shape[-1],))])
    out = np.empty(qa.shape[:-1], dt)
    out["e"] = e
    out["q"] = qa
    return out


def _rows(x: Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(e, q)`` of a row-scaled value as int64."""
    return np.asarray(x["e"]).astype(I64), np.asarray(x["q"]).astype(I64)


@dataclass(frozen=True)
class QWeights:
    """Rows of a block matrix, ready for :func:`qdense_acc`: the GGUF blocks as they are and their
    integer scales, ``w·2^F = q·D + M`` per block (ml-spec §10.2)."""

    blocks: npt.NDArray[np.uint8]
    """``[M, nb·bs]`` the rows' blocks (``bs`` 20 or 34): read-only, a view of the tensor's bytes
    (:meth:`read`) or a packed copy (:meth:`of`). Only the weights are read, not the fp16 fields."""
    d: npt.NDArray[np.int32]
    """``[M, nb]`` the scales ``D`` (``|D| < 2^24``)."""
    m: npt.NDArray[np.int32] | None
    """``[M, nb]`` the offsets ``M`` (``q4_1``) or ``None`` (``q8_0``)."""

    @classmethod
    def read(
        cls, data: bytes | memoryview, is_q4_1: bool, k: int, rows: slice, f: int, where: str
    ) -> QWeights:
        """Rows ``rows`` of the block tensor ``data`` (rows of ``k`` weights) at ``F = f``: the blocks
        without a copy, the scales decoded and checked (:func:`opml.ml.blocks.scale_ints`)."""
        raw = row_blocks(data, is_q4_1, k)[rows]
        d, m = block_scales(raw, is_q4_1, f, where)
        return cls._make(raw.reshape(raw.shape[0], -1), d, m)

    @classmethod
    def of(cls, rows: BlockRows) -> QWeights:
        """Decoded rows packed back into blocks (a copy; the fp16 fields left zero)."""
        q = np.asarray(rows.q)
        n, nb = q.shape[0], q.shape[1]
        if rows.m is not None:
            raw = np.zeros((n, nb, Q4_1_BYTES), np.uint8)
            raw[..., 4:] = q[..., :16] | (q[..., 16:] << 4)
        else:
            raw = np.zeros((n, nb, Q8_0_BYTES), np.uint8)
            raw[..., 2:] = q.view(np.uint8)
        return cls._make(raw.reshape(n, -1), rows.d, rows.m)

    @classmethod
    def _make(
        cls, raw: npt.NDArray[np.uint8], d: npt.NDArray[np.int64], m: npt.NDArray[np.int64] | None
    ) -> QWeights:
        raw = np.ascontiguousarray(raw)
        raw.flags.writeable = False  # one numba type for every call, whatever the source
        d32 = np.ascontiguousarray(d, dtype=np.int32)
        m32 = None if m is None else np.ascontiguousarray(m, dtype=np.int32)
        return cls(raw, d32, m32)


def _x16(xq: Array) -> npt.NDArray[np.int16]:
    """The input rows as a fresh int16 ``[T, K]`` array (``|x| ≤ 2^15``, ml-spec §10.2)."""
    x = np.asarray(xq)
    if x.dtype not in (np.int8, np.int16) and x.size and (x.min() < -32768 or x.max() > 32767):
        raise ValueError("qdense input values must fit int16")
    return np.array(x, dtype=np.int16, order="C")


def qdense_acc(xq: Array, w: QWeights) -> npt.NDArray[np.int64]:
    """``acc[t, m] = Σ_b (D[m, b]·Σ_j q[m, b, j]·x[t, b, j] + M[m, b]·Σ_j x[t, b, j])`` (int64) for int
    ``xq`` ``[T, K]``, straight from the blocks (:func:`opml.ml.qkernels.qdense_acc`)."""
    out: npt.NDArray[np.int64] = qkernels.qdense_acc(_weights(w), w.d, w.m, _x16(xq))
    return out


def _weights(w: QWeights) -> npt.NDArray[Any]:
    """The blocks as the kernels read them: uint8 (``q4_1``), int8 (``q8_0``)."""
    return w.blocks if w.m is not None else w.blocks.view(np.int8)


def qdense(x: Array, w: QWeights, f: int, r: int | None) -> Array:
    """``qdense``: row-scaled ``x`` ``[T, K]`` → ``r16`` rows ``quant(acc, e − F)`` (``r`` ``None``) or
    int32 ``scale(acc, F − R − e)`` at ``2^−R``."""
    e = np.asarray(x["e"]).astype(I64)
    acc = qdense_acc(x["q"], w)
    if r is None:
        eo, qo = quant(acc, e - f, R16_MAX)
        return rows_value(eo, qo)
    return scale(acc, (f - r - e)[:, None], INT32_MIN, INT32_MAX).astype(np.int32)


def qdense_argmax(x: Array, w: QWeights, row0: int) -> npt.NDArray[np.int32]:
    """Argmax records ``(row0 + m*, lo, hi)`` of ``acc`` per row: the lowest index on ties."""
    idx, best = qkernels.qdense_argmax(_weights(w), w.d, w.m, _x16(x["q"]))
    return argmax_records(row0 + idx, best)


def argmax_records(index: Array, value: Array) -> npt.NDArray[np.int32]:
    """int32 ``[T, 3]``: the index and the low and high 32 bits of the int64 value."""
    v = np.asarray(value).astype(I64)
    lo = (v & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    out: npt.NDArray[np.int32] = np.stack(
        [np.asarray(index).astype(np.int32), lo, (v >> 32).astype(np.int32)], 1
    )
    return out


def _record_value(rec: Array) -> npt.NDArray[np.int64]:
    r = np.asarray(rec).astype(I64)
    out: npt.NDArray[np.int64] = (r[:, 2] << 32) | (r[:, 1] & 0xFFFFFFFF)
    return out


def argmax_merge(a: Array, b: Array) -> npt.NDArray[np.int32]:
    """Per row the record with the larger value, the lower index on ties."""
    va, vb = _record_value(a), _record_value(b)
    take_b = (vb > va) | ((vb == va) & (np.asarray(b)[:, 0] < np.asarray(a)[:, 0]))
    out: npt.NDArray[np.int32] = np.where(take_b[:, None], b, a).astype(np.int32)
    return out


def embedding(
    ids: Array, table: Callable[[Array], BlockRows], v: int, f: int, r: int
) -> npt.NDArray[np.int32]:
    """Rows ``id`` of a block table (``table(rows)`` decodes them) as int32 ``scale(q·D + M, F − R)``;
    an id outside ``[0, V)`` gives zeros. ``ids`` int32 ``[T]`` or argmax records ``[T, 3]``."""
    arr = np.asarray(ids).astype(I64)
    idx = arr if arr.ndim == 1 else arr[:, 0]
    valid = (idx >= 0) & (idx < v)
    rows = table(np.where(valid, idx, 0))
    w = rows.q.astype(I64) * rows.d[..., None]
    if rows.m is not None:
        w += rows.m[..., None]
    y = scale(w.reshape(w.shape[0], -1), f - r, INT32_MIN, INT32_MAX)
    out: npt.NDArray[np.int32] = np.where(valid[:, None], y, 0).astype(np.int32)
    return out


def rmsnorm(x: Array, g: Array, gf: int, eps: int) -> Array:
    """``rmsnorm`` (ml-spec §10.2): int32 ``[T, H]`` → ``r16``; normalize each row to 2^22 … 2^23, an
    integer square root of its mean square (+ eps) brought to 2^59 … 2^61, one 2^62 division per row
    (:func:`opml.ml.qkernels.rmsnorm_rows`)."""
    e, q = qkernels.rmsnorm_rows(_i64(x), _i64(g), gf, eps)
    return rows_value(e, q)


def rope(x: Array, table_rows: Array, hd: int) -> Array:
    """Rotate adjacent pairs ``(2k, 2k+1)`` of each row by its table row ``[hd/2, 2]`` (Q30 cos, sin),
    pair ``k`` using entry ``k mod hd/2``; ``table_rows`` holds the rows of positions ``pos0 … pos0+T−1``
    (:func:`opml.ml.qkernels.rope_rows`)."""
    eo, qo = qkernels.rope_rows(_i64(x["e"]), _i64(x["q"]), _i64(table_rows), hd)
    return rows_value(eo, qo)


def exp2neg(u: Array, table: Array) -> npt.NDArray[np.int64]:
    """``2^30·2^(−u/2^16)`` for ``u ≥ 0``: the table ``X[1025]`` interpolated on 6 bits, shifted by
    the integer part."""
    uu = np.asarray(u).astype(I64)
    xt = np.asarray(table).astype(I64)
    f = uu & 0xFFFF
    i, r = f >> 6, f & 63
    t = ((64 - r) * xt[i] + r * xt[i + 1] + 32) >> 6
    return rshr(t, uu >> 16)


def sigmoid(x16: Array, table: Array) -> npt.NDArray[np.int64]:
    """``2^30·sigmoid(x16/2^16)`` for ``x16 ∈ [−2^20, 2^20]``: the table ``G[2049]`` (step 1/64) interpolated
    on 10 bits."""
    u = np.asarray(x16).astype(I64) + (1 << 20)
    gt = np.asarray(table).astype(I64)
    i = np.minimum(u >> 10, 2047)
    r = u - (i << 10)
    out: npt.NDArray[np.int64] = ((1024 - r) * gt[i] + r * gt[i + 1] + 512) >> 10
    return out


LOGIT_LIMIT = 1 << 40


def attention(q: Array, kv: Array, table: Array, hd: int, mul: int, sa: int) -> Array:
    """Causal grouped-query attention (ml-spec §10.2): ``q`` r16 ``[T, nh·hd]``, ``kv`` r16
    ``[L, 2, nkv·hd]`` (keys, values) → r16 ``[T, nh·hd]``; query row ``t`` sees KV rows ``≤ L − T + t``.

    One query row (decoding) goes through :func:`opml.ml.qkernels.attention_rows`, several (a prefill)
    through :func:`_attention_blas`: the same integers (tests/ml/test_ops_llama.py checks prefill against
    row by row), each where it is faster (one row over 16 KV rows: 0.03 ms against 0.14; 64 rows over
    1,024: 98 ms against 41)."""
    if np.shape(q)[0] == 1:
        eo, qo = qkernels.attention_rows(
            _i64(q["e"]), _i64(q["q"]), _i64(kv["e"]), _i64(kv["q"]), _i64(table), hd, mul, sa
        )
        return rows_value(eo, qo)
    return _attention_blas(q, kv, table, hd, mul, sa)


def _attention_blas(q: Array, kv: Array, table: Array, hd: int, mul: int, sa: int) -> Array:
    """:func:`attention` in int64 numpy, its two products through float64 BLAS (exact: ml-spec §10.3)."""
    eq, qv = _rows(q)
    ekv, kvq = _rows(kv)
    t_rows, wq = qv.shape
    n_kv, wkv = kvq.shape[0], kvq.shape[2]
    nh, nkv = wq // hd, wkv // hd
    head_kv = np.arange(nh) // (nh // nkv)
    qh = qv.reshape(t_rows, nh, hd).transpose(1, 0, 2).astype(np.float64)  # [nh, T, hd]
    kh = kvq[:, 0].reshape(n_kv, nkv, hd)[:, head_kv].transpose(1, 2, 0).astype(np.float64)  # [nh, hd, L]
    vh = kvq[:, 1].reshape(n_kv, nkv, hd)[:, head_kv].transpose(1, 0, 2).astype(np.float64)  # [nh, L, hd]
    ek, ev = ekv[:, 0], ekv[:, 1]
    allowed = np.arange(n_kv)[None, :] <= (n_kv - t_rows + np.arange(t_rows))[:, None]  # [T, L]
    dot = np.matmul(qh, kh).astype(I64)  # exact: |dot| ≤ 2^38
    logit = scale(dot * mul, sa - eq[None, :, None] - ek[None, None, :], -LOGIT_LIMIT, LOGIT_LIMIT)
    top = np.where(allowed, logit, -LOGIT_LIMIT - 1).max(axis=2, keepdims=True)
    w = np.where(allowed, exp2neg(np.where(allowed, top - logit, 0), table), 0)
    total = w.sum(axis=2, keepdims=True)  # 2^30 … 2^46
    s_shift = np.maximum(bitlen(total) - 32, 0)
    recip = (I64(1) << 62) // (total >> s_shift)
    p = rshr(w * recip, 32 + s_shift)  # w/S at 2^−30
    top_e = np.where(allowed, ev[None, :], INT32_MIN).max(axis=1)  # [T]
    align = np.where(allowed, top_e[:, None] - ev[None, :], 0)
    pa = rshr(p, align[None])
    o = np.matmul(pa.astype(np.float64), vh).astype(I64)  # exact: partial sums < 2^46
    eo, qo = quant(o.transpose(1, 0, 2).reshape(t_rows, wq), top_e - 30, R16_MAX)
    return rows_value(eo, qo)


def swiglu(gate: Array, up: Array, table: Array) -> Array:
    """``silu(gate)·up`` per element: the sigmoid ``s`` of the gate at ``2^−16`` (clamped to ±16), then
    ``quant(a·s·b, e_g + e_u − 30)`` (:func:`opml.ml.qkernels.swiglu_rows`)."""
    eo, qo = qkernels.swiglu_rows(_i64(gate["e"]), _i64(gate["q"]), _i64(up["e"]), _i64(up["q"]), _i64(table))
    return rows_value(eo, qo)


def quantize(x: Array, to_r8: bool, fx: int) -> Array:
    """int32 at ``2^−fx`` → rows ``quant(x, −fx)`` (r16, or r8 with ``to_r8``); r16 → r8 rows."""
    arr = np.asarray(x)
    qmax, itemsize = (R8_MAX, 1) if to_r8 else (R16_MAX, 2)
    if arr.dtype.names is None:
        e, qo = quant(arr.astype(I64), -fx, qmax)
        return rows_value(np.broadcast_to(e, arr.shape[:-1]), qo, itemsize)
    e, q = _rows(arr)
    eo, qo = quant(q, e, qmax)
    return rows_value(eo, qo, itemsize)


def add32(a: Array, b: Array) -> npt.NDArray[np.int32]:
    """``clamp(a + b)`` in int32 (the residual stream)."""
    out: npt.NDArray[np.int32] = np.clip(_i64(a) + _i64(b), INT32_MIN, INT32_MAX).astype(np.int32)
    return out


def concat(a: Array, b: Array, axis: int) -> Array:
    """``a`` then ``b`` along ``axis`` (of the array: for row-scaled values an axis before the rows)."""
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=axis)


def slice_rows(x: Array, r0: int, n: int) -> Array:
    """Rows ``r0 … r0 + n − 1`` of the first axis."""
    return np.ascontiguousarray(np.asarray(x)[r0 : r0 + n])


def emit(transcript: Array, record: Array, t: int) -> npt.NDArray[np.int32]:
    """The transcript with the record's token written at position ``t + 1`` when that position is one
    the task generates (``P ≤ t + 1 < P + n``, compared in int64); otherwise unchanged."""
    x = np.array(transcript, dtype=np.int32)
    prompt_len, count = int(x[0]), int(x[1])
    if prompt_len <= t + 1 < prompt_len + count:
        x[TRANSCRIPT_HEADER + t + 1] = np.asarray(record).reshape(-1)[0]
    return x
