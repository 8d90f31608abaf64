"""The compiled kernels of opml.ml.qkernels against small references written here: qdense's accumulators
(int64 numpy over the unpacked weights, and Python ints) on random and extreme blocks and inputs, the
argmax's lowest index on ties, row splits, one numba thread against two, and the row rules
``bitlen``, ``rshr``, ``scale``, ``quant`` (opml.ml.ops) at their edges against Python ints; the attention
row kernel against the float64 BLAS path. (rmsnorm, rope and swiglu, whole-op kernels too, are checked
against the pure-Python reference in test_ops_llama.py.)"""

import struct

import numba
import numpy as np
import pytest

from opml.ml import blocks, gguf_quant, ops, qkernels
from opml.ml import llama_tables as lt

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
TOP = (1 << 24) - 1
"""The largest ``|D|``, ``|M|`` the load-time check lets through."""

# --- references -------------------------------------------------------------------------------------


def unpack(raw, is_q4_1):
    """The weights ``q`` int64 ``[M, nb, 32]`` of blocks ``raw`` ``[M, nb·bs]``."""
    rows = raw.shape[0]
    if is_q4_1:
        nib = raw.reshape(rows, -1, 20)[:, :, 4:].astype(np.int64)
        return np.concatenate([nib & 15, nib >> 4], axis=-1)
    return raw.reshape(rows, -1, 34)[:, :, 2:].view(np.int8).astype(np.int64)


def ref_acc(raw, d, m, x, is_q4_1):
    """``Σ_b (D·Σ_j q·x + M·Σ_j x)`` in int64 numpy: exact, every partial sum is below 2^62."""
    q = unpack(raw, is_q4_1)
    xb = np.asarray(x).astype(np.int64).reshape(x.shape[0], -1, 32)
    sums = np.einsum("mbj,tbj->tmb", q, xb)  # |.| ≤ 2^27
    acc = (sums * np.asarray(d, np.int64)[None]).sum(axis=2)
    if m is not None:
        acc += (xb.sum(axis=2)[:, None, :] * np.asarray(m, np.int64)[None]).sum(axis=2)
    return acc


def ref_acc_python(raw, d, m, x, is_q4_1):
    """The same sum block by block in Python ints (nothing can overflow)."""
    q = unpack(raw, is_q4_1).tolist()
    out = []
    for xr in np.asarray(x).tolist():
        row = []
        for r in range(len(q)):
            acc = 0
            for b in range(len(q[r])):
                xs = xr[32 * b : 32 * b + 32]
                acc += int(d[r][b]) * sum(a * c for a, c in zip(q[r][b], xs, strict=True))
                acc += (int(m[r][b]) if m is not None else 0) * sum(xs)
            row.append(acc)
        out.append(row)
    return out


def _args(raw, d, m, x, is_q4_1):
    raw = np.array(raw)  # a copy, read-only as QWeights holds its blocks
    raw.flags.writeable = False
    w = raw if is_q4_1 else raw.view(np.int8)
    return w, np.ascontiguousarray(d, np.int32), m, np.ascontiguousarray(x, dtype=np.int16)


def kernel_acc(raw, d, m, x, is_q4_1):
    return qkernels.qdense_acc(*_args(raw, d, m, x, is_q4_1))


def kernel_argmax(raw, d, m, x, is_q4_1):
    return qkernels.qdense_argmax(*_args(raw, d, m, x, is_q4_1))


def random_blocks(rng, rows, k, is_q4_1, scale_top=TOP):
    """Random block bytes ``[rows, nb·bs]`` and int32 ``D``, ``M`` ``[rows, nb]`` up to ``scale_top``."""
    nb = k // 32
    raw = rng.integers(0, 256, (rows, nb * (20 if is_q4_1 else 34)), dtype=np.uint8)
    d = rng.integers(-scale_top, scale_top + 1, (rows, nb)).astype(np.int32)
    m = rng.integers(-scale_top, scale_top + 1, (rows, nb)).astype(np.int32) if is_q4_1 else None
    return raw, d, m


