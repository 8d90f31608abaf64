"""The version-2 C kernels (mips-toolchain/ml/ops_llama.c, ml-spec §1, §10) in the oracle-free program
tests/ml_kernels_v2.c: numpy (opml.ml.ops), a pure-Python reference written from the spec (:mod:`_spec`
below, Python ints only), the program under qemu-mipsel, the program in the project's VM and its pinned
expected output all give the same bytes.

The program draws its inputs from xorshift32, reseeded per case; :class:`XorShift` draws the same numbers
here, and each ``case_*`` below rebuilds a case's inputs in the order the C code draws them. The cases
cover the smallest shapes (T = 1, K = 32, hd = 1 and 2, H = 1), fp16 scales at each decoding edge, the
largest scales at K = 2^16 (|acc| up to 2^62 − 2^51, the bound of §10.2), ±32767 and −32768 values,
int32 exponents at both ends, weight streams that cross buffer fills inside a row, ties of
``qdense_argmax`` and ``argmax_merge``, ids outside the table, saturation of every clamp.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _toolchain import TOOLCHAIN, build_toolchain, qemu_lines, vm_lines

from opml.ml import blocks, cost, ops
from opml.ml.format import Node, Op, TensorDesc, int8, int32, r8, r16

EXPECTED = TOOLCHAIN / "tests" / "expected" / "ml_kernels_v2.out"
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
Q4_1, Q8_0 = 6, 7
ONE = 1 << 30


class XorShift:
    """xorshift32 as tests/ml_kernels_v2.c runs it."""

    def __init__(self, seed: int) -> None:
        self.x = seed

    def u32(self) -> int:
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def i32(self) -> int:
        return (self.u32() ^ 0x80000000) - 0x80000000

    def rand_in(self, lo: int, hi: int) -> int:
        span = (hi - lo + 1) & 0xFFFFFFFF
        if span == 0:
            return self.i32()
        return ((lo + self.u32() % span + 2**31) & 0xFFFFFFFF) - 2**31


def s16(v: int) -> int:
    return ((v & 0xFFFF) ^ 0x8000) - 0x8000


def s8(v: int) -> int:
    return ((v & 0xFF) ^ 0x80) - 0x80


# --- the pure-Python reference (ml-spec §1, §10.1, §10.2), Python ints --------------------------------


class _spec:
    @staticmethod
    def fp16(h: int, f: int) -> int:
        e, frac = (h >> 10) & 31, h & 1023
        assert e != 31 and not (e == 0 and frac), "invalid scale"
        if e == 0:
            return 0
        n = e - 25 + f
        sig = 1024 + frac
        if n >= 0:
            mag = sig << n
        else:
            assert sig % (1 << -n) == 0, "inexact scale"
            mag = sig >> -n
        assert mag < 1 << 24
        return -mag if h >> 15 else mag

    @staticmethod
    def rshr(v: int, n: int) -> int:
        """Exactly ``(v + 2^(n−1)) >> n`` (no cap: the spec's special case for ``n ≥ 63`` must agree)."""
        if n == 0:
            return v
        assert n >= 1 and abs(v) <= 1 << 62
        if n > 64:  # |v| < 2^(n−1): v + 2^(n−1) ∈ (0, 2^n), so the exact value is 0
            return 0
        return (v + (1 << (n - 1))) >> n

    @staticmethod
    def scale(v: int, n: int, lo: int, hi: int) -> int:
        if n >= 0:
            return min(max(_spec.rshr(v, n), lo), hi)
        if n < -64:  # |v·2^−n| ≥ 2^64 > hi unless v = 0
            return hi if v > 0 else lo if v < 0 else 0
        return min(max(v * 2 ** (-n), lo), hi)  # exact: Python ints

    @staticmethod
    def quant(v: list[int], c: int, qmax: int) -> tuple[int, list[int]]:
        a = max(abs(x) for x in v)
        s = 0
        if a > qmax:
            s = a.bit_length() - qmax.bit_length()
            s += _spec.rshr(a, s) > qmax
        q = [_spec.rshr(x, s) for x in v]
        assert all(abs(x) <= qmax for x in q)
        return min(max(c + s, I32_MIN), I32_MAX), q

    @staticmethod
    def exp2neg(u: int, x: list[int]) -> int:
        z, f = u >> 16, u & 0xFFFF
        i, r = f >> 6, f & 63
        t = ((64 - r) * x[i] + r * x[i + 1] + 32) >> 6
        return _spec.rshr(t, z)

    @staticmethod
    def sigmoid(x16: int, g: list[int]) -> int:
        u = x16 + (1 << 20)
        i = min(u >> 10, 2047)
        r = u - 1024 * i
        return ((1024 - r) * g[i] + r * g[i + 1] + 512) >> 10


Row = tuple[int, list[int]]
"""A row-scaled row: (exponent, values)."""


def rows_bytes(rows: list[Row], size: int) -> bytes:
    fmt = "h" if size == 2 else "b"
    return b"".join(struct.pack(f"<i{len(q)}{fmt}", e, *q) for e, q in rows)


def rows_array(rows: list[Row], size: int) -> np.ndarray:
    return ops.rows_value(np.array([e for e, _ in rows]), np.array([q for _, q in rows]), size)


def i32_bytes(v: list[int]) -> bytes:
    return struct.pack(f"<{len(v)}i", *v)


@dataclass
class Weights:
    """A block matrix as its bytes and as integers (per row, per block: D, M, q[32])."""

    data: bytes
    wtype: int
    k: int

    def block(self, r: int, b: int, f: int) -> tuple[int, int, list[int]]:
        bs = 20 if self.wtype == Q4_1 else 34
        blk = self.data[(r * (self.k // 32) + b) * bs :][:bs]
        d = _spec.fp16(blk[0] | blk[1] << 8, f)
        if self.wtype == Q4_1:
            m = _spec.fp16(blk[2] | blk[3] << 8, f)
            return d, m, [blk[4 + j] & 15 for j in range(16)] + [blk[4 + j] >> 4 for j in range(16)]
        return d, 0, [s8(v) for v in blk[2:34]]

    def ints(self, r: int, f: int) -> list[int]:
        """``w[r, k]·2^F``."""
        out = []
        for b in range(self.k // 32):
            d, m, q = self.block(r, b, f)
            out += [qj * d + m for qj in q]
        return out

    def numpy(self, row0: int, m: int, f: int) -> ops.QWeights:
        rows = blocks.decode_rows(self.data, self.wtype == Q4_1, self.k, slice(row0, row0 + m), f, "t")
        return ops.QWeights.of(rows)


def ref_acc(x: list[Row], w: Weights, row0: int, m: int, f: int) -> list[list[int]]:
    """``acc[t][m]`` of §10.2, block by block as the spec writes it."""
    nb = w.k // 32
    acc = [[0] * m for _ in x]
    for mm in range(m):
        for b in range(nb):
            d, mo, q = w.block(row0 + mm, b, f)
            for t, (_, xv) in enumerate(x):
                xb = xv[32 * b : 32 * b + 32]
                acc[t][mm] += d * sum(qj * xj for qj, xj in zip(q, xb, strict=True)) + mo * sum(xb)
    return acc


# --- the cases: inputs as the C program draws them, then (numpy bytes, reference bytes) ---------------

Case = tuple[str, bytes, bytes]


def gen_rows(r: XorShift, t: int, k: int, size: int, elo: int, ehi: int) -> list[Row]:
    out = []
    for _ in range(t):
        e = r.rand_in(elo, ehi)
        q = [s16(r.u32() >> 16) if size == 2 else s8(r.u32() >> 24) for _ in range(k)]
        out.append((e, q))
    return out


def scale_bits(r: XorShift, elo: int, ehi: int) -> int:
    v = r.u32()
    return (v >> 31) << 15 | r.rand_in(elo, ehi) << 10 | (v & 1023)


def gen_blocks(r: XorShift, wtype: int, n: int, elo: int, ehi: int) -> bytearray:
    out = bytearray()
    for _ in range(n):
        for _ in range(2 if wtype == Q4_1 else 1):
            h = 0 if (r.u32() & 7) == 0 else scale_bits(r, elo, ehi)
            out += struct.pack("<H", h)
        out += bytes(r.u32() >> 24 for _ in range(16 if wtype == Q4_1 else 32))
    return out


def case_fp16() -> list[Case]:
    pairs = [
        (0x0000, 0), (0x8000, 5), (0x0400, 24), (0x07FF, 24), (0x3C00, 0),
        (0xBC00, 0), (0x3C01, 10), (0x7BFF, 0), (0x7BFF, 8), (0xFBFF, 8),
        (0x4000, 0), (0x3555, 24), (0x1400, 24), (0x6002, 0), (0x5800, 2),
    ]  # fmt: skip
    got = [int(blocks.scale_ints(np.array([h], np.uint16), f, "t")[0]) for h, f in pairs]
    return [("fp16", i32_bytes(got), i32_bytes([_spec.fp16(h, f) for h, f in pairs]))]


def qdense_out(x: list[Row], w: Weights, size: int, row0: int, m: int, f: int, r: int) -> tuple[bytes, bytes]:
    got = ops.qdense(rows_array(x, size), w.numpy(row0, m, f), f, None if r < 0 else r)
    acc = ref_acc(x, w, row0, m, f)
    if r < 0:
        ref = rows_bytes([_spec.quant(a, e - f, 32767) for a, (e, _) in zip(acc, x, strict=True)], 2)
    else:
        ref = i32_bytes(
            [_spec.scale(v, f - r - e, I32_MIN, I32_MAX) for a, (e, _) in zip(acc, x, strict=True) for v in a]
        )
    return got.tobytes(), ref


def case_qdense(
    name: str, seed: int, wtype: int, size: int, t: int, k: int, mt: int, row0: int, m: int, f: int, r: int,
    elo: int, ehi: int, slo: int, shi: int,
) -> list[Case]:  # fmt: skip
    rng = XorShift(seed)
    x = gen_rows(rng, t, k, size, elo, ehi)
    w = Weights(bytes(gen_blocks(rng, wtype, mt * (k // 32), slo, shi)), wtype, k)
    return [(name, *qdense_out(x, w, size, row0, m, f, r))]


def argmax_out(x: list[Row], w: Weights, size: int, row0: int, m: int, f: int) -> tuple[bytes, bytes]:
    got = ops.qdense_argmax(rows_array(x, size), w.numpy(row0, m, f), row0)
    ref = []
    for a in ref_acc(x, w, row0, m, f):
        best = max(range(m), key=lambda i: (a[i], -i))
        v = a[best]
        ref += [row0 + best, ((v & 0xFFFFFFFF) ^ 2**31) - 2**31, v >> 32]
    return got.tobytes(), i32_bytes(ref)


def case_argmax(
    name: str,
    seed: int,
    wtype: int,
    size: int,
    t: int,
    k: int,
    mt: int,
    row0: int,
    m: int,
    f: int,
    slo: int,
    shi: int,
) -> list[Case]:
    rng = XorShift(seed)
    x = gen_rows(rng, t, k, size, -20, 20)
    x[1] = (0, [0] * k)
    data = gen_blocks(rng, wtype, mt * (k // 32), slo, shi)
    rb = (k // 32) * (20 if wtype == Q4_1 else 34)
    data[(row0 + 3) * rb : (row0 + 4) * rb] = data[(row0 + 1) * rb : (row0 + 2) * rb]
    return [(name, *argmax_out(x, Weights(bytes(data), wtype, k), size, row0, m, f))]


def case_extreme() -> list[Case]:
    out = []
    for k in (4096, 65536):
        x = [(-40, [32767] * k), (I32_MAX, [-32768] * k)]
        q4 = b"".join(
            b"\xff\x7b\xff" + (b"\xfb" if b & 1 else b"\x7b") + b"\xff" * 16 for b in range(k // 32)
        )
        w8 = Weights((b"\xff\xfb" + b"\x80" * 32) * (k // 32), Q8_0, k)
        if k == 4096:
            w4 = Weights(q4, Q4_1, k)
            out.append(("qdense_q4_extreme", *qdense_out(x, w4, 2, 0, 1, 8, -1)))
            out.append(("qdense_q4_extreme_i32", *qdense_out(x, w4, 2, 0, 1, 8, 0)))
            out.append(("argmax_q4_extreme", *argmax_out(x, w4, 2, 0, 1, 8)))
            out.append(("qdense_q8_extreme", *qdense_out(x, w8, 2, 0, 1, 8, -1)))
            out.append(("qdense_q8_extreme_i32", *qdense_out(x, w8, 2, 0, 1, 8, 30)))
            out.append(("argmax_q8_extreme", *argmax_out(x, w8, 2, 0, 1, 8)))
        else:
            acc = ref_acc(x[1:], w8, 0, 1, 8)[0][0]
            assert acc == -((1 << 62) - (1 << 51))  # the bound of §10.2, reached
            out.append(("qdense_q8_bound", *qdense_out(x[1:], w8, 2, 0, 1, 8, -1)))
    return out


MERGE_A = [5, 0, 0, 7, 100, 0, 7, -1, 0, 2, 0, -1, 9, I32_MIN, 3, 4, I32_MAX, 3, 1, 1, 1]
MERGE_B = [3, 0, 0, 7, 100, 0, 2, 0, 1, 1, -1, -1, 9, I32_MAX, 3, 0, I32_MIN, 3, -5, 1, 1]


def case_merge() -> list[Case]:
    out = []
    for name, a, b in (("argmax_merge", MERGE_A, MERGE_B), ("argmax_merge_swapped", MERGE_B, MERGE_A)):
        got = ops.argmax_merge(np.array(a, np.int32).reshape(-1, 3), np.array(b, np.int32).reshape(-1, 3))
        ref = []
        for i in range(0, len(a), 3):
            va = (a[i + 2] << 32) | (a[i + 1] & 0xFFFFFFFF)
            vb = (b[i + 2] << 32) | (b[i + 1] & 0xFFFFFFFF)
            ref += b[i : i + 3] if vb > va or (vb == va and b[i] < a[i]) else a[i : i + 3]
        out.append((name, got.tobytes(), i32_bytes(ref)))
    return out


def case_embedding(
    name: str, seed: int, wtype: int, v: int, h: int, f: int, r: int, slo: int, shi: int, stride: int
) -> list[Case]:
    rng = XorShift(seed)
    ids = [v if i == 10 else v - 1 if i == 9 else i for i in (3, -1, 0, 10, 9, I32_MIN, 7, 1)]
    x = []
    for i in ids:
        x += [i, rng.i32(), rng.i32()] if stride == 3 else [i]
    w = Weights(bytes(gen_blocks(rng, wtype, v * (h // 32), slo, shi)), wtype, h)
    xa = np.array(x, np.int32).reshape(-1, 3) if stride == 3 else np.array(x, np.int32)

    def table(rows: Any) -> blocks.BlockRows:
        return blocks.decode_rows(w.data, wtype == Q4_1, h, rows, f, "t")

    got = ops.embedding(xa, table, v, f, r)
    ref = []
    for i in ids:
        ref += [_spec.scale(wi, f - r, I32_MIN, I32_MAX) for wi in w.ints(i, f)] if 0 <= i < v else [0] * h
    return [(name, got.tobytes(), i32_bytes(ref))]


def ref_rmsnorm(x: list[int], g: list[int], gf: int, eps: int) -> Row:
    a = max(abs(v) for v in x)
    if a == 0:
        return 0, [0] * len(x)
    h = len(x)
    sh = a.bit_length() - 23
    xp = [v << -sh if sh <= 0 else _spec.rshr(v, sh) for v in x]
    ss = sum(v * v for v in xp)
    epsp = eps << (-2 * sh) if sh <= 0 else _spec.rshr(eps, 2 * sh)
    v = ss // h + epsp
    j = max(0, (61 - v.bit_length()) // 2)
    r = math.isqrt(v << (2 * j))
    inv = (1 << 62) // r
    u = [_spec.rshr(xi * inv, 24) for xi in xp]
    return _spec.quant([ui * gi for ui, gi in zip(u, g, strict=True)], j - 38 - gf, 32767)


def case_rmsnorm() -> list[Case]:
    t, h = 6, 48
    rng = XorShift(0x1234567)
    x = [rng.i32() for _ in range(t * h)]
    g = [0] * h
    for i in range(h):
        x[h + i] = rng.rand_in(-3, 3)
        x[2 * h + i] = 0
        x[4 * h + i] = rng.rand_in(-5000, 5000) * 4096
        x[5 * h + i] = rng.i32() >> 20
        g[i] = s16(rng.u32() >> 16)
    x[3 * h], x[3 * h + 1], x[h + 5] = I32_MIN, I32_MAX, 1
    g[0], g[1] = -32768, 32767
    out = []
    for name, xs, gs, gf, eps in (
        ("rmsnorm", x, g, 12, 168),
        ("rmsnorm_eps", x, g, 0, 65536),
        ("rmsnorm_h1", x[3 * h : 3 * h + 1], g[1:2], 30, 0),
        ("rmsnorm_h1_eps", x[h : h + 1], g[:1], 30, 65536),
    ):
        hh = len(gs)
        got = ops.rmsnorm(np.array(xs, np.int32).reshape(-1, hh), np.array(gs, np.int16), gf, eps)
        ref = [ref_rmsnorm(xs[i : i + hh], gs, gf, eps) for i in range(0, len(xs), hh)]
        out.append((name, got.tobytes(), rows_bytes(ref, 2)))
    return out


def case_rope(
    name: str, seed: int, t: int, w: int, hd: int, pos0: int, npos: int, extreme: bool
) -> list[Case]:
    rng = XorShift(seed)
    x = gen_rows(rng, t, w, 2, -40, 40)
    c = [rng.rand_in(-ONE, ONE) for _ in range(npos * hd)]
    if extreme:
        c[pos0 * hd], c[pos0 * hd + 1] = ONE, -ONE
        x[0] = (I32_MAX, [32767 if i & 1 else -32768 for i in range(w)])
    table = np.array(c, np.int32).reshape(npos, hd // 2, 2)
    got = ops.rope(rows_array(x, 2), table[pos0 : pos0 + t], hd)
    ref = []
    for i, (e, q) in enumerate(x):
        row = c[(pos0 + i) * hd : (pos0 + i + 1) * hd]
        v = []
        for k in range(w // 2):
            a, b = q[2 * k], q[2 * k + 1]
            cc, ss = row[2 * (k % (hd // 2))], row[2 * (k % (hd // 2)) + 1]
            v += [a * cc - b * ss, a * ss + b * cc]
        ref.append(_spec.quant(v, e - 30, 32767))
    return [(name, got.tobytes(), rows_bytes(ref, 2))]


def exp2_table() -> list[int]:
    x = [ONE]
    for _ in range(1024):
        x.append((x[-1] * 1073015252 + (1 << 29)) >> 30)
    return x


def ref_attention(
    q: list[Row], kv: list[Row], xt: list[int], nh: int, nkv: int, hd: int, mul: int, sa: int
) -> list[Row]:
    t_rows, n_kv = len(q), len(kv) // 2
    out = []
    for t, (eq, qv) in enumerate(q):
        allowed = range(n_kv - t_rows + t + 1)
        big_e = max(kv[2 * j + 1][0] for j in allowed)
        o = []
        for h in range(nh):
            g = h // (nh // nkv)
            qh = qv[h * hd : (h + 1) * hd]
            logits = []
            for j in allowed:
                ek, k = kv[2 * j]
                dot = sum(a * b for a, b in zip(qh, k[g * hd : (g + 1) * hd], strict=True))
                logits.append(_spec.scale(dot * mul, sa - eq - ek, -(1 << 40), 1 << 40))
            m = max(logits)
            w = [_spec.exp2neg(m - lj, xt) for lj in logits]
            s = sum(w)
            ss = max(0, s.bit_length() - 32)
            r = (1 << 62) // (s >> ss)
            p = [
                _spec.rshr(_spec.rshr(wj * r, 32 + ss), big_e - kv[2 * j + 1][0])
                for wj, j in zip(w, allowed, strict=True)
            ]
            for d in range(hd):
                o.append(sum(pj * kv[2 * j + 1][1][g * hd + d] for pj, j in zip(p, allowed, strict=True)))
        out.append(_spec.quant(o, big_e - 30, 32767))
    return out


def case_attention(
    name: str, seed: int, t: int, n_kv: int, nh: int, nkv: int, hd: int, mul: int, sa: int,
    elo: int, ehi: int, extreme: bool,
) -> list[Case]:  # fmt: skip
    rng = XorShift(seed)
    q = gen_rows(rng, t, nh * hd, 2, elo, ehi)
    kv = gen_rows(rng, 2 * n_kv, nkv * hd, 2, elo, ehi)
    if extreme:
        q[0] = (I32_MIN, q[0][1])
        kv[1] = (I32_MAX, kv[1][1])
        kv[3] = (I32_MIN, kv[3][1])
        kv[2] = (I32_MIN, kv[2][1])
        kv[0] = (kv[0][0], [-32768] * (nkv * hd))
    xt = exp2_table()
    kva = rows_array(kv, 2).reshape(n_kv, 2)
    got = ops.attention(rows_array(q, 2), kva, np.array(xt, np.int32), hd, mul, sa)
    ref = ref_attention(q, kv, xt, nh, nkv, hd, mul, sa)
    return [(name, got.tobytes(), rows_bytes(ref, 2))]


def case_swiglu() -> list[Case]:
    t, f = 4, 40
    rng = XorShift(0xABCDEF1)
    gate = gen_rows(rng, t, f, 2, -20, -8)
    up = gen_rows(rng, t, f, 2, -20, 20)
    gate[2] = (I32_MAX, gate[2][1])
    gate[3] = (I32_MIN, gate[3][1])
    gate[0][1][0] = up[0][1][0] = -32768
    g = [max(0, (i << 19) - (rng.u32() & 0xFFFF)) for i in range(2049)]
    got = ops.swiglu(rows_array(gate, 2), rows_array(up, 2), np.array(g, np.int32))
    ref = []
    for (eg, a), (eu, b) in zip(gate, up, strict=True):
        v = [
            ai * _spec.sigmoid(_spec.scale(ai, -eg - 16, -(1 << 20), 1 << 20), g) * bi
            for ai, bi in zip(a, b, strict=True)
        ]
        ref.append(_spec.quant(v, eg + eu - 30, 32767))
    return [("swiglu", got.tobytes(), rows_bytes(ref, 2))]


def case_quantize() -> list[Case]:
    rows, k = 4, 20
    rng = XorShift(0x5EED5)
    x = [rng.i32() >> (i // k * 8) for i in range(rows * k)]
    x[0], x[k + 3] = I32_MIN, I32_MAX
    for i in range(k):
        x[3 * k + i] = rng.rand_in(-127, 127)
    out = []
    for name, xs, kk, fx, to_r8 in (
        ("quantize_r16", x, k, 12, False),
        ("quantize_r8", x, k, -62, True),
        ("quantize_r8_fx62", x, k, 62, True),
        ("quantize_k1", x[k : k + 1], 1, 0, False),
    ):
        got = ops.quantize(np.array(xs, np.int32).reshape(-1, kk), to_r8, fx)
        qmax, size = (127, 1) if to_r8 else (32767, 2)
        ref = [_spec.quant(xs[i : i + kk], -fx, qmax) for i in range(0, len(xs), kk)]
        out.append((name, got.tobytes(), rows_bytes(ref, size)))
    r16 = gen_rows(rng, 3, k, 2, -50, 50)
    r16[1] = (I32_MAX, r16[1][1])
    r16[2] = (I32_MIN, r16[2][1])
    r16[0][1][0] = -32768
    got = ops.quantize(rows_array(r16, 2), True, 0)
    out.append(("quantize_r16_r8", got.tobytes(), rows_bytes([_spec.quant(q, e, 127) for e, q in r16], 1)))
    return out


def case_add32() -> list[Case]:
    rng = XorShift(0xADD32)
    a, b = [], []
    for _ in range(30):
        a.append(rng.i32())
        b.append(rng.i32())
    a[0] = b[0] = I32_MAX
    a[1] = b[1] = I32_MIN
    a[2], b[2] = I32_MAX, I32_MIN
    got = ops.add32(np.array(a, np.int32), np.array(b, np.int32))
    ref = [min(max(x + y, I32_MIN), I32_MAX) for x, y in zip(a, b, strict=True)]
    return [("add32", got.tobytes(), i32_bytes(ref))]


def cost_lines() -> list[str]:
    """What the program's cost cases print: ``opml.ml.cost``'s node bound and work of the same records."""
    kv, gate = r16(700, 2, 192), r16(2, 1536)
    a32, rec, one, i8 = int32(1000), int32(5, 3), r16(1, 2, 192), int8(3, 4, 5)
    cases: list[tuple[str, int, Op, TensorDesc, list[int], list[TensorDesc]]] = [
        ("cost_qdense_q4_r16", 17, Op.QDENSE, r16(7, 1536), [6, 18, 1536], [r16(7, 576)]),
        ("cost_qdense_q8_i32", 4095, Op.QDENSE, int32(1, 3000), [7, 21, 5000, 100, 12], [r8(1, 65536)]),
        (
            "cost_qdense_argmax",
            1 << 20,
            Op.QDENSE_ARGMAX,
            int32(1, 3),
            [7, 21, 49152, 0, 49152],
            [r16(1, 576)],
        ),
        ("cost_qdense_argmax_q4", 3, Op.QDENSE_ARGMAX, int32(3, 3), [6, 18, 9000, 1000, 8000], [r8(3, 2048)]),
        ("cost_argmax_merge", 9, Op.ARGMAX_MERGE, rec, [], [rec, rec]),
        ("cost_embedding", 0, Op.EMBEDDING, int32(9, 576), [7, 21, 49152, 12], [int32(9)]),
        ("cost_embedding_q4_records", 1, Op.EMBEDDING, int32(5, 64), [6, 24, 100, 0], [rec]),
        ("cost_rmsnorm", 2, Op.RMSNORM, r16(3, 576), [12, 168], [int32(3, 576)]),
        ("cost_rope", 5, Op.ROPE, r16(5, 576), [64, 10, 100], [r16(5, 576)]),
        ("cost_attention", 6, Op.ATTENTION, r16(3, 576), [64, 6051102, 9], [r16(3, 576), kv]),
        ("cost_swiglu", 7, Op.SWIGLU, gate, [], [gate, gate]),
        ("cost_quantize_i32_r8", 8, Op.QUANTIZE, r8(4, 10, 33), [-7], [int32(4, 10, 33)]),
        ("cost_quantize_r16_r8", 8, Op.QUANTIZE, r8(3, 100), [], [r16(3, 100)]),
        ("cost_add32", 10, Op.ADD32, a32, [], [a32, a32]),
        ("cost_concat_kv", 11, Op.CONCAT, r16(701, 2, 192), [0], [kv, one]),
        ("cost_concat_i8_axis2", 12, Op.CONCAT, int8(3, 4, 10), [2], [i8, i8]),
        ("cost_slice", 13, Op.SLICE, int32(1, 576), [8], [int32(9, 576)]),
        ("cost_reshape_r16", 14, Op.RESHAPE, r16(3, 192), [], [r16(3, 1, 192)]),
    ]
    out = []
    for name, index, op, desc, params, ins in cases:
        node = Node(
            op, tuple(range(len(ins))), desc, (*params, *[0] * (14 - len(params))), (b"\x03" * 32, None)
        )
        out.append(f"{name} 0x{cost.node_bound(index, node, ins):016x} 0x{cost.node_work(node, ins):016x}")
    return out


def all_cases() -> list[Case]:
    """Every case in the program's order: (name, numpy bytes, reference bytes)."""
    cases: list[Callable[[], list[Case]]] = [
        case_fp16,
        lambda: case_qdense("qdense_q4_r16_min", 1, Q4_1, 2, 1, 32, 1, 0, 1, 10, -1, -30, 30, 15, 25),
        lambda: case_qdense("qdense_q4_r16", 2, Q4_1, 2, 3, 160, 53, 3, 50, 18, -1, -100, 100, 7, 20),
        lambda: case_qdense("qdense_q4_r8_i32", 3, Q4_1, 1, 2, 64, 7, 0, 7, 24, 12, -18, -6, 1, 13),
        lambda: case_qdense("qdense_q8_r16_i32", 4, Q8_0, 2, 3, 224, 21, 1, 20, 21, 30, -60, 10, 5, 17),
        lambda: case_qdense("qdense_q8_r8", 5, Q8_0, 1, 4, 32, 9, 0, 9, 0, -1, I32_MIN, I32_MAX, 25, 30),
        lambda: case_qdense("qdense_q8_r8_i32", 6, Q8_0, 1, 2, 96, 5, 2, 3, 0, 0, -5, 5, 25, 30),
        case_extreme,
        lambda: case_argmax("argmax_q4", 7, Q4_1, 2, 3, 64, 12, 2, 9, 16, 9, 22),
        lambda: case_argmax("argmax_q8", 8, Q8_0, 1, 2, 32, 5, 0, 5, 20, 5, 18),
        case_merge,
        lambda: case_embedding("embedding_q8", 9, Q8_0, 10, 64, 21, 12, 4, 10, 1),
        lambda: case_embedding("embedding_q4_records", 10, Q4_1, 12, 32, 24, 16, 1, 14, 3),
        lambda: case_embedding("embedding_q8_saturate", 11, Q8_0, 11, 32, 0, 30, 25, 30, 1),
        case_rmsnorm,
        lambda: case_rope("rope_min", 12, 1, 2, 2, 0, 1, False),
        lambda: case_rope("rope", 13, 3, 16, 8, 2, 6, False),
        lambda: case_rope("rope_extreme", 14, 2, 8, 4, 3, 5, True),
        lambda: case_attention("attention_min", 15, 1, 1, 1, 1, 1, 6051102, 6, -20, -5, False),
        lambda: case_attention("attention_gqa", 16, 3, 5, 4, 2, 8, 4278775, 7, -20, -12, False),
        lambda: case_attention("attention_wide", 17, 2, 4, 2, 1, 4, 8388607, 62, -40, 40, True),
        lambda: case_attention("attention_sa0", 18, 2, 3, 2, 2, 2, 8388607, 0, -30, -10, True),
        lambda: case_attention("attention_hd256", 19, 1, 2, 1, 1, 256, 6051102, 10, -20, -15, True),
        case_swiglu,
        case_quantize,
        case_add32,
    ]
    return [c for make in cases for c in make()]


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return all_cases()


@pytest.fixture(scope="module")
def numpy_lines(cases) -> list[str]:
    """The kernel cases, then the cost cases: every line the program prints."""
    return [f"{name} {got.hex()}" for name, got, _ in cases] + cost_lines()


@pytest.fixture(scope="module")
def program():
    return build_toolchain() / "ml_kernels_v2"


def test_numpy_equals_the_spec_reference(cases):
    for name, got, ref in cases:
        assert got.hex() == ref.hex(), name


def test_numpy_equals_the_pinned_output(numpy_lines):
    pinned = EXPECTED.read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in pinned] == [line.split(" ", 1)[0] for line in numpy_lines]
    for want, got in zip(numpy_lines, pinned, strict=True):
        assert got == want


def test_qemu_equals_numpy(program, numpy_lines):
    assert qemu_lines(program) == numpy_lines


def test_vm_equals_numpy(program, numpy_lines):
    assert vm_lines(program) == numpy_lines
