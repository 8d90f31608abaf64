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


def test_numpy_mode_1_is_half_even_on_random_inputs():
    """10^5 random int32 ``x`` (1 000 groups of 100, random magnitudes) with random ``M0 ∈ [1, 2^31 − 1]``,
    ``t ∈ [1, 62]``, ``zy`` and ``lo ≤ hi``: mode 1 equals the exact half-even rounding, mode 0 the exact
    half-up one. Half the groups take ``t`` uniform, half a ``t`` that puts the results in the int8
    range, so that most of them are neither saturated nor 0."""
    rng = np.random.default_rng(7)
    inside = differ = 0
    for group in range(1000):
        x = (rng.integers(I32_MIN, I32_MAX + 1, 100) >> rng.integers(0, 32, 100)).astype(np.int32)
        m0 = int(rng.integers(1, 1 << int(rng.integers(1, 32))))
        big = max(abs(int(v)) for v in x) * m0
        t = (
            int(rng.integers(1, 63))
            if group % 2
            else min(62, max(1, big.bit_length() - int(rng.integers(4, 9))))
        )
        zy = int(rng.integers(-128, 128))
        lo = int(rng.integers(-128, 128)) if rng.random() < 0.3 else -128
        hi = int(rng.integers(lo, 128)) if rng.random() < 0.3 else 127
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
