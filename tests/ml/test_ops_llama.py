"""The version-2 operators of ml-spec §10 (a LLaMA block): numpy (opml.ml.ops) against a slow pure-Python
integer reference written from the spec text, seeded property tests with extremes, the stated error
bounds against float64, and prefill of P rows at once against row by row, bit for bit (per op and for a
two-layer LLaMA, in q4_1 and q8_0)."""

import math
import struct

import numpy as np
import pytest

from opml.ml import blocks, gguf_quant, ops
from opml.ml import llama_tables as lt

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
X_TABLE = lt.exp2_table()
G_TABLE = lt.sigmoid_table()

# --- the pure-Python reference (Python ints, unbounded: nothing can overflow) --------------------


def clamp(v, lo, hi):
    return min(max(v, lo), hi)


def rshr(v, n):
    if n > abs(v).bit_length() + 1:  # |v| < 2^(n−1): (v + 2^(n−1)) / 2^n is in (0, 1) (saves 2^n-bit ints)
        return 0
    return v if n == 0 else (v + (1 << (n - 1))) >> n


def scale(v, n, lo, hi):
    return clamp(rshr(v, n) if n >= 0 else v << -n, lo, hi)


def quant(row, c, qmax):
    a = max(abs(v) for v in row)
    if a <= qmax:
        s = 0
    else:
        s0 = a.bit_length() - qmax.bit_length()
        s = s0 + (rshr(a, s0) > qmax)
    return clamp(c + s, I32_MIN, I32_MAX), [rshr(v, s) for v in row]


def fp16_int(h, f):
    """ml-spec §1: the fp16 bits ``h`` times 2^F (asserting what the loader checks)."""
    s, e, frac = h >> 15, (h >> 10) & 31, h & 1023
    assert e != 31 and not (e == 0 and frac)
    if e == 0:
        return 0
    n = e - 25 + f
    mag = (1024 + frac) << n if n >= 0 else (1024 + frac) >> -n
    assert n >= 0 or (1024 + frac) % (1 << -n) == 0
    return -mag if s else mag


