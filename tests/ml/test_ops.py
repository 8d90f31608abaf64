"""opml.ml.ops against the pure-Python loops of _ml_reference (written from ml-spec §4), over seeded
random tensors, the int8 extremes −128/127, saturation, the overflow bound and the smallest shapes."""

import math

import _ml_reference as ref
import numpy as np
import pytest

from opml.ml import ops
from opml.ml.quantize import quantize_multiplier, softmax_table

RNG_SEED = 8


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def i8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(np.int8)


def flat(a) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


# --- hand-derived values (independent of both implementations) ------------------------------------


def test_requantize_rounds_half_up_towards_plus_infinity():
    # M0 / 2^t = 1/2: x·1/2 for x = 1, −1, 3, −3 → 0.5, −0.5, 1.5, −1.5 → 1, 0, 2, −1.
    y = ops.requantize(np.array([1, -1, 3, -3], np.int32), 1, 1, 0, -128, 127)
    assert y.tolist() == [1, 0, 2, -1]
    # saturation at both ends, zero point added before the clamp, fused ReLU (lo = zy)
    y = ops.requantize(np.array([-(2**31), 2**31 - 1, 0, -5], np.int32), 2**31 - 1, 31, 3, 3, 127)
    assert y.tolist() == [3, 127, 3, 3]


def test_avgpool_rounds_half_up_with_floor_division():
    # windows (1, 2) → 1.5 → 2;  (−1, −2) → −1.5 → −1;  (−128, −128) → −128;  (127, 126) → 126.5 → 127
    x = np.array([1, 2, -1, -2, -128, -128, 127, 126], np.int8).reshape(4, 2, 1)
    assert ops.avgpool(x, (1, 2), (1, 1)).reshape(-1).tolist() == [2, -1, -128, 127]


def test_softmax_hand_values():
    table = np.zeros(256, np.int32)
    table[255] = 1 << 16
    # one maximum → 256/256 → clamped to 127; the others → −128
    assert ops.softmax(np.array([5, 1, -128], np.int8), table).tolist() == [127, -128, -128]
    # two equal maxima: 256·2^16 / 2^17 = 128 → 0
    assert ops.softmax(np.array([7, 7], np.int8), table).tolist() == [0, 0]
    # S = 0 gives −128 everywhere
    assert ops.softmax(np.array([3, 4], np.int8), np.zeros(256, np.int32)).tolist() == [-128, -128]


def test_argmax_takes_the_first_maximum():
    assert ops.argmax(np.array([[1, 9], [9, 0]], np.int8)).tolist() == [1]
    assert ops.argmax(np.array([-128], np.int8)).tolist() == [0]
    assert ops.argmax(np.array([-(2**31), 2**31 - 1, 2**31 - 1], np.int32)).tolist() == [1]


def test_dense_at_the_accumulation_bound():
    # K = 65 793 (the largest without bias): every product (−128 − 127)·(−128) = 32 640
    k = 65_793
    x = np.full(k, -128, np.int8)
    w = np.full((1, k), -128, np.int8)
    assert ops.dense(x, w, None, 127).tolist() == [k * 32_640] == [2_147_483_520]
    # the same bound downwards, with a bias that fills the rest of int32
    w2 = np.full((1, k), 127, np.int8)
    assert ops.dense(x, w2, np.array([-127], np.int32), 127).tolist() == [-(k * 255 * 127) - 127]


# --- random tensors against the reference ---------------------------------------------------------


@pytest.mark.parametrize("k,m", [(1, 1), (7, 3), (64, 10), (300, 5)])
def test_dense_matches_reference(rng, k, m):
    for zx in (-128, 0, 127, int(rng.integers(-128, 128))):
        x, w = i8(rng, (k,)), i8(rng, (m, k))
        bias = rng.integers(-(2**20), 2**20, size=m).astype(np.int32)
        for b in (None, bias):
            got = ops.dense(x, w, b, zx)
            assert got.dtype == np.int32
            assert flat(got) == ref.dense(flat(x), flat(w), None if b is None else flat(b), zx, m)


def test_dense_extremes_and_batch(rng):
    x = np.array([-128, 127, -128, 127], np.int8)
    w = np.array([[-128, -128, 127, 127], [127, -128, -128, 127]], np.int8)
    for zx in (-128, 127):
        assert flat(ops.dense(x, w, None, zx)) == ref.dense(flat(x), flat(w), None, zx, 2)
    xb = i8(rng, (5, 2, 3))
    wb = i8(rng, (4, 6))
    got = ops.dense_batch(xb, wb, None, -3)
    assert got.shape == (5, 4)
    for n in range(5):
        assert flat(got[n]) == ref.dense(flat(xb[n]), flat(wb), None, -3, 4)


