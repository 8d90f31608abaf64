"""Compiled integer kernels of the native runner (docs/ml-spec.md §10.1–§10.2): ``qdense``'s exact
accumulators straight from the GGUF blocks; the row rules ``bitlen``, ``rshr``, ``scale`` (numpy ufuncs)
and ``quant``; and ``rmsnorm``, ``rope``, ``swiglu`` and one-row ``attention`` as one call per op, each
written from the spec's integer formulas (a decoding step runs ~570 small ops: as int64 numpy each
took 10–40 numpy calls, 60–200 µs; compiled, 8–25 µs).

A block matrix is read as it is stored, one row of ``nb = K/32`` blocks after another:

| type   | bytes | one block of 32 weights                                                               |
|--------|------:|---------------------------------------------------------------------------------------|
| q4_1   | 20    | fp16 ``d``, fp16 ``m``, 16 bytes: byte ``j`` holds weight ``j`` (low nibble) and weight |
|        |       | ``j + 16`` (high nibble), ``q ∈ [0, 15]``                                             |
| q8_0   | 34    | fp16 ``d``, 32 int8 weights                                                           |

The kernels take those bytes (``[M, nb·bs]``, a view of the tensor: no copy) and the blocks' integer
scales ``D``, ``M`` at ``2^−F`` (int32 ``[M, nb]``, decoded and checked once per matrix by
:func:`opml.ml.blocks.scale_ints`; the kernels do not read the fp16 fields), and compute

    acc[t, m] = Σ_b (D[m, b]·Σ_j q[m, b, j]·x[t, 32b + j] + M[m, b]·Σ_j x[t, 32b + j])

for int16 rows ``x`` ``[T, K]``: ``Σ_j q·x`` in int32 (``|.| ≤ 32·128·2^15 = 2^27``), everything else in
int64 (``< 2^62`` by the load-time bound ``|D|, |M| < 2^24``, ``K ≤ 2^16``), so the result is exact.

They run on the calling thread (``nogil``). Splitting the rows over numba's threads (``prange``) was
measured on this project's 2-core host and dropped: the lm_head at ``T = 1`` took 2.1–2.4 ms on one
thread, 8 ms on two (OpenMP; 2.2 ms with numba's workqueue), as the second thread waits for a core
that OpenBLAS's spinning threads or other processes hold; at ``T = 64`` two threads saved 0–25 %.

numba caches the compiled kernels next to this file (``cache=True``): a second process loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types, vectorize
from numba.extending import intrinsic

U8 = npt.NDArray[np.uint8]
I8 = npt.NDArray[np.int8]
I16 = npt.NDArray[np.int16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

HALF = 16
"""Nibble bytes in a ``q4_1`` block: weights ``j`` and ``j + 16`` share byte ``j``."""
BLOCK = 32
"""Weights in a block."""
Q4_1_BYTES = 20
Q8_0_BYTES = 34

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _jit() -> Callable[[_Fn], _Fn]:
    """``numba.njit`` with this module's options, typed as the function it compiles."""

    def wrap(fn: _Fn) -> _Fn:
        return cast(_Fn, njit(cache=True, nogil=True)(fn))

    return wrap


# --- qdense: one block ------------------------------------------------------------------------------
#
# A block's ``Σ_j q·x`` is emitted as LLVM vector IR (as opml.hashing.bulk emits Keccak): load the 16 or
# 32 weight bytes and the 32 int16 inputs as vectors, widen both to <32 x i32>, multiply, add across.
# LLVM lowers it to AVX2 ``vpmaddwd`` where the host has it (SSE2 ``pmaddwd`` where not). Loops written
# in numba came out 2.5–3× slower: with the 32 products unrolled LLVM kept them scalar and 64-bit, and
# as a loop of unknown length its vector body ran 4 weights at a time.

_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)


def _vec(t: Any, n: int) -> Any:
    return ir.VectorType(t, n)


def _splat(t: Any, n: int, value: int) -> Any:
    return ir.Constant(_vec(t, n), [ir.Constant(t, value)] * n)