def block_matrix(data, is_q4_1, k, f):
    """Rows of ``(q[k], D[k/32], M[k/32])`` from the GGUF bytes."""
    bs = 20 if is_q4_1 else 34
    nb = k // 32
    rows = []
    for r in range(len(data) // (nb * bs)):
        q, d, m = [], [], []
        for b in range(nb):
            blk = data[(r * nb + b) * bs : (r * nb + b + 1) * bs]
            d.append(fp16_int(struct.unpack_from("<H", blk, 0)[0], f))
            if is_q4_1:
                m.append(fp16_int(struct.unpack_from("<H", blk, 2)[0], f))
                q += [blk[4 + j] & 15 for j in range(16)] + [blk[4 + j] >> 4 for j in range(16)]
            else:
                m.append(0)
                q += list(struct.unpack_from("<32b", blk, 2))
        rows.append((q, d, m))
    return rows


def dot_blocks(wrow, x):
    q, d, m = wrow
    acc = 0
    for b in range(len(d)):
        xs = x[32 * b : 32 * b + 32]
        acc += d[b] * sum(qj * xj for qj, xj in zip(q[32 * b : 32 * b + 32], xs, strict=True)) + m[b] * sum(
            xs
        )
    return acc


def ref_qdense(rows, wm, f, r, row0, m):
    out = []
    for e, x in rows:
        acc = [dot_blocks(wm[row0 + j], x) for j in range(m)]
        if r is None:
            out.append(quant(acc, e - f, 32767))
        else:
            out.append([scale(a, f - r - e, I32_MIN, I32_MAX) for a in acc])
    return out


def ref_qdense_argmax(rows, wm, row0, m):
    out = []
    for _, x in rows:
        acc = [dot_blocks(wm[row0 + j], x) for j in range(m)]
        best = max(range(m), key=lambda j: (acc[j], -j))
        v = acc[best]
        lo = v & 0xFFFFFFFF
        out.append([row0 + best, lo - (1 << 32) if lo >= 1 << 31 else lo, v >> 32])
    return out


def ref_merge(a, b):
    def val(rec):
        return (rec[2] << 32) + (rec[1] & 0xFFFFFFFF)

    return [
        rb if val(rb) > val(ra) or (val(rb) == val(ra) and rb[0] < ra[0]) else ra
        for ra, rb in zip(a, b, strict=True)
    ]


def ref_embedding(ids, wm, f, r):
    out = []
    for i in ids:
        if not 0 <= i < len(wm):
            out.append([0] * len(wm[0][0]))
            continue
        q, d, m = wm[i]
        out.append([scale(q[k] * d[k // 32] + m[k // 32], f - r, I32_MIN, I32_MAX) for k in range(len(q))])
    return out


def ref_rmsnorm(rows, g, gf, eps):
    out = []
    for x in rows:
        a = max(abs(v) for v in x)
        if a == 0:
            out.append((0, [0] * len(x)))
            continue
        sh = a.bit_length() - 23
        xp = [v << -sh for v in x] if sh <= 0 else [rshr(v, sh) for v in x]
        eps_p = eps << (-2 * sh) if sh <= 0 else rshr(eps, 2 * sh)
        v = sum(t * t for t in xp) // len(x) + eps_p
        j = max(0, (61 - v.bit_length()) // 2)
        r = math.isqrt(v << (2 * j))
        inv = (1 << 62) // r
        out.append(quant([rshr(t * inv, 24) * gi for t, gi in zip(xp, g, strict=True)], j - 38 - gf, 32767))
    return out


def ref_rope(rows, table, hd, pos0):
    out = []
    for t, (e, q) in enumerate(rows):
        v = []
        for k in range(len(q) // 2):
            c, s = table[pos0 + t][k % (hd // 2)]
            a, b = q[2 * k], q[2 * k + 1]
            v += [a * c - b * s, a * s + b * c]
        out.append(quant(v, e - 30, 32767))
    return out


def ref_exp2neg(u, xt):
    z, f = u >> 16, u & 0xFFFF
    i, r = f >> 6, f & 63
    return rshr(((64 - r) * xt[i] + r * xt[i + 1] + 32) >> 6, z)


def ref_sigmoid(x16, gt):
    u = x16 + (1 << 20)
    i = min(u >> 10, 2047)
    r = u - 1024 * i
    return ((1024 - r) * gt[i] + r * gt[i + 1] + 512) >> 10


def ref_attention(qrows, kv, xt, hd, mul, sa):
    """``kv`` a list of L pairs ((ek, k), (ev, v))."""
    n_kv = len(kv)
    nh, nkv = len(qrows[0][1]) // hd, len(kv[0][0][1]) // hd
    out = []
    for t, (eq, q) in enumerate(qrows):
        allowed = range(n_kv - len(qrows) + t + 1)
        top_e = max(kv[j][1][0] for j in allowed)
        o = []
        for h in range(nh):
            g = h // (nh // nkv)
            logit = {}
            for j in allowed:
                (ek, k), _ = kv[j]
                dot = sum(q[h * hd + d] * k[g * hd + d] for d in range(hd))
                logit[j] = scale(dot * mul, sa - eq - ek, -(1 << 40), 1 << 40)
            m = max(logit.values())
            w = {j: ref_exp2neg(m - logit[j], xt) for j in allowed}
            total = sum(w.values())
            s_shift = max(0, total.bit_length() - 32)
            recip = (1 << 62) // (total >> s_shift)
            p = {j: rshr(w[j] * recip, 32 + s_shift) for j in allowed}
            for d in range(hd):
                o.append(sum(rshr(p[j], top_e - kv[j][1][0]) * kv[j][1][1][g * hd + d] for j in allowed))
        out.append(quant(o, top_e - 30, 32767))
    return out


def ref_swiglu(gate, up, gt):
    out = []
    for (eg, a), (eu, b) in zip(gate, up, strict=True):
        v = [
            ai * ref_sigmoid(scale(ai, -eg - 16, -(1 << 20), 1 << 20), gt) * bi
            for ai, bi in zip(a, b, strict=True)
        ]
        out.append(quant(v, eg + eu - 30, 32767))
    return out


# --- helpers --------------------------------------------------------------------------------------


def as_rows(value):
    """A row-scaled numpy value as a list of ``(e, [q])`` (rows of the flattened leading axes)."""
    e = np.asarray(value["e"]).reshape(-1)
    q = np.asarray(value["q"]).reshape(len(e), -1)
    return [(int(a), [int(v) for v in b]) for a, b in zip(e, q, strict=True)]


def rand_rows(rng, t, k, *, e_lo=-30, e_hi=5, extreme=False):
    """An r16 value ``[t, k]``: random exponents and values, with ±32767, −32768 and 0 rows when
    ``extreme``."""
    q = rng.integers(-32768, 32768, size=(t, k))
    if extreme:
        q[0] = 32767
        if t > 1:
            q[1] = -32768
        if t > 2:
            q[2] = 0
        if t > 3:
            q[3] = rng.integers(-3, 4, size=k)
    else:
        q = (q >> rng.integers(0, 12, size=(t, 1))).astype(np.int64)  # rows of many magnitudes
    return ops.rows_value(rng.integers(e_lo, e_hi + 1, size=t), q)


def weights(rng, m, k, is_q4_1, sd=0.1):
    w = rng.normal(0, sd, (m, k))
    data = (gguf_quant.quantize_q4_1 if is_q4_1 else gguf_quant.quantize_q8_0)(w)
    return data, blocks.smallest_f(data, is_q4_1)


def qweights(data, is_q4_1, k, f, row0, m):
    return ops.QWeights.of(blocks.decode_rows(data, is_q4_1, k, slice(row0, row0 + m), f, "t"))


def real(rows):
    """Row values as floats: q·2^e (exact in float64 for the magnitudes here)."""
    return np.array([[v * 2.0**e for v in q] for e, q in rows])


# --- the common rules -----------------------------------------------------------------------------


def test_rshr_scale_and_bitlen_match_python_ints():
    rng = np.random.default_rng(0)
    v = np.concatenate(
        [rng.integers(-(1 << 61), 1 << 61, 500), [0, 1, -1, (1 << 62) - 1, -(1 << 62) + 1, 5, -5, 6, -6]]
    )
    for n in (0, 1, 2, 7, 31, 61, 62, 63, 64, 100, 1 << 33):
        assert ops.rshr(v, n).tolist() == [rshr(int(a), n) for a in v]
    for n in (-70, -40, -31, -5, -1, 0, 3, 40):
        assert ops.scale(v, n, I32_MIN, I32_MAX).tolist() == [scale(int(a), n, I32_MIN, I32_MAX) for a in v]
        small = v >> 40
        want = [scale(int(a), n, -(1 << 40), 1 << 40) for a in small]
        assert ops.scale(small, n, -(1 << 40), 1 << 40).tolist() == want
    a = np.abs(v)
    assert ops.bitlen(a).tolist() == [int(x).bit_length() for x in a]


@pytest.mark.parametrize("qmax", [32767, 127])
def test_quant_matches_the_reference_at_its_edges(qmax):
    rng = np.random.default_rng(1)
    edges = [0, 1, qmax, qmax + 1, 2 * qmax, 2 * qmax + 1, 2 * qmax + 2, 65535, 65536, (1 << 62) - 1]
    rows = [[a, -a // 3, 7] for a in edges] + [[-a, 1, 0] for a in edges]
    rows += [list(rng.integers(-(1 << s), 1 << s, 3)) for s in range(1, 62, 3)]
    v = np.array(rows, dtype=np.int64)
    c = rng.integers(-50, 50, len(rows))
    e, q = ops.quant(v, c, qmax)
    for i, row in enumerate(rows):
        assert (int(e[i]), q[i].tolist()) == quant([int(x) for x in row], int(c[i]), qmax)
        assert np.abs(q[i]).max() <= qmax
        # half an output step: |q·2^e − v·2^c| ≤ 2^(e−1)
        err = np.abs(q[i].astype(object) * 2 ** int(e[i] - c[i]) - v[i].astype(object))
        assert max(err) * 2 <= 2 ** int(e[i] - c[i])
    assert ops.quant(np.array([[5, 3]]), I32_MAX, qmax)[0].tolist() == [I32_MAX]


# --- qdense, argmax, embedding --------------------------------------------------------------------


@pytest.mark.parametrize("is_q4_1", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_qdense_matches_the_reference(is_q4_1, seed):
    rng = np.random.default_rng(seed)
    t, k, mt = int(rng.integers(1, 5)), 32 * int(rng.integers(1, 5)), int(rng.integers(1, 9))
    data, f = weights(rng, mt, k, is_q4_1)
    wm = block_matrix(data, is_q4_1, k, f)
    x = rand_rows(rng, t, k, extreme=seed % 2 == 0)
    row0 = int(rng.integers(0, mt))
    m = int(rng.integers(1, mt - row0 + 1))
    w = qweights(data, is_q4_1, k, f, row0, m)
    assert as_rows(ops.qdense(x, w, f, None)) == ref_qdense(as_rows(x), wm, f, None, row0, m)
    r = int(rng.integers(0, 31))
    assert ops.qdense(x, w, f, r).tolist() == ref_qdense(as_rows(x), wm, f, r, row0, m)
    assert ops.qdense_argmax(x, w, row0).tolist() == ref_qdense_argmax(as_rows(x), wm, row0, m)
    # exact in integers: acc·2^(e − F) is the float64 product of the GGUF weights and x
    wf = gguf_quant.dequantize(data, is_q4_1, k)[row0 : row0 + m]
    acc = ops.qdense_acc(x["q"], w)
    assert np.array_equal(acc.astype(np.float64), (x["q"].astype(np.float64) @ wf.T) * 2.0**f)


@pytest.mark.parametrize("is_q4_1", [True, False])
def test_qdense_at_its_overflow_bound(is_q4_1):
    """K = 2^16, every scale the largest below 2^24, every weight and input at its extreme: the
    accumulator reaches its bound (< 2^62) and numpy keeps every bit."""
    k, f = 1 << 16, 24
    d_bits = 0x3BFF  # (2047)·2^(14 − 25): D = 2047·2^13 = 2^24 − 2^13 at F = 24
    if is_q4_1:
        block = struct.pack("<HH", d_bits, d_bits | 0x8000) + bytes([0xFF] * 16)  # q = 15, m = −d
    else:
        block = struct.pack("<H", d_bits) + bytes([0x80] * 32)  # q = −128
    data = block * (k // 32) * 2
    x = ops.rows_value([0, 3], np.full((2, k), -32768))
    w = qweights(data, is_q4_1, k, f, 0, 2)
    acc = ops.qdense_acc(x["q"], w)
    d = 2047 << 13
    per_block = d * 15 * 32 * -32768 + -d * 32 * -32768 if is_q4_1 else d * -128 * 32 * -32768
    assert acc.tolist() == [[per_block * (k // 32)] * 2] * 2
    assert abs(per_block * (k // 32)) < 1 << 62
    wm = block_matrix(data, is_q4_1, k, f)
    assert as_rows(ops.qdense(x, w, f, None)) == ref_qdense(as_rows(x), wm, f, None, 0, 2)
    assert ops.qdense(x, w, f, 30).tolist() == ref_qdense(as_rows(x), wm, f, 30, 0, 2)  # saturates


def test_argmax_records_and_merge():
    rng = np.random.default_rng(7)
    for _ in range(20):
        t = int(rng.integers(1, 5))
        vals = rng.integers(-(1 << 61), 1 << 61, size=(2, t))
        vals[1, 0] = vals[0, 0]  # a tie
        idx = rng.integers(0, 50000, size=(2, t))
        a, b = ops.argmax_records(idx[0], vals[0]), ops.argmax_records(idx[1], vals[1])
        assert ops.argmax_merge(a, b).tolist() == ref_merge(a.tolist(), b.tolist())
    data, f = weights(rng, 40, 64, False)
    x = rand_rows(rng, 3, 64)
    whole = ops.qdense_argmax(x, qweights(data, False, 64, f, 0, 40), 0)
    parts = [ops.qdense_argmax(x, qweights(data, False, 64, f, r, 10), r) for r in (0, 10, 20, 30)]
    merged = parts[0]
    for p in parts[1:]:
        merged = ops.argmax_merge(merged, p)
    assert np.array_equal(merged, whole)  # a row split merges to the unsplit argmax
    tied = ops.qdense_argmax(ops.rows_value([0], np.zeros((1, 64))), qweights(data, False, 64, f, 5, 9), 5)
    assert tied.tolist() == [[5, 0, 0]]  # all zero: the lowest index


@pytest.mark.parametrize("is_q4_1", [True, False])
def test_embedding_matches_the_reference(is_q4_1):
    rng = np.random.default_rng(11)
    v, h = 12, 64
    data, f = weights(rng, v, h, is_q4_1)
    wm = block_matrix(data, is_q4_1, h, f)
    ids = np.array([0, 11, 3, -1, 12, 1 << 30, 3], np.int32)
    for r in (0, 5, f, 30):
        got = ops.embedding(ids, lambda rows: blocks.decode_rows(data, is_q4_1, h, rows, f, "t"), v, f, r)
        assert got.tolist() == ref_embedding(ids.tolist(), wm, f, r)
    records = ops.argmax_records(ids, np.zeros(len(ids), np.int64))
    again = ops.embedding(records, lambda rows: blocks.decode_rows(data, is_q4_1, h, rows, f, "t"), v, f, 12)
    assert again.tolist() == ref_embedding(ids.tolist(), wm, f, 12)
    exact = ops.embedding(ids[:3], lambda rows: blocks.decode_rows(data, is_q4_1, h, rows, f, "t"), v, f, f)
    assert np.array_equal(exact, gguf_quant.dequantize(data, is_q4_1, h)[ids[:3]] * 2.0**f)  # R ≥ F: exact


# --- rmsnorm --------------------------------------------------------------------------------------


def _rms_float(x, g, gf, eps):
    x = x.astype(np.float64)
    return x * (g.astype(np.float64) * 2.0**-gf) / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)


@pytest.mark.parametrize("seed", range(8))
def test_rmsnorm_matches_the_reference_and_its_bound(seed):
    rng = np.random.default_rng(seed)
    t, h = int(rng.integers(1, 5)), int(rng.integers(1, 300))
    x = rng.integers(I32_MIN, I32_MAX, size=(t, h), endpoint=True) >> rng.integers(0, 31, size=(t, 1))
    if seed == 0:
        x[0] = I32_MIN
        x[-1, 0] = 1
    gf = int(rng.integers(0, 16))
    g = rng.integers(-32768, 32768, size=h).astype(np.int16)
    eps = int(rng.integers(0, (1 << 16) + 1))
    y = ops.rmsnorm(x.astype(np.int32), g, gf, eps)
    rows = as_rows(y)
    assert rows == ref_rmsnorm(x.tolist(), g.tolist(), gf, eps)
    want = _rms_float(x, g, gf, eps)
    got = real(rows)
    e = np.array([r[0] for r in rows], np.float64)[:, None]
    bound = 2.0 ** (e - 1) + np.abs(g) * 2.0**-gf * math.sqrt(h) * 2.0**-22 + np.abs(want) * 2.0**-26
    assert np.all(np.abs(got - want) <= bound)


def test_rmsnorm_extremes():
    h = 1 << 16
    x = np.full((2, h), I32_MIN, np.int32)
    x[1] = I32_MAX
    g = np.full(h, -32768, np.int16)
    assert as_rows(ops.rmsnorm(x, g, 0, 1 << 16)) == ref_rmsnorm(x.tolist(), g.tolist(), 0, 1 << 16)
    tiny = np.zeros((3, 5), np.int32)
    tiny[1, 2] = 1
    tiny[2] = [-1, 1, 0, 0, 1]
    g5 = np.array([32767, -32768, 1, 2, 3], np.int16)
    assert as_rows(ops.rmsnorm(tiny, g5, 15, 1 << 16)) == ref_rmsnorm(tiny.tolist(), g5.tolist(), 15, 1 << 16)
    assert as_rows(ops.rmsnorm(tiny, g5, 15, 0))[0] == (0, [0] * 5)


# --- rope -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_rope_matches_the_reference_its_bound_and_row_by_row(seed):
    rng = np.random.default_rng(seed)
    hd = 2 * int(rng.integers(1, 9))
    t, w = int(rng.integers(1, 6)), hd * int(rng.integers(1, 4))
    pos0 = int(rng.integers(0, 20))
    table = lt.rope_table(pos0 + t + int(rng.integers(0, 3)), hd, 1e4)
    x = rand_rows(rng, t, w, extreme=seed < 2)
    y = ops.rope(x, table[pos0 : pos0 + t], hd)
    rows = as_rows(y)
    assert rows == ref_rope(as_rows(x), table.tolist(), hd, pos0)
    for i in range(t):  # token by token: row i at position pos0 + i
        one = ops.rope(x[i : i + 1], table[pos0 + i : pos0 + i + 1], hd)
        assert one.tobytes() == y[i : i + 1].tobytes()
    # against exact cos/sin
    theta = 1e4 ** (-np.arange(hd // 2) * 2 / hd)
    xin = real(as_rows(x))
    a, b = xin[:, 0::2], xin[:, 1::2]
    ang = (pos0 + np.arange(t))[:, None] * theta[np.arange(w // 2) % (hd // 2)][None, :]
    want = np.empty_like(xin)
    want[:, 0::2] = a * np.cos(ang) - b * np.sin(ang)
    want[:, 1::2] = a * np.sin(ang) + b * np.cos(ang)
    e = np.array([r[0] for r in rows], np.float64)[:, None]
    ein = x["e"].astype(np.float64)[:, None]
    pair = np.repeat(np.abs(a) + np.abs(b), 2, axis=1) * 2.0**-ein  # |a| + |b| in input units
    assert np.all(np.abs(real(rows) - want) <= 2.0 ** (e - 1) + 2.0 ** (ein - 30) * pair / 2 * 1.0000001)


# --- attention ------------------------------------------------------------------------------------


def _kv(rng, n, w, **kw):
    k = rand_rows(rng, n, w, **kw)
    v = rand_rows(rng, n, w, **kw)
    return ops.concat(k.reshape(n, 1), v.reshape(n, 1), 1)


def _kv_pairs(kv):
    rows = as_rows(kv)
    return [(rows[2 * j], rows[2 * j + 1]) for j in range(len(rows) // 2)]


@pytest.mark.parametrize("seed", range(8))
def test_attention_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    hd = int(rng.integers(1, 9))
    nkv = int(rng.integers(1, 3))
    nh = nkv * int(rng.integers(1, 4))
    t = int(rng.integers(1, 4))
    n = t + int(rng.integers(0, 5))
    extreme = seed % 3 == 0
    q = rand_rows(rng, t, nh * hd, e_lo=-20, e_hi=-8, extreme=extreme)
    kv = _kv(rng, n, nkv * hd, e_lo=-20, e_hi=-8, extreme=extreme)
    if seed == 1:  # exponents at the ends of int32: logits saturate, alignments drop to 0
        q["e"][0] = I32_MAX
        kv["e"][0, 1] = I32_MIN
    mul, sa = lt.attention_scale(hd)
    y = ops.attention(q, kv, X_TABLE, hd, mul, sa)
    assert as_rows(y) == ref_attention(as_rows(q), _kv_pairs(kv), X_TABLE.tolist(), hd, mul, sa)


def _attention_float(q, kv, hd, mul, sa):
    """float64 causal GQA attention on the dequantized rows, logit scale ``mul·2^−sa·ln2·2^−16``."""
    qr = real(as_rows(q))
    pairs = _kv_pairs(kv)
    k = real([p[0] for p in pairs])
    v = real([p[1] for p in pairs])
    t, n = len(qr), len(k)
    nh, nkv = qr.shape[1] // hd, k.shape[1] // hd
    lam = mul * 2.0**-sa * math.log(2) * 2.0**-16
    out = np.zeros_like(qr)
    for i in range(t):
        for h in range(nh):
            g = h // (nh // nkv)
            keys = k[: n - t + i + 1, g * hd : (g + 1) * hd]
            logit = keys @ qr[i, h * hd : (h + 1) * hd] * lam
            p = np.exp(logit - logit.max())
            out[i, h * hd : (h + 1) * hd] = (p / p.sum()) @ v[: n - t + i + 1, g * hd : (g + 1) * hd]
    return out, v


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_attention_error_bound_and_prefill_row_by_row(n):
    rng = np.random.default_rng(n)
    hd, nh, nkv = 16, 4, 2
    t = min(n, 5)
    q = rand_rows(rng, t, nh * hd, e_lo=-17, e_hi=-13)
    kv = _kv(rng, n, nkv * hd, e_lo=-17, e_hi=-13)
    mul, sa = lt.attention_scale(hd)
    y = ops.attention(q, kv, X_TABLE, hd, mul, sa)
    want, v = _attention_float(q, kv, hd, mul, sa)
    rows = as_rows(y)
    e = np.array([r[0] for r in rows], np.float64)[:, None]
    top_e = float(kv["e"][:, 1].max())
    bound = 2.0 ** (e - 1) + 2.0**-14 * np.abs(v).max() + n * 2.0 ** (top_e - 15)
    assert np.all(np.abs(real(rows) - want) <= bound)
    for i in range(t):  # query row i alone, over the KV rows it may see
        one = ops.attention(q[i : i + 1], kv[: n - t + i + 1], X_TABLE, hd, mul, sa)
        assert one.tobytes() == y[i : i + 1].tobytes()


# --- swiglu, quantize, add32, concat, slice -------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_swiglu_matches_the_reference_and_its_bound(seed):
    rng = np.random.default_rng(seed)
    t, f = int(rng.integers(1, 5)), int(rng.integers(1, 40))
    gate = rand_rows(rng, t, f, e_lo=-16, e_hi=-9, extreme=seed < 2)
    up = rand_rows(rng, t, f, e_lo=-16, e_hi=-9, extreme=seed < 2)
    if seed == 0:
        gate["e"][0] = 40  # a gate far beyond ±16: the sigmoid's argument saturates
    y = ops.swiglu(gate, up, G_TABLE)
    rows = as_rows(y)
    assert rows == ref_swiglu(as_rows(gate), as_rows(up), G_TABLE.tolist())
    a, b = real(as_rows(gate)), real(as_rows(up))
    want = a / (1 + np.exp(-a)) * b
    e = np.array([r[0] for r in rows], np.float64)[:, None]
    assert np.all(np.abs(real(rows) - want) <= 2.0 ** (e - 1) + 2.0**-17 * np.abs(a * b))
    for i in range(t):
        assert ops.swiglu(gate[i : i + 1], up[i : i + 1], G_TABLE).tobytes() == y[i : i + 1].tobytes()


def test_sigmoid_and_exp2_tables_against_float64():
    x16 = np.arange(-(1 << 20), (1 << 20) + 1, 37)
    sig = ops.sigmoid(x16, G_TABLE) / 2.0**30
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-x16 / 2.0**16)))) <= 2.0**-18.3
    ends = ops.sigmoid(np.array([-(1 << 20), 1 << 20]), G_TABLE)
    assert ends.tolist() == [G_TABLE[0], G_TABLE[-1]]
    u = np.arange(0, 8 << 16, 13)
    ex = ops.exp2neg(u, X_TABLE).astype(np.float64)
    exact = 2.0**30 * 2.0 ** (-u / 2.0**16)
    assert np.all(np.abs(ex - exact) <= exact * 2.0**-22 + 0.5)
    assert ops.exp2neg(np.array([0, 1 << 41]), X_TABLE).tolist() == [1 << 30, 0]
    assert [ref_exp2neg(int(a), X_TABLE.tolist()) for a in u[:200]] == ex[:200].astype(np.int64).tolist()


def test_quantize_add32_concat_slice():
    rng = np.random.default_rng(5)
    x = rng.integers(I32_MIN, I32_MAX, size=(4, 3, 10), endpoint=True, dtype=np.int64).astype(np.int32)
    for to_r8, qmax in ((False, 32767), (True, 127)):
        for fx in (-62, -3, 0, 12, 62):
            y = ops.quantize(x, to_r8, fx)
            assert as_rows(y) == [quant([int(v) for v in row], -fx, qmax) for row in x.reshape(-1, 10)]
            assert y.dtype["q"].base.itemsize == (1 if to_r8 else 2)
            assert ops.quantize(x[1:2, 2:3], to_r8, fx).tobytes() == y[1:2, 2:3].tobytes()  # row by row
    r = rand_rows(rng, 3, 9, extreme=True)
    assert as_rows(ops.quantize(r, True, 0)) == [quant(q, e, 127) for e, q in as_rows(r)]
    b = rng.integers(I32_MIN, I32_MAX, size=x.shape, endpoint=True, dtype=np.int64).astype(np.int32)
    assert ops.add32(x, b).tolist() == np.clip(x.astype(np.int64) + b, I32_MIN, I32_MAX).tolist()
    kv = ops.concat(r.reshape(3, 1), r.reshape(3, 1), 1)
    assert kv.shape == (3, 2) and kv.tobytes() == b"".join(r[i].tobytes() * 2 for i in range(3))
    longer = ops.concat(kv, kv[:1], 0)
    assert longer.tobytes() == kv.tobytes() + kv[:1].tobytes()
    assert ops.slice_rows(longer, 1, 2).tobytes() == longer[1:3].tobytes()
    assert ops.concat(x, b, 2).tobytes() == np.concatenate([x, b], 2).tobytes()