CONV_CASES = [
    # (H, W, C), (OC, KH, KW), strides, pads (top, left, bottom, right)
    ((1, 1, 1), (1, 1, 1), (1, 1), (0, 0, 0, 0)),
    ((1, 1, 2), (2, 3, 3), (1, 1), (1, 1, 1, 1)),
    ((5, 4, 2), (3, 2, 3), (1, 1), (0, 0, 0, 0)),
    ((7, 7, 3), (4, 3, 3), (2, 2), (1, 1, 1, 1)),
    ((6, 5, 1), (2, 3, 2), (3, 1), (0, 1, 0, 0)),
    ((8, 8, 2), (3, 3, 3), (1, 1), (2, 0, 0, 2)),
]


@pytest.mark.parametrize("xshape,wshape,strides,pads", CONV_CASES)
def test_conv2d_matches_reference(rng, xshape, wshape, strides, pads):
    oc, kh, kw = wshape
    x = i8(rng, xshape)
    w = i8(rng, (oc, kh, kw, xshape[2]))
    bias = rng.integers(-1000, 1000, size=oc).astype(np.int32)
    for zx, b in ((-128, None), (127, bias), (int(rng.integers(-128, 128)), bias)):
        got = ops.conv2d(x, w, b, zx, strides, pads)
        rb = None if b is None else flat(b)
        want, shape = ref.conv2d(flat(x), xshape, flat(w), w.shape, rb, zx, strides, pads)
        assert got.shape == shape and got.dtype == np.int32
        assert flat(got) == want


def test_conv2d_extremes_and_batch(rng):
    x = np.full((3, 3, 2), -128, np.int8)
    w = np.full((1, 3, 3, 2), -128, np.int8)
    got = ops.conv2d(x, w, None, 127, (1, 1), (1, 1, 1, 1))
    want, _ = ref.conv2d(flat(x), (3, 3, 2), flat(w), w.shape, None, 127, (1, 1), (1, 1, 1, 1))
    assert flat(got) == want
    assert int(got[1, 1, 0]) == 18 * 32_640  # the centre sees no padding
    xb = i8(rng, (3, 4, 4, 2))
    wb = i8(rng, (2, 3, 3, 2))
    batch = ops.conv2d(xb, wb, None, 5, (1, 1), (1, 1, 1, 1))
    for n in range(3):
        assert np.array_equal(batch[n], ops.conv2d(xb[n], wb, None, 5, (1, 1), (1, 1, 1, 1)))


def test_requantize_matches_reference(rng):
    x = np.concatenate([rng.integers(-(2**31), 2**31, size=200), [-(2**31), 2**31 - 1, 0, 1, -1]]).astype(
        np.int32
    )
    for m0, t in ((1, 1), (2**31 - 1, 62), (2**31 - 1, 1), (1 << 30, 31), (123_456_789, 40)):
        for zy, lo, hi in ((0, -128, 127), (-128, -128, 127), (17, 17, 100), (5, 5, 5)):
            got = ops.requantize(x, m0, t, zy, lo, hi)
            assert got.dtype == np.int8
            assert flat(got) == ref.requantize(flat(x), m0, t, zy, lo, hi)


def test_add_matches_reference(rng):
    a, b = i8(rng, (4, 3, 5)), i8(rng, (4, 3, 5))
    a[0, 0, 0], b[0, 0, 0] = -128, 127
    a[0, 0, 1], b[0, 0, 1] = 127, 127
    cases = [
        (-128, 2**31 - 1, 127, 2**31 - 1, 62, 0, -128, 127),
        (127, 2**31 - 1, -128, 2**31 - 1, 1, 0, -128, 127),  # saturates at both ends
        (3, 1 << 30, -7, 1 << 29, 30, -4, -128, 127),
        (0, 0, 0, 12345, 20, 10, 10, 120),
    ]
    for params in cases:
        got = ops.add(a, b, *params)
        assert got.shape == a.shape and got.dtype == np.int8
        assert flat(got) == ref.add(flat(a), flat(b), *params)


def test_relu_matches_reference(rng):
    x8 = i8(rng, (50,))
    for z in (-128, 0, 127, -3):
        got = ops.relu(x8, z)
        assert got.dtype == np.int8 and flat(got) == ref.relu(flat(x8), z)
    x32 = rng.integers(-(2**31), 2**31, size=50).astype(np.int32)
    for z in (-(2**31), 0, 2**31 - 1):
        got = ops.relu(x32, z)
        assert got.dtype == np.int32 and flat(got) == ref.relu(flat(x32), z)