def _load(context: Any, builder: Any, array_type: Any, array: Any, offset: Any, vtype: Any) -> Any:
    """The vector ``vtype`` at element ``offset`` of a numba array (unaligned; no bounds check)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.load(builder.bitcast(builder.gep(data, [offset]), vtype.as_pointer()), align=1)


def _sum_products(builder: Any, q: Any, x: Any) -> Any:
    """``Σ_j q_j·x_j`` of two <32 x i32> as one i32."""
    prod = builder.mul(q, x)
    name = "llvm.vector.reduce.add.v32i32"
    fn = builder.module.globals.get(name) or ir.Function(
        builder.module, ir.FunctionType(_I32, [prod.type]), name
    )
    return builder.call(fn, [prod])


def _dot_q4_1_typer(typingctx: Any, w: Any, o: Any, x: Any, xo: Any) -> Any:
    """``dot_q4_1(w, o, x, xo)``: ``Σ_j q_j·x[xo + j]`` (int32, ≤ 32·15·2^15) over the ``q4_1`` block
    whose 16 nibble bytes start at ``w[o]``: byte ``j`` holds ``q_j`` (low) and ``q_{j+16}`` (high).
    The caller guarantees ``w[o … o + 15]`` and ``x[xo … xo + 31]`` lie in the arrays."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        b = _load(context, builder, sig.args[0], args[0], args[1], _vec(_I8, HALF))
        lo = builder.and_(b, _splat(_I8, HALF, 15))
        hi = builder.lshr(b, _splat(_I8, HALF, 4))
        q = builder.zext(
            builder.shuffle_vector(lo, hi, ir.Constant(_vec(_I32, BLOCK), list(range(BLOCK)))),
            _vec(_I32, BLOCK),
        )
        xv = builder.sext(
            _load(context, builder, sig.args[2], args[2], args[3], _vec(_I16, BLOCK)), _vec(_I32, BLOCK)
        )
        return _sum_products(builder, q, xv)

    return types.int32(w, types.intp, x, types.intp), codegen


