"""``requantize`` mode 1 (ml-spec §4): ``q = (v + 2^(t−1) − 1 + ((v >> t) & 1)) >> t`` with ``v = x·M0`` is
``v / 2^t`` rounded half to even, for negative ``v`` too, checked against Python's exact
``round(Fraction(v, 2^t))`` (which rounds half to even): the formula on Python ints over the whole range
the op allows (``|v| < 2^62``, ``t ∈ [1, 62]``), and ``opml.ml.ops.requantize`` on random int32 inputs
and on crafted exact ties. Mode 0 keeps its half-up rounding."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from opml.ml import ops

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
V_BOUND = 2**62
"""``|x·M0| ≤ 2^31·(2^31 − 1) < 2^62`` for int32 ``x`` and ``M0 ∈ [1, 2^31 − 1]``."""


def even_formula(v: int, t: int) -> int:
    """Mode 1's rounding of ml-spec §4, on Python ints (``>>`` is the floor shift, as int64's)."""
    return (v + (1 << (t - 1)) - 1 + ((v >> t) & 1)) >> t


def half_even(v: int, t: int) -> int:
    return round(Fraction(v, 1 << t))


def half_up(v: int, t: int) -> int:
    return math.floor(Fraction(v, 1 << t) + Fraction(1, 2))


def clamp(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


def odd(rng: np.random.Generator, top: int) -> int:
    """A random odd number in ``[1, top]`` (``top ≥ 1``)."""
    return 2 * int(rng.integers(0, (top + 1) // 2)) + 1


def tie(rng: np.random.Generator, t: int, small: bool) -> tuple[int, int]:
    """``(x, M0)`` with ``x·M0 = (2k + 1)·2^(t−1)`` exactly: ``x = ±odd·2^b`` and ``M0 = odd·2^c`` with
    ``b + c = t − 1``, or ``x = −2^31`` and ``M0 = odd·2^(t − 32)`` (the only ties at ``t = 62``);
    ``small`` keeps the odd factors ≤ 15, so that ``|v / 2^t| < 128``."""
    cap = 15 if small else I32_MAX
    if t == 62 or (t >= 32 and rng.random() < 0.1):
        c = t - 32
        return I32_MIN, odd(rng, min(cap, I32_MAX >> c)) << c
    b = int(rng.integers(max(0, t - 31), min(30, t - 1) + 1))
    c = t - 1 - b
    sign = 1 if rng.random() < 0.5 else -1
    return sign * (odd(rng, min(cap, (1 << (31 - b)) - 1)) << b), odd(rng, min(cap, I32_MAX >> c)) << c


def test_formula_is_half_to_even_by_brute_force():
    """Every ``t ∈ [1, 62]``: the range's ends, the ties around 0, around ±2^62 and at random, their
    neighbours, random ``v`` in ``[−2^62, 2^62)`` and random products ``x·M0``; the sums stay in int64."""
    rng = np.random.default_rng(2024)
    checked = ties = 0
    for t in range(1, 63):
        h = 1 << (t - 1)
        vs = [0, 1, -1, V_BOUND - 1, -V_BOUND, I32_MIN * I32_MAX, I32_MAX * I32_MAX, I32_MIN * 2**30]
        edge = V_BOUND >> t  # the ties (2k + 1)·h inside [−2^62, 2^62) have −edge ≤ k < edge
        ks = [*range(-40, 40), *range(edge - 4, edge), *range(-edge, -edge + 4)]
        ks += [int(k) for k in rng.integers(-edge, edge, 300)]
        vs += [(2 * k + 1) * h + d for k in ks for d in (-1, 0, 1)]
        vs += [int(v) for v in rng.integers(-V_BOUND, V_BOUND, 1500, dtype=np.int64)]
        xs, ms = rng.integers(I32_MIN, I32_MAX + 1, 500), rng.integers(1, I32_MAX + 1, 500)
        vs += [int(a) * int(m) for a, m in zip(xs, ms, strict=True)]
        for v in vs:
            if not -V_BOUND <= v < V_BOUND:
                continue
            assert even_formula(v, t) == half_even(v, t), (v, t)
            assert -(2**63) <= v + h - 1 + 1 < 2**63  # the largest sum the formula forms
            checked += 1
            ties += v % (2 * h) == h
    assert checked > 150_000 and ties > 20_000


def random_case(rng: np.random.Generator, group: int, m0_bits: int, ends: bool = False) -> tuple:
    """100 random int32 ``x`` of random magnitudes (``ends``: the first three ``−2^31``, ``2^31 − 1``,
    ``−2^31 + 1``), ``M0 < 2^m0_bits``, ``t`` uniform in odd groups and putting the results in the int8
    range in even ones, ``zy`` and ``lo ≤ hi``: ``(x, M0, t, zy, lo, hi)``."""
    x = (rng.integers(I32_MIN, I32_MAX + 1, 100) >> rng.integers(0, 32, 100)).astype(np.int32)
    if ends:
        x[:3] = I32_MIN, I32_MAX, I32_MIN + 1
    m0 = int(rng.integers(1, 1 << int(rng.integers(1, m0_bits + 1))))
    top = max(abs(int(v)) for v in x) * m0
    t = int(rng.integers(1, 63)) if group % 2 else min(62, max(1, top.bit_length() - int(rng.integers(4, 9))))
    zy = int(rng.integers(-128, 128))
    lo = int(rng.integers(-128, 128)) if rng.random() < 0.3 else -128
    hi = int(rng.integers(lo, 128)) if rng.random() < 0.3 else 127
    return x, m0, t, zy, lo, hi


def test_numpy_mode_1_is_half_even_on_random_inputs():
    """10^5 random int32 ``x`` (1 000 groups of 100, random magnitudes) with random ``M0 ∈ [1, 2^31 − 1]``,
    ``t ∈ [1, 62]``, ``zy`` and ``lo ≤ hi``: mode 1 equals the exact half-even rounding, mode 0 the exact
    half-up one. Half the groups take ``t`` uniform, half a ``t`` that puts the results in the int8
    range, so that most of them are neither saturated nor 0."""
    rng = np.random.default_rng(7)
    inside = differ = 0
    for group in range(1000):
        x, m0, t, zy, lo, hi = random_case(rng, group, m0_bits=31)
        even = ops.requantize(x, m0, t, zy, lo, hi, 1)
        up = ops.requantize(x, m0, t, zy, lo, hi)
        assert even.dtype == np.int8 and up.dtype == np.int8
        for xi, e, u in zip(x.tolist(), even.tolist(), up.tolist(), strict=True):
            v = xi * m0
            assert e == clamp(zy + half_even(v, t), lo, hi), (xi, m0, t, zy, lo, hi)
            assert u == clamp(zy + half_up(v, t), lo, hi), (xi, m0, t, zy, lo, hi)
            inside += lo < zy + half_even(v, t) < hi
            differ += e != u
    assert inside > 30_000
    assert differ > 0


@pytest.mark.parametrize("small", [True, False], ids=["in range", "anywhere"])
def test_numpy_mode_1_on_exact_ties(small):
    """``x·M0 = (2k + 1)·2^(t−1)`` exactly, positive and negative, at every ``t``: mode 1 rounds to the
    even neighbour, mode 0 up (they differ exactly where ``k`` is even)."""
    rng = np.random.default_rng(11 if small else 12)
    for t in range(1, 63):
        for xi, m0 in [tie(rng, t, small) for _ in range(60)]:
            v = xi * m0
            assert v % (1 << t) == 1 << (t - 1) and abs(v) < V_BOUND
            k = (v - (1 << (t - 1))) >> t  # v / 2^t = k + 1/2
            even = int(ops.requantize(np.array([xi], np.int32), m0, t, 0, -128, 127, 1)[0])
            up = int(ops.requantize(np.array([xi], np.int32), m0, t, 0, -128, 127, 0)[0])
            assert even == clamp(k + (k & 1), -128, 127) == clamp(half_even(v, t), -128, 127), (xi, m0, t)
            assert up == clamp(k + 1, -128, 127), (xi, m0, t)


def test_mode_0_is_the_default_and_rounds_half_up():
    x = np.array([1, -1, 3, -3, 5, -5, I32_MIN, I32_MAX], np.int32)
    assert ops.requantize(x, 1, 1, 0, -128, 127).tolist() == [1, 0, 2, -1, 3, -2, -128, 127]
    assert ops.requantize(x, 1, 1, 0, -128, 127, 0).tolist() == [1, 0, 2, -1, 3, -2, -128, 127]
    assert ops.requantize(x, 1, 1, 0, -128, 127, 1).tolist() == [0, 0, 2, -2, 2, -2, -128, 127]


# --- mode 2: float32 product, half to even (onnxruntime's requantization; M0 < 2^24) -------------------


def f32_reference(x: np.ndarray, m0, t, zy: int = 0, lo: int = -128, hi: int = 127) -> np.ndarray:
    """onnxruntime's arithmetic in numpy float32: ``rint(fl(fl(x)·r))``, ``r = fl(M0·2^−t)`` (exact), then
    ``+ zy`` and the clamp. ``M0 ≥ 1`` and ``t ≤ 62`` make ``r ≥ 2^−62``, a normal float32 (never below
    2^−126), and ``|fl(x)·r| < 2^55``: the product is finite and, for ``x ≠ 0``, normal."""
    r = np.asarray(np.asarray(m0, np.float64) * 2.0 ** -np.asarray(t, np.float64), np.float32)
    assert (r.astype(np.float64) == np.asarray(m0, np.float64) * 2.0 ** -np.asarray(t, np.float64)).all()
    prod = np.asarray(x).astype(np.float32) * r
    assert prod.dtype == np.float32 and np.isfinite(prod).all()
    return np.clip(np.rint(prod).astype(np.float64) + zy, lo, hi).astype(np.int8)


def f32_unclamped(x: np.ndarray, m0: int, t: int) -> list[int]:
    r = np.float32(m0 * 2.0**-t)
    return [int(v) for v in np.rint(np.asarray(x).astype(np.float32) * r).astype(np.float64)]


def rne24_sign_magnitude(v: int) -> tuple[int, int]:
    """``v`` to 24 significant bits as float32 rounds it: the magnitude rounded half to even, the sign
    put back (``Fraction``'s ``round`` is half to even)."""
    s = max(0, abs(v).bit_length() - 24)
    q = round(Fraction(abs(v), 1 << s))
    return (q if v >= 0 else -q), s


def test_signed_floor_rounding_is_sign_magnitude_rounding():
    """Mode 2 applies ``rne(v / 2^s) = (v + 2^(s−1) − 1 + ((v >> s) & 1)) >> s`` to the signed value with
    ``s`` from ``|v|``: the same as float32's sign-magnitude rounding, by brute force over every ``|v| <
    2^16`` at 8 significant bits (same rule, small enough to enumerate) and random ``v`` at 24 bits."""
    for v in range(-(1 << 16), 1 << 16):
        s = max(0, abs(v).bit_length() - 8)
        q = (v + (1 << (s - 1)) - 1 + ((v >> s) & 1)) >> s if s else v
        mag = round(Fraction(abs(v), 1 << s))
        assert q == (mag if v >= 0 else -mag), v
    rng = np.random.default_rng(3)
    xs, ms = rng.integers(-(2**31), 2**31, 20000), rng.integers(1, 2**24, 20000)
    vs = [int(a) * int(b) for a, b in zip(xs, ms, strict=True)]
    vs += [(2 * k + 1) << 20 for k in range(-3000, 3000)]  # ties at 24 bits (bit length 42 … 45)
    for v in vs:
        want = rne24_sign_magnitude(v)
        q, s = ops._rne24(np.array([v], np.int64))
        assert (int(q[0]), int(s[0])) == want, v


def test_numpy_mode_2_is_float32_on_random_inputs():
    """2·10^5 random int32 ``x`` (2 000 groups of 100, random magnitudes, |x| ≥ 2^24 included, and ±2^31
    ends in every group) with random ``M0 ∈ [1, 2^24 − 1]`` and ``t ∈ [1, 62]`` (half uniform, half putting
    results in the int8 range): mode 2 equals numpy's float32 arithmetic, clamped and, through the
    integer core, unclamped."""
    rng = np.random.default_rng(2025)
    inside = big = 0
    for group in range(2000):
        x, m0, t, zy, lo, hi = random_case(rng, group, m0_bits=24, ends=True)
        y = ops.requantize(x, m0, t, zy, lo, hi, 2)
        assert y.dtype == np.int8
        assert np.array_equal(y, f32_reference(x, m0, t, zy, lo, hi)), (m0, t, zy, lo, hi)
        assert ops._float32_product(x, m0, t).tolist() == f32_unclamped(x, m0, t), (m0, t)
        inside += int(((y > lo) & (y < hi)).sum())
        big += int((np.abs(x.astype(np.int64)) >= 1 << 24).sum())
    assert inside > 50_000 and big > 30_000


# (x, M0, t, mode 1, mode 2): where the float32 product, or fl(x), moves a value onto a tie (or past one)
PINNED = [
    (83886081, 1, 25, 3, 2),  # fl(5·2^24 + 1) = 5·2^24: 2.5 + 2^−25 becomes the tie 2.5 → 2
    (-83886081, 1, 25, -3, -2),
    (445019, 377, 26, 3, 2),  # x·M0 = 5·2^25 + 63: fl rounds the product to the tie 2.5
    (-445019, 377, 26, -3, -2),
    (91153, 3313, 26, 5, 4),  # 4.5 + tiny → 4.5 → 4
    (4242, 158201, 28, 3, 2),
    (2726771, 443, 28, 5, 4),
    (1194144765, 1974093, 46, 33, 34),  # found at random: 33.4999… rounds up to the tie 33.5 → 34
]


@pytest.mark.parametrize("x, m0, t, one, two", PINNED)
def test_mode_2_differs_from_mode_1_near_ties(x, m0, t, one, two):
    xs = np.array([x], np.int32)
    assert int(ops.requantize(xs, m0, t, 0, -128, 127, 1)[0]) == one == half_even(x * m0, t)
    assert int(ops.requantize(xs, m0, t, 0, -128, 127, 2)[0]) == two == int(f32_reference(xs, m0, t)[0])
    tab = np.array([[m0, t]], np.int32)
    assert int(ops.requantize_channels(xs, tab, 0, -128, 127, 2)[0]) == two


def test_mode_2_differences_are_found_at_random():
    """Differences from mode 1 are rare (near-ties only), but a random search over products near the
    int8 range finds them, every one of them float32's answer."""
    rng = np.random.default_rng(9)
    x = rng.integers(1 << 24, I32_MAX + 1, 400_000, dtype=np.int64) * rng.choice([-1, 1], 400_000)
    x = x.astype(np.int32)
    found = 0
    for m0 in (1974093, 11863283, 377, 16777215):
        t = (int(I32_MAX) * m0).bit_length() - 7
        two = ops.requantize(x, m0, t, 0, -128, 127, 2)
        one = ops.requantize(x, m0, t, 0, -128, 127, 1)
        assert np.array_equal(two, f32_reference(x, m0, t))
        found += int((one != two).sum())
    assert found > 0