def random_x(rng, t, k):
    x = rng.integers(-32768, 32768, (t, k))
    x[0, : k // 2] = -32768
    if t > 1:
        x[1] = 32767
    if t > 2:
        x[2] = 0
    if t > 3:
        x[3] = rng.integers(-3, 4, k)
    return x.astype(np.int16)


# --- qdense -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_q4_1", [True, False])
@pytest.mark.parametrize("t", [1, 7])
@pytest.mark.parametrize("rows, k", [(1, 32), (5, 32), (9, 96), (33, 576), (3, 1536)])
def test_acc_matches_the_references(is_q4_1, t, rows, k):
    rng = np.random.default_rng(rows * 1000 + k + t + is_q4_1)
    raw, d, m = random_blocks(rng, rows, k, is_q4_1)
    x = random_x(rng, t, k)
    got = kernel_acc(raw, d, m, x, is_q4_1)
    assert got.dtype == np.int64 and got.shape == (t, rows)
    assert np.array_equal(got, ref_acc(raw, d, m, x, is_q4_1))
    for r0 in (1, rows // 2):  # a row split: the same rows' values
        if r0 < rows:
            split = kernel_acc(raw[r0:], d[r0:], None if m is None else m[r0:], x, is_q4_1)
            assert np.array_equal(split, got[:, r0:])
    if rows * k * t <= 20_000:
        assert got.tolist() == ref_acc_python(raw, d, m, x, is_q4_1)


@pytest.mark.parametrize("is_q4_1", [True, False])
@pytest.mark.parametrize("t", [1, 7])
def test_acc_at_the_overflow_bound(is_q4_1, t):
    """K = 2^16, every scale and offset 2^24 − 1 against every weight and input at its extreme: each
    block adds its largest magnitude, the total stays below 2^62 and no bit is lost."""
    k = 1 << 16
    nb = k // 32
    if is_q4_1:
        raw = np.tile(np.array([0] * 4 + [0xFF] * 16, np.uint8), (2, nb))  # q = 15
        d = np.full((2, nb), TOP, np.int32)
        m = np.full((2, nb), TOP, np.int32)
        m[1] = -TOP
    else:
        raw = np.tile(np.array([0] * 2 + [0x80] * 32, np.uint8), (2, nb))  # q = −128
        d = np.full((2, nb), TOP, np.int32)
        d[1] = -TOP
        m = None
    x = np.full((t, k), -32768, np.int16)
    if t > 1:
        x[1] = 32767
    got = kernel_acc(raw, d, m, x, is_q4_1)
    want = ref_acc(raw, d, m, x, is_q4_1)
    assert np.array_equal(got, want)
    per_block = TOP * 15 * 32 * 32768 + TOP * 32 * 32768 if is_q4_1 else TOP * 128 * 32 * 32768
    assert got[0, 0] == -per_block * nb if is_q4_1 else got[0, 0] == per_block * nb
    assert abs(int(got[0, 0])) < 1 << 62
    idx, best = kernel_argmax(raw, d, m, x, is_q4_1)
    assert idx.tolist() == np.argmax(want, axis=1).tolist()
    assert best.tolist() == want.max(axis=1).tolist()


@pytest.mark.parametrize("is_q4_1", [True, False])
@pytest.mark.parametrize("t", [1, 7])
def test_qweights_read_a_row_split_of_real_blocks(is_q4_1, t):
    """``QWeights.read`` of rows ``row0 …`` of GGUF bytes (a view, scales at ``F``) and ``QWeights.of``
    of the decoded rows give the accumulators of the spec's formula over those rows."""
    rng = np.random.default_rng(7 + t + is_q4_1)
    mt, k, row0, m = 12, 96, 5, 4
    data = (gguf_quant.quantize_q4_1 if is_q4_1 else gguf_quant.quantize_q8_0)(rng.normal(0, 0.1, (mt, k)))
    f = blocks.smallest_f(data, is_q4_1)
    w = ops.QWeights.read(data, is_q4_1, k, slice(row0, row0 + m), f, "t")
    assert not w.blocks.flags.writeable and np.shares_memory(w.blocks, np.frombuffer(data, np.uint8))
    packed = ops.QWeights.of(blocks.decode_rows(data, is_q4_1, k, slice(row0, row0 + m), f, "t"))
    x = random_x(rng, t, k)
    rows = blocks.decode_rows(data, is_q4_1, k, slice(None), f, "t")
    wint = rows.q.astype(np.int64) * rows.d[..., None] + (0 if rows.m is None else rows.m[..., None])
    want = x.astype(np.int64) @ wint.reshape(mt, k)[row0 : row0 + m].T  # Σ_k w·2^F·x
    assert np.array_equal(ops.qdense_acc(x, w), want)
    assert np.array_equal(ops.qdense_acc(x, packed), want)
    assert np.array_equal(ops.qdense_acc(x.astype(np.int64), w), want)
    with pytest.raises(ValueError, match="int16"):
        ops.qdense_acc(np.full((1, k), 32768), w)


@pytest.mark.parametrize("is_q4_1", [True, False])
@pytest.mark.parametrize("t", [1, 7])
def test_argmax_takes_the_first_of_equal_rows(is_q4_1, t):
    rng = np.random.default_rng(11 + t + is_q4_1)
    rows, k = 41, 64
    raw, d, m = random_blocks(rng, rows, k, is_q4_1, scale_top=1 << 10)
    x = random_x(rng, t, k)

    def check(expect_first=None):
        want = ref_acc(raw, d, m, x, is_q4_1)
        idx, best = kernel_argmax(raw, d, m, x, is_q4_1)
        assert idx.tolist() == np.argmax(want, axis=1).tolist()  # numpy: the first maximum
        assert best.tolist() == want.max(axis=1).tolist()
        if expect_first is not None:
            assert idx[0] == expect_first
        return int(idx[0])

    def copy(dst, src):
        raw[dst], d[dst] = raw[src], d[src]
        if m is not None:
            m[dst] = m[src]

    top = check()
    copy(rows - 1, top)  # a later copy of the best row: still the first
    check(top)
    if top > 0:
        copy(top // 2, top)  # an earlier copy: now that one
        check(top // 2)
    for r in range(rows):  # every row equal: row 0
        copy(r, 0)
    check(0)
    idx, _ = kernel_argmax(raw[:1], d[:1], None if m is None else m[:1], x, is_q4_1)  # M = 1
    assert idx.tolist() == [0] * t


@pytest.mark.parametrize("is_q4_1", [True, False])
def test_one_thread_and_two_give_the_same_bits(is_q4_1):
    threads = numba.config.NUMBA_NUM_THREADS
    if threads < 2:
        pytest.skip("numba has one thread here")
    rng = np.random.default_rng(5)
    raw, d, m = random_blocks(rng, 1100, 576, is_q4_1)
    x = random_x(rng, 7, 576)
    before = numba.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            numba.set_num_threads(n)
            results.append((kernel_acc(raw, d, m, x, is_q4_1), *kernel_argmax(raw, d, m, x, is_q4_1)))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(results[0][0], ref_acc(raw, d, m, x, is_q4_1))


def test_qdense_ops_on_the_kernels_at_the_bound():
    """ops.qdense and qdense_argmax through the kernels at F = 24, the largest fp16 scale below 2^24."""
    k, f = 1 << 16, 24
    d_bits = 0x3BFF  # 2047·2^(14 − 25): D = 2^24 − 2^13 at F = 24
    block = struct.pack("<H", d_bits) + bytes([0x80] * 32)  # q8_0, q = −128
    data = block * (k // 32) * 3
    w = ops.QWeights.read(data, False, k, slice(1, 3), f, "t")
    x = ops.rows_value([0, 5], np.full((2, k), -32768))
    d = 2047 << 13
    acc = d * -128 * -32768 * k
    assert ops.qdense_acc(x["q"], w).tolist() == [[acc, acc]] * 2
    assert ops.qdense_argmax(x, w, 1).tolist() == [[1, acc & 0xFFFFFFFF, acc >> 32]] * 2


# --- the row rules ----------------------------------------------------------------------------------


def py_rshr(v, n):
    return v if n == 0 else 0 if n >= 63 else (v + (1 << (n - 1))) >> n


def py_scale(v, n, lo, hi):
    """``clamp(v·2^−n)``; a left shift past 2^64 saturates as any larger one (and saves 2^33-bit ints)."""
    return min(max(py_rshr(v, n) if n >= 0 else v << min(-n, 64), lo), hi)


def py_quant(row, c, qmax):
    a = max(abs(v) for v in row)
    s = 0
    if a > qmax:
        s = max(a.bit_length() - qmax.bit_length(), 0)
        s += py_rshr(a, s) > qmax
    return min(max(c + s, I32_MIN), I32_MAX), [py_rshr(v, s) for v in row]


EDGES = sorted(
    {0, 1, 2, 3, 5, 6, 7, 127, 128, 32767, 32768, (1 << 62) - 1, 1 << 62}
    | {(1 << k) - 1 for k in range(1, 63)}
    | {1 << k for k in range(63)}
    | {(1 << k) + 1 for k in range(1, 62)}
    | {3 << k for k in range(60)}
)
"""Non-negative edges up to 2^62: 0, 1, 2^k − 1, 2^k, 2^k + 1, 3·2^k."""


def test_bitlen_at_its_edges():
    a = np.array([*EDGES, (1 << 63) - 1], dtype=np.int64)
    assert ops.bitlen(a).tolist() == [int(x).bit_length() for x in a.tolist()]
    assert ops.bitlen(a.astype(np.uint64).astype(np.int64)[:5]).tolist() == [0, 1, 2, 2, 3]
    assert ops.bitlen(np.array([-1, -(1 << 62), -(1 << 63)])).tolist() == [0, 0, 0]  # no rule: 0
    assert ops.bitlen(np.int32(255)).tolist() == 8 and ops.bitlen(np.zeros((2, 0), np.int64)).shape == (2, 0)


def test_rshr_at_its_edges():
    v = np.array(EDGES + [-x for x in EDGES], dtype=np.int64)
    for n in [*range(0, 66), 100, 1 << 33, (1 << 63) - 1]:
        assert ops.rshr(v, n).tolist() == [py_rshr(int(x), n) for x in v.tolist()], n
    n = np.arange(64)
    assert ops.rshr(v[:, None], n[None]).tolist() == [[py_rshr(int(x), int(s)) for s in n] for x in v]
    assert ops.rshr(-5, 1).tolist() == -2 and ops.rshr(5, 1).tolist() == 3  # half up
    assert ops.rshr(np.int16(-32768), 3).dtype == np.int64


@pytest.mark.parametrize(
    "lo, hi", [(I32_MIN, I32_MAX), (-(1 << 40), 1 << 40), (-(1 << 20), 1 << 20), (-(1 << 62), 1 << 62)]
)
def test_scale_at_its_edges(lo, hi):
    v = np.array(EDGES + [-x for x in EDGES], dtype=np.int64)
    for n in [-(1 << 33), -100, -64, -63, -62, -61, *range(-40, 66), 100, 1 << 33]:
        assert ops.scale(v, n, lo, hi).tolist() == [py_scale(int(x), n, lo, hi) for x in v.tolist()], n


@pytest.mark.parametrize("qmax", [32767, 127])
def test_quant_at_its_edges(qmax):
    rows = [[a, -a, 0] for a in EDGES] + [[-a, 1, 7] for a in EDGES] + [[a >> 1, a, -(a >> 2)] for a in EDGES]
    rows += [[0, 0, 0], [qmax, -qmax, 1], [qmax + 1, 0, -qmax - 1], [2 * qmax + 1] * 3]
    v = np.array(rows, dtype=np.int64)
    c = np.array([[0, I32_MIN, I32_MAX, -(1 << 40), 1 << 40, -5][i % 6] for i in range(len(rows))])
    e, q = ops.quant(v, c, qmax)
    assert e.dtype == np.int64 and q.dtype == np.int64
    for i, row in enumerate(rows):
        assert (int(e[i]), q[i].tolist()) == py_quant(row, int(c[i]), qmax), row
    # any leading shape, a scalar or a broadcast exponent
    e3, q3 = ops.quant(v[: 3 * 4].reshape(3, 4, 3), 9, qmax)
    assert e3.shape == (3, 4) and q3.shape == (3, 4, 3)
    assert [(int(a), b) for a, b in zip(e3.reshape(-1), q3.reshape(-1, 3).tolist(), strict=True)] == [
        py_quant(r, 9, qmax) for r in rows[:12]
    ]
    e1, q1 = ops.quant(np.array([100_000, -3]), np.int64(4), qmax)
    assert (int(e1), q1.tolist()) == py_quant([100_000, -3], 4, qmax)


# --- attention: the row kernel against the BLAS path ------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_attention_kernel_equals_the_blas_path(seed):
    """``qkernels.attention_rows`` (one query row in ops.attention; here any number) gives the bytes of
    ``ops._attention_blas`` (checked against the pure-Python reference in test_ops_llama.py), extreme
    values and exponents included."""
    rng = np.random.default_rng(seed)
    hd = [1, 2, 16, 64][seed % 4]
    nkv = 1 + seed % 2
    nh = nkv * (1 + seed % 3)
    t = [1, 1, 3, 5][seed % 4]
    n = t + int(rng.integers(0, 40))
    q = ops.rows_value(rng.integers(-30, 5, t), rng.integers(-32768, 32768, (t, nh * hd)))
    kv = ops.rows_value(rng.integers(-30, 5, (n, 2)), rng.integers(-32768, 32768, (n, 2, nkv * hd)))
    if seed % 2:
        q["q"][0] = -32768
        kv["q"][: n // 2] = -32768
    if seed in (3, 6):  # exponents at the ends of int32: logits saturate, alignments drop to 0
        q["e"][0] = I32_MAX
        kv["e"][0, 1] = I32_MIN
        kv["e"][-1, 0] = I32_MIN
    table = lt.exp2_table()
    for mul, sa in ((1, 0), (4727, 16), ((1 << 23) - 1, 62), ((1 << 23) - 1, 0)):
        want = ops._attention_blas(q, kv, table, hd, mul, sa)
        i64 = np.int64
        eo, qo = qkernels.attention_rows(
            q["e"].astype(i64), q["q"].astype(i64), kv["e"].astype(i64), kv["q"].astype(i64),
            table.astype(i64), hd, mul, sa,
        )  # fmt: skip
        assert ops.rows_value(eo, qo).tobytes() == want.tobytes()
        if t == 1:
            assert ops.attention(q, kv, table, hd, mul, sa).tobytes() == want.tobytes()