def _dot_q8_0_typer(typingctx: Any, w: Any, o: Any, x: Any, xo: Any) -> Any:
    """``dot_q8_0(w, o, x, xo)``: ``Σ_j q_j·x[xo + j]`` (int32, ≤ 32·128·2^15 = 2^27) over the 32 int8
    weights at ``w[o]``; the caller guarantees both ranges lie in the arrays."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        q = builder.sext(
            _load(context, builder, sig.args[0], args[0], args[1], _vec(_I8, BLOCK)), _vec(_I32, BLOCK)
        )
        xv = builder.sext(
            _load(context, builder, sig.args[2], args[2], args[3], _vec(_I16, BLOCK)), _vec(_I32, BLOCK)
        )
        return _sum_products(builder, q, xv)

    return types.int32(w, types.intp, x, types.intp), codegen


# Any: numba's stub of an intrinsic's call counts the typing context as an argument.
_dot_q4_1: Any = intrinsic(_dot_q4_1_typer)
_dot_q8_0: Any = intrinsic(_dot_q8_0_typer)


# --- qdense: rows ---------------------------------------------------------------------------------


@_jit()
def _block_sums(x: I16) -> I64:
    """``Σ_j x[t, 32b + j]`` ``[T, nb]`` (≤ 2^20)."""
    t_rows, k = x.shape
    out = np.zeros((t_rows, k // BLOCK), np.int64)
    for t in range(t_rows):
        for i in range(k):
            out[t, i // BLOCK] += x[t, i]
    return out


@_jit()
def _row_q4_1(w: U8, d: I32, mo: I32, x: I16, xs: I64) -> np.int64:
    """``acc`` of one ``q4_1`` weight row (its bytes ``w``, scales ``d``, offsets ``mo``) and one input
    row ``x`` with block sums ``xs``."""
    acc = np.int64(0)
    for b in range(d.shape[0]):
        s = _dot_q4_1(w, Q4_1_BYTES * b + 4, x, BLOCK * b)
        acc += np.int64(d[b]) * np.int64(s) + np.int64(mo[b]) * xs[b]
    return acc


@_jit()
def _row_q8_0(w: I8, d: I32, x: I16) -> np.int64:
    """``acc`` of one ``q8_0`` weight row (its bytes ``w`` as int8, scales ``d``) and one input row."""
    acc = np.int64(0)
    for b in range(d.shape[0]):
        acc += np.int64(d[b]) * np.int64(_dot_q8_0(w, Q8_0_BYTES * b + 2, x, BLOCK * b))
    return acc


# --- qdense: the kernels --------------------------------------------------------------------------


@_jit()
def qdense_acc(w: U8 | I8, d: I32, mo: I32 | None, x: I16) -> I64:
    """``acc`` int64 ``[T, M]`` of the weight rows ``w`` ``[M, nb·bs]`` (``q4_1`` as uint8 with offsets
    ``mo``; ``q8_0`` as int8 with ``mo`` ``None``), scales ``d`` int32 ``[M, nb]``, and int16 ``x``
    ``[T, K]``."""
    xs = _block_sums(x)
    out = np.empty((x.shape[0], w.shape[0]), np.int64)
    for r in range(w.shape[0]):
        for t in range(x.shape[0]):
            if mo is None:
                out[t, r] = _row_q8_0(w[r], d[r], x[t])
            else:
                out[t, r] = _row_q4_1(w[r], d[r], mo[r], x[t], xs[t])
    return out


@_jit()
def qdense_argmax(w: U8 | I8, d: I32, mo: I32 | None, x: I16) -> tuple[I64, I64]:
    """``(m*, acc[t, m*])`` per input row of :func:`qdense_acc`'s ``acc`` (``M ≥ 1``), ``m*`` the first
    row with the largest value, without storing ``acc``."""
    xs = _block_sums(x)
    index = np.zeros(x.shape[0], np.int64)
    value = np.zeros(x.shape[0], np.int64)
    for r in range(w.shape[0]):
        for t in range(x.shape[0]):
            a = _row_q8_0(w[r], d[r], x[t]) if mo is None else _row_q4_1(w[r], d[r], mo[r], x[t], xs[t])
            if r == 0 or a > value[t]:
                value[t] = a
                index[t] = r
    return index, value


# --- the row rules (ml-spec §10.1), elementwise -------------------------------------------------
#
# numpy ufuncs over int64, for every int64 argument: they give exactly what the int64 numpy formulas of
# opml.ml.ops gave, wraparound included, at one call instead of ten or twenty small numpy calls.

SHIFT_CAP = 62
"""``rshr`` by more than this is 0: the ``|v| < 2^62`` that reach it round to 0 (ml-spec §10.1)."""


def _bitlen(a: int) -> int:
    """The bit length of ``a ≥ 0`` by halving (0 for ``a ≤ 0``)."""
    if a <= 0:
        return 0
    n = 1
    for s in (32, 16, 8, 4, 2, 1):
        if a >= 1 << s:
            a >>= s
            n += s
    return n


def _rshr(v: int, n: int) -> int:
    """``(v + 2^(n−1)) >> n`` (int64, wrapping as numpy), ``v`` for ``n = 0``, 0 for ``n > 62``; for
    ``n < 0`` numpy's out-of-range shift: −1 or 0 by the sign of ``v``."""
    if n > SHIFT_CAP:
        return 0
    if n < 0:
        return -1 if v < 0 else 0
    if n == 0:
        return v
    return (v + (1 << (n - 1))) >> n


def _scale(v: int, n: int, lo: int, hi: int) -> int:
    """``clamp(v·2^−n, lo, hi)``: ``min(max(rshr(v, n), lo), hi)`` for ``n ≥ 0``; for ``n < 0`` the left
    shift by ``k = min(−n, 62)``, saturating where ``v > hi >> k`` or ``v < −((−lo) >> k)``."""
    if n >= 0:
        return min(max(_rshr_scalar(v, n), lo), hi)
    k = SHIFT_CAP if n < -SHIFT_CAP else -n
    if v > hi >> k:
        return hi
    if v < -((-lo) >> k):
        return lo
    return v << k


_vectorize: Any = vectorize  # no annotations in numba
_rshr_scalar = _jit()(_rshr)
_bitlen_scalar = _jit()(_bitlen)
_scale_scalar = _jit()(_scale)


def _ufunc(signature: str, fn: Callable[..., int]) -> np.ufunc:
    """``fn`` compiled as a numpy ufunc of the one ``signature`` (numba's plain ufunc, not its dynamic
    wrapper: a call costs ≈ 1.5 µs instead of ≈ 4)."""
    compiled: Any = _vectorize([signature], cache=True, nopython=True)(fn)
    out: np.ufunc = compiled.ufunc
    return out