POOL_CASES = [
    ((1, 1, 1), (1, 1), (1, 1)),
    ((4, 4, 2), (2, 2), (2, 2)),
    ((5, 7, 3), (2, 3), (2, 2)),  # floor: trailing rows/columns dropped
    ((6, 6, 1), (3, 3), (1, 1)),  # overlapping windows
    ((3, 8, 2), (3, 1), (5, 3)),
]


@pytest.mark.parametrize("xshape,kernel,strides", POOL_CASES)
def test_pools_match_reference(rng, xshape, kernel, strides):
    x = i8(rng, xshape)
    x.reshape(-1)[:2] = [-128, 127][: x.size]
    for fn, rfn in ((ops.maxpool, ref.maxpool), (ops.avgpool, ref.avgpool)):
        got = fn(x, kernel, strides)
        want, shape = rfn(flat(x), xshape, kernel, strides)
        assert got.shape == shape and got.dtype == np.int8
        assert flat(got) == want
    allmin = np.full(xshape, -128, np.int8)
    assert set(flat(ops.avgpool(allmin, kernel, strides))) == {-128}
    allmax = np.full(xshape, 127, np.int8)
    assert set(flat(ops.avgpool(allmax, kernel, strides))) == {127}


def test_reshape_keeps_bytes(rng):
    x = i8(rng, (2, 3, 4))
    y = ops.reshape(x, (4, 6))
    assert y.shape == (4, 6) and y.tobytes() == x.tobytes()


def test_argmax_matches_reference(rng):
    for shape in ((1,), (10,), (3, 4, 5)):
        x = i8(rng, shape, -3, 3)  # many ties
        assert flat(ops.argmax(x)) == ref.argmax(flat(x))
    xb = i8(rng, (6, 4), -2, 2)
    assert [int(v) for v in ops.argmax_batch(xb)[:, 0]] == [ref.argmax(flat(r))[0] for r in xb]


def test_lut_matches_reference(rng):
    table = i8(rng, (256,))
    x = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
    assert flat(ops.lut(x, table)) == ref.lut(flat(x), flat(table)) == flat(table)
    x2 = i8(rng, (3, 7))
    assert flat(ops.lut(x2, table)) == ref.lut(flat(x2), flat(table))


def test_softmax_matches_reference(rng):
    for n in (1, 2, 10, 257):
        for _ in range(5):
            x = i8(rng, (n,))
            table = rng.integers(0, (1 << 16) + 1, size=256).astype(np.int32)
            assert flat(ops.softmax(x, table)) == ref.softmax(flat(x), flat(table))
    # the extreme range d = −255, the largest table values, the largest n
    x = np.array([127, -128] * 5, np.int8)
    full = np.full(256, 1 << 16, np.int32)
    assert flat(ops.softmax(x, full)) == ref.softmax(flat(x), flat(full))
    big = np.full(32_767, 127, np.int8)
    got = ops.softmax(big, full)  # S = 32 767 · 2^16 < 2^31
    assert flat(got) == [-128] * 32_767  # 256/32 767 rounds to 0


def test_softmax_within_one_lsb_of_float_softmax(rng):
    """ml-spec §4: with the exporter's table the error is ≤ 1/256 per output for n ≤ 256."""
    worst = 0.0
    for n in (2, 3, 10, 64, 256):
        for _ in range(20):
            scale = float(rng.uniform(0.01, 0.5))
            table = softmax_table(scale)
            assert int(table[255]) == 1 << 16 and int(table.min()) >= 0
            x = i8(rng, (n,))
            y = ops.softmax(x, table).astype(np.int64)
            real = scale * (x.astype(np.float64) - 3)  # any zero point: softmax is shift invariant
            p = np.exp(real - real.max())
            p /= p.sum()
            err = np.abs((y + 128) / 256 - p).max() * 256
            worst = max(worst, err)
    assert worst <= 1.0, worst


# --- the exporter's integer-exact multiplier rule -------------------------------------------------


def test_quantize_multiplier_rule():
    from fractions import Fraction

    m0, t = quantize_multiplier(Fraction(1, 2))
    assert (m0, t) == (1 << 30, 31)  # 2^30 / 2^31; t = 32 would need M0 = 2^31
    m0, t = quantize_multiplier(Fraction(1, 3))
    assert t == 32 and m0 == math.floor(Fraction(1 << 32, 3) + Fraction(1, 2)) == 1_431_655_765
    assert quantize_multiplier(2.0**-40) == (1 << 22, 62)
    assert quantize_multiplier(2.0**-63) == (1, 62)  # ⌊1/2 + 1/2⌋
    for too_small in (2.0**-64, 2.0**-70):
        with pytest.raises(ValueError):
            quantize_multiplier(too_small)
    with pytest.raises(ValueError):
        quantize_multiplier(2.0**31)
