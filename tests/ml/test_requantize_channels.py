"""``requantize`` per channel (ml-spec §4, version 2): element ``i`` (row-major) of an int32 value whose
last axis has ``C`` channels is requantized with row ``i mod C`` of the ``[C, 2]`` table ``(M0_c, t_c)``;
``opml.ml.ops.requantize_channels`` equals the scalar op applied channel by channel, in both rounding
modes, on dense-like ``[M]`` and conv-like ``[H, W, C]`` values."""

from __future__ import annotations

import numpy as np
import pytest

from opml.ml import ops

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def table(rng: np.random.Generator, c: int) -> np.ndarray:
    """``c`` random pairs over the whole ranges, ``M0 ∈ [1, 2^31 − 1]`` and ``t ∈ [1, 62]``, and a few
    small ones (``M0 = 1``, ``t ≤ 3``: ties on small accumulators)."""
    m0 = rng.integers(1, I32_MAX + 1, c)
    t = rng.integers(1, 63, c)
    small = rng.random(c) < 0.3
    m0[small], t[small] = 1, rng.integers(1, 4, int(small.sum()))
    return np.stack([m0, t], axis=1).astype(np.int32)


def accumulators(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.integers(I32_MIN, I32_MAX + 1, shape, dtype=np.int64)
    small = rng.random(shape) < 0.5
    x[small] = rng.integers(-300, 300, int(small.sum()))
    x.flat[:2] = I32_MIN, I32_MAX
    return x.astype(np.int32)


@pytest.mark.parametrize("shape", [(1,), (37,), (300,), (1, 1, 5), (6, 7, 3), (4, 5, 16), (2, 3, 64)])
@pytest.mark.parametrize("mode", [0, 1])
def test_per_channel_is_the_scalar_op_per_channel(shape, mode):
    rng = np.random.default_rng([len(shape), *shape, mode])
    for _ in range(5):
        c = shape[-1]
        tab = table(rng, c)
        x = accumulators(rng, shape)
        lo = int(rng.integers(-128, 128))
        zy, hi = int(rng.integers(-128, 128)), int(rng.integers(lo, 128))
        y = ops.requantize_channels(x, tab, zy, lo, hi, mode)
        assert y.dtype == np.int8 and y.shape == x.shape
        for j in range(c):
            m0, t = (int(v) for v in tab[j])
            want = ops.requantize(x[..., j], m0, t, zy, lo, hi, mode)
            assert np.array_equal(y[..., j], want), (shape, mode, j)
        flat = x.reshape(-1)  # element i uses row i mod C
        i = int(rng.integers(flat.size))
        m0, t = (int(v) for v in tab[i % c])
        assert y.reshape(-1)[i] == ops.requantize(flat[i : i + 1], m0, t, zy, lo, hi, mode)[0]


def test_one_channel_and_equal_channels_are_the_scalar_op():
    rng = np.random.default_rng(7)
    x = accumulators(rng, (5, 4, 8))
    for mode in (0, 1):
        y = ops.requantize_channels(x, np.tile([[1518500250, 38]], (8, 1)), -5, -128, 127, mode)
        assert np.array_equal(y, ops.requantize(x, 1518500250, 38, -5, -128, 127, mode))


def test_the_modes_differ_per_channel_at_ties():
    """Channel 0 at ``x/2``, channel 1 at ``x/4`` over exact ties: mode 1 rounds to the even neighbour."""
    x = np.array([[1, 2], [3, 6], [-1, -2], [-3, -6], [5, 10]], np.int32)
    tab = np.array([[1, 1], [1, 2]], np.int32)
    up = ops.requantize_channels(x, tab, 0, -128, 127, 0)
    even = ops.requantize_channels(x, tab, 0, -128, 127, 1)
    assert up.tolist() == [[1, 1], [2, 2], [0, 0], [-1, -1], [3, 3]]
    assert even.tolist() == [[0, 0], [2, 2], [0, 0], [-2, -2], [2, 2]]


@pytest.mark.parametrize("shape", [(37,), (6, 7, 3), (2, 3, 64)])
def test_per_channel_mode_2_is_the_scalar_op_per_channel(shape):
    """Mode 2 (float32 product, ``M0_c < 2^24``): per channel equals the scalar op channel by channel."""
    rng = np.random.default_rng([2, *shape])
    for _ in range(5):
        c = shape[-1]
        tab = table(rng, c)
        tab[:, 0] = (tab[:, 0] >> rng.integers(7, 31, c)) | 1  # M0_c ∈ [1, 2^24 − 1]
        assert (tab[:, 0] < 1 << 24).all()
        x = accumulators(rng, shape)
        lo = int(rng.integers(-128, 128))
        zy, hi = int(rng.integers(-128, 128)), int(rng.integers(lo, 128))
        y = ops.requantize_channels(x, tab, zy, lo, hi, 2)
        for j in range(c):
            m0, t = (int(v) for v in tab[j])
            assert np.array_equal(y[..., j], ops.requantize(x[..., j], m0, t, zy, lo, hi, 2)), (shape, j)


def test_the_float32_mode_differs_per_channel_near_ties():
    """Channel 0: fl(5·2^24 + 1) = 5·2^24 makes 2.5 + 2^−25 a tie; channel 1: the product 5·2^25 + 63
    rounds in float32 to the tie 2.5: mode 2 gives 2 where mode 1 gives 3 (−2 and −3 negated)."""
    x = np.array([[83886081, 445019], [-83886081, -445019]], np.int32)
    tab = np.array([[1, 25], [377, 26]], np.int32)
    assert ops.requantize_channels(x, tab, 0, -128, 127, 1).tolist() == [[3, 3], [-3, -3]]
    assert ops.requantize_channels(x, tab, 0, -128, 127, 2).tolist() == [[2, 2], [-2, -2]]