bitlen_u = _ufunc("int64(int64)", _bitlen)
"""ufunc: :func:`_bitlen` elementwise."""
rshr_u = _ufunc("int64(int64, int64)", _rshr)
"""ufunc: :func:`_rshr` elementwise."""
scale_u = _ufunc("int64(int64, int64, int64, int64)", _scale)
"""ufunc: :func:`_scale` elementwise."""


@_jit()
def _quant_row(v: I64, c: int, qmax: int, qbits: int, q: I64) -> int:
    """``quant`` of one row ``v`` into ``q``; returns ``e``."""
    a = 0
    for i in range(v.shape[0]):
        a = max(a, abs(v[i]))
    s = 0
    if a > qmax:
        s = max(_bitlen_scalar(a) - qbits, 0)
        if _rshr_scalar(a, s) > qmax:
            s += 1
    for i in range(v.shape[0]):
        q[i] = _rshr_scalar(v[i], s)
    return min(max(c + s, -(1 << 31)), (1 << 31) - 1)


@_jit()
def quant_rows(v: I64, c: I64, qmax: int, qbits: int) -> tuple[I64, I64]:
    """``quant`` of each row of ``v`` int64 ``[R, K]`` with exponents ``c`` ``[R]`` (ml-spec §10.1):
    ``(e [R], q [R, K])``; ``qbits`` is ``bitlen(qmax)``."""
    rows = v.shape[0]
    e = np.empty(rows, np.int64)
    q = np.empty(v.shape, np.int64)
    for r in range(rows):
        e[r] = _quant_row(v[r], c[r], qmax, qbits, q[r])
    return e, q


# --- whole ops on rows (ml-spec §10.2), one call per op --------------------------------------------

R16_MAX, R16_BITS = 32767, 15


@_jit()
def _isqrt(n: int) -> int:
    """The largest ``r`` with ``r² ≤ n`` for ``0 ≤ n < 2^62``: float64's root, corrected exactly."""
    r = int(np.sqrt(np.float64(n)))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@_jit()
