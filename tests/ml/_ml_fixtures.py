"""Small models for the ml tests, built with opml.ml.format.GraphBuilder from seeded random weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from opml.ml.format import GraphBuilder, Model, TensorDesc, int8
from opml.ml.quantize import quantize_multiplier, softmax_table

ALL_OPS_INPUT = (6, 6, 2)


def rand_i8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(np.int8)


def all_ops_model(seed: int = 1) -> Model:
    """A 14-node model that uses every op of ml-spec §4 (conv2d, relu on int32 and int8, requantize,
    both pools, add, lut, reshape, dense with and without bias, softmax, argmax)."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder(int8(*ALL_OPS_INPUT))
    bias = rng.integers(-5000, 5000, size=3).astype(np.int32)
    v = g.conv2d(0, rand_i8(rng, (3, 3, 3, 2)), bias, zx=-5, pads=(1, 1, 1, 1))
    v = g.relu(v, -100)
    m0, t = quantize_multiplier(1 / 150)
    v3 = g.requantize(v, m0, t, zy=-3)
    a = g.maxpool(v3, (2, 2), (2, 2))
    b = g.avgpool(v3, (2, 2), (2, 2))
    ta = 31  # a·0.6 + b·0.42 with one shift
    v = g.add_(a, b, za=-3, ma=round(0.6 * 2**ta), zb=-3, mb=round(0.42 * 2**ta), t=ta, zy=2, lo=-120, hi=120)
    v = g.lut(v, rand_i8(rng, (256,)))
    v = g.relu(v, -10)
    v = g.reshape(v, [27])
    v = g.dense(v, rand_i8(rng, (12, 27)), rng.integers(-9000, 9000, size=12).astype(np.int32), zx=-10)
    m0, t = quantize_multiplier(1 / 300)
    v = g.requantize(v, m0, t, zy=0)
    v = g.softmax(v, softmax_table(0.05))
    v = g.dense(v, rand_i8(rng, (5, 12)), None, zx=-128)
    g.argmax(v)
    return g.build()


def tiny_model() -> Model:
    """Two nodes: dense int8[4] → int32[2] (with bias), then argmax."""
    g = GraphBuilder(int8(4))
    v = g.dense(0, np.array([[1, -2, 3, -4], [127, -128, 0, 5]], np.int8), np.array([7, -9], np.int32), zx=3)
    g.argmax(v)
    return g.build()


def node_model(input_desc: TensorDesc, build: Callable[[GraphBuilder], object]) -> Model:
    """A model whose graph ``build`` adds to a builder over ``input_desc``."""
    g = GraphBuilder(input_desc)
    build(g)
    return g.build()
