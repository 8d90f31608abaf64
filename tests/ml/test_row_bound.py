"""dense/conv2d's per-row overflow bound (ml-spec §4, param ``bound`` = 1, version 2).

A row whose weights are all zero may carry a bias near 2^31 (onnxruntime's per-channel quantization
gives a dead unit a tiny weight scale, so its bias at ``x_scale·w_scale`` is huge). The tensor-wide rule
``K·255·128 + max|bias| ≤ 2^31 − 1`` refuses such a node; the per-row rule
``255·Σ_k |W[r, k]| + |bias[r]| ≤ 2^31 − 1`` admits it and still keeps every partial sum of every row in
an int32. The reader (Python) and the node program (C) draw the line at the same integer.
"""

from __future__ import annotations

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml.errors import OverflowBoundError, ParamRangeError
from opml.ml.format import (
    INT32_MAX,
    VERSION_1,
    VERSION_2,
    GraphBuilder,
    Model,
    Node,
    Op,
    encode_manifest,
    int8,
    tensor_key,
)
from opml.ml.phase import EXIT_MALFORMED, EXIT_VALID, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore

K = 40
FULL_ROW = 255 * 128 * K
"""``255·Σ|W[r]|`` of a row of ``K`` weights −128."""


@pytest.fixture(scope="module", autouse=True)
def built():
    build_toolchain()


def rows(extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """W int8 ``[2, K]`` and its bias: row 0 full (−128) at its per-row bound exactly, row 1 all zero
    (plus ``extra`` ones) with bias −(2^31 − 1): per row each is 2^31 − 1 (+ 255·extra), tensor-wide
    ``K·255·128 + 2^31 − 1``."""
    w = np.zeros((2, K), np.int8)
    w[0] = -128
    w[1, :extra] = 1
    return w, np.array([INT32_MAX - FULL_ROW, -INT32_MAX], np.int32)


def dense_model(version: int = VERSION_2, extra: int = 0, bound: int | None = None) -> Model:
    w, b = rows(extra)
    g = GraphBuilder(int8(K), version=version)
    g.dense(0, w, b, zx=127, bound=bound)
    return g.build()


def conv_model(version: int = VERSION_2, extra: int = 0, bound: int | None = None) -> Model:
    w, b = rows(extra)
    g = GraphBuilder(int8(3, 3, K), version=version)
    g.conv2d(0, w.reshape(2, 1, 1, K), b, zx=127, bound=bound)
    return g.build()


def bypassing_the_reader(model: Model, w: np.ndarray, bias: np.ndarray, bound: int = 1) -> Model:
    """``model`` (one dense or conv2d node) with weights ``w``, ``bias`` and param ``bound``, built
    without the reader's checks, as a hand-registered manifest would be."""
    (node,) = model.nodes
    wb, bb = w.reshape(-1).tobytes(), bias.astype("<i4").tobytes()
    params = list(node.params)
    params[1 if node.op is Op.DENSE else 9] = bound
    bad = Node(node.op, node.inputs, node.out, tuple(params), (tensor_key(wb), tensor_key(bb)))
    manifest = encode_manifest(model.input, [bad], version=VERSION_2)
    return Model(model.input, (bad,), {tensor_key(wb): wb, tensor_key(bb): bb}, model.values, manifest)


def refused_by_the_program(model: Model, tmp_path) -> bytes:
    """The node program's stderr on ``model``, which must make it exit 3 (malformed)."""
    _, result = node_program(model, np.zeros(model.input.shape, np.int8), tmp_path)
    assert result.exit_code == EXIT_MALFORMED
    return result.stderr


def node_program(model: Model, x: np.ndarray, tmp_path):
    run = run_model(model, x)
    return run, run_program(node_program_setup(model, x, 0, run.state(0), PreimageStore(tmp_path), run=run))


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv2d"])
def test_a_row_at_its_bound_next_to_a_dead_row_with_a_huge_bias(build, tmp_path):
    model = build()
    assert model.nodes[0].p[-1] == 1  # the builder picks the per-row bound: the tensor-wide one fails
    x = np.full(model.input.shape, -128, np.int8)  # x − zx = −255 everywhere: row 0's largest sum
    run, result = node_program(model, x, tmp_path)
    out = run.output.reshape(-1, 2)
    assert (out[:, 0] == INT32_MAX).all() and (out[:, 1] == -INT32_MAX).all()
    assert result.exit_code == EXIT_VALID and result.keys == [run.keys[1]], result.stderr


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv2d"])
def test_one_past_the_row_bound_is_refused_by_the_reader_and_the_program(build, tmp_path):
    with pytest.raises(OverflowBoundError, match=r"row 1: 255·Σ\|W\[r\]\| \+ \|bias\[r\]\| = 2147483902 > 2"):
        build(extra=1)
    w, b = rows(extra=1)
    assert b"overflow bound does not hold" in refused_by_the_program(
        bypassing_the_reader(build(), w, b), tmp_path
    )


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv2d"])
def test_a_zero_row_with_the_bias_int32_min_is_one_past_its_bound(build, tmp_path):
    # |−2^31| = 2^31: the per-row bound fails by one with no weight at all
    w, b = np.zeros((2, K), np.int8), np.array([0, -(2**31)], np.int32)
    g = GraphBuilder(int8(*build().input.shape), version=VERSION_2)
    with pytest.raises(OverflowBoundError, match=r"row 1: .* = 2147483648 > 2\^31 − 1"):
        if build is dense_model:
            g.dense(0, w, b, bound=1)
        else:
            g.conv2d(0, w.reshape(2, 1, 1, K), b, bound=1)
        g.build()
    assert b"overflow bound does not hold" in refused_by_the_program(
        bypassing_the_reader(build(), w, b), tmp_path
    )


@pytest.mark.parametrize("bound", [-1, 2])
@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv2d"])
def test_a_bound_param_outside_0_and_1_is_refused_by_the_reader_and_the_program(build, bound, tmp_path):
    with pytest.raises(ParamRangeError, match=rf"bound = {bound}, want 0 … 1"):
        build(bound=bound)
    w, b = rows()
    assert b"param outside its range" in refused_by_the_program(
        bypassing_the_reader(build(), w, b, bound), tmp_path
    )


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv2d"])
def test_the_tensor_wide_bound_still_refuses_it_and_says_what_would_pass(build):
    with pytest.raises(
        OverflowBoundError,
        match=r"K·255·128 \+ max\|bias\| = .*\(bound = 1, in a version-2 manifest, checks it per row\)",
    ):
        build(bound=0)
    with pytest.raises(
        OverflowBoundError, match=r"\(bound = 1, in a version-2 manifest, checks it per row\)"
    ):
        build(version=VERSION_1)  # version 1 has only the tensor-wide bound


def test_the_builder_keeps_the_tensor_wide_bound_where_it_holds():
    g = GraphBuilder(int8(K), version=VERSION_2)
    g.dense(0, np.ones((3, K), np.int8), np.array([5, -5, 0], np.int32))
    assert g.build().nodes[0].params[1] == 0