def rmsnorm_rows(x: I64, g: I64, gf: int, eps: int) -> tuple[I64, I64]:
    """``rmsnorm`` of each row of ``x`` ``[T, H]`` (int32 values; ml-spec §10.2) with the weight ``g``
    at ``2^−gf``: ``(e [T], q [T, H])``."""
    t_rows, h = x.shape
    e = np.zeros(t_rows, np.int64)
    q = np.zeros((t_rows, h), np.int64)
    xp = np.empty(h, np.int64)
    for t in range(t_rows):
        a = 0
        for i in range(h):
            a = max(a, abs(x[t, i]))
        if a == 0:
            continue  # e = 0, all zeros
        sh = _bitlen_scalar(a) - 23
        ss = 0
        for i in range(h):
            xp[i] = x[t, i] << -sh if sh <= 0 else _rshr_scalar(x[t, i], sh)
            ss += xp[i] * xp[i]
        eps_p = eps << (-2 * sh) if sh <= 0 else _rshr_scalar(eps, 2 * sh)
        v = ss // h + eps_p
        j = max(0, (61 - _bitlen_scalar(v)) // 2)
        inv = (1 << 62) // max(_isqrt(v << (2 * j)), 1)
        for i in range(h):
            xp[i] = _rshr_scalar(xp[i] * inv, 24) * g[i]
        e[t] = _quant_row(xp, j - 38 - gf, R16_MAX, R16_BITS, q[t])
    return e, q


@_jit()
def rope_rows(e: I64, x: I64, tab: I64, hd: int) -> tuple[I64, I64]:
    """``rope`` of each row of ``x`` ``[T, W]`` (exponents ``e``) with its table row ``tab[t]``
    ``[hd/2, 2]``: pair ``k`` turned by entry ``k mod hd/2``."""
    t_rows, width = x.shape
    eo = np.empty(t_rows, np.int64)
    q = np.empty((t_rows, width), np.int64)
    v = np.empty(width, np.int64)
    half = hd // 2
    for t in range(t_rows):
        for k in range(width // 2):
            a, b = x[t, 2 * k], x[t, 2 * k + 1]
            c, s = tab[t, k % half, 0], tab[t, k % half, 1]
            v[2 * k] = a * c - b * s
            v[2 * k + 1] = a * s + b * c
        eo[t] = _quant_row(v, e[t] - 30, R16_MAX, R16_BITS, q[t])
    return eo, q


@_jit()
def swiglu_rows(eg: I64, a: I64, eu: I64, b: I64, table: I64) -> tuple[I64, I64]:
    """``swiglu`` of each row: ``x16 = scale(a, −e_g − 16, ±2^20)``, its sigmoid ``sig`` from ``table``
    ``[2049]`` (ml-spec §10.1), then ``quant(a·sig·b, e_g + e_u − 30)``."""
    t_rows, width = a.shape
    eo = np.empty(t_rows, np.int64)
    q = np.empty((t_rows, width), np.int64)
    v = np.empty(width, np.int64)
    for t in range(t_rows):
        n = -eg[t] - 16
        for i in range(width):
            u = _scale_scalar(a[t, i], n, -(1 << 20), 1 << 20) + (1 << 20)
            k = min(u >> 10, 2047)
            r = u - (k << 10)
            sig = ((1024 - r) * table[k] + r * table[k + 1] + 512) >> 10
            v[i] = a[t, i] * sig * b[t, i]
        eo[t] = _quant_row(v, eg[t] + eu[t] - 30, R16_MAX, R16_BITS, q[t])
    return eo, q


@_jit()
def _exp2neg(u: int, table: I64) -> int:
    """``2^30·2^(−u/2^16)`` for ``u ≥ 0`` from ``X[1025]`` (ml-spec §10.1)."""
    f = u & 0xFFFF
    i, r = f >> 6, f & 63
    return _rshr_scalar(((64 - r) * table[i] + r * table[i + 1] + 32) >> 6, u >> 16)


@_jit()
def attention_rows(
    eq: I64, q: I64, ekv: I64, kv: I64, table: I64, hd: int, mul: int, sa: int
) -> tuple[I64, I64]:
    """Causal grouped-query ``attention`` (ml-spec §10.2) of the query rows ``q`` ``[T, nh·hd]``
    (exponents ``eq``) over ``kv`` ``[L, 2, nkv·hd]`` (exponents ``ekv`` ``[L, 2]``): query row ``t``
    sees KV rows ``j ≤ L − T + t``; ``(e [T], q [T, nh·hd])``."""
    t_rows, wq = q.shape
    n_kv, wkv = kv.shape[0], kv.shape[2]
    nh, nkv = wq // hd, wkv // hd
    group = nh // nkv
    limit = 1 << 40
    eo = np.empty(t_rows, np.int64)
    out = np.empty((t_rows, wq), np.int64)
    o = np.zeros(wq, np.int64)
    logit = np.empty(n_kv, np.int64)
    p = np.empty(n_kv, np.int64)
    for t in range(t_rows):
        seen = n_kv - t_rows + t + 1  # KV rows 0 … seen − 1
        top_e = ekv[0, 1]
        for j in range(1, seen):
            top_e = max(top_e, ekv[j, 1])
        o[:] = 0
        for h in range(nh):
            qo, ko = h * hd, (h // group) * hd
            top = -limit - 1
            for j in range(seen):
                dot = 0
                for d in range(hd):
                    dot += q[t, qo + d] * kv[j, 0, ko + d]
                logit[j] = _scale_scalar(dot * mul, sa - eq[t] - ekv[j, 0], -limit, limit)
                top = max(top, logit[j])
            total = 0
            for j in range(seen):
                p[j] = _exp2neg(top - logit[j], table)
                total += p[j]
            s_shift = max(_bitlen_scalar(total) - 32, 0)
            recip = (1 << 62) // (total >> s_shift)
            for j in range(seen):
                pa = _rshr_scalar(_rshr_scalar(p[j] * recip, 32 + s_shift), top_e - ekv[j, 1])
                for d in range(hd):
                    o[qo + d] += pa * kv[j, 1, ko + d]
        eo[t] = _quant_row(o, top_e - 30, R16_MAX, R16_BITS, out[t])
    return eo, out
