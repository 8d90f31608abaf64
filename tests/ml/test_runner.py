"""The native runner (ml-spec §5–§6): float64-BLAS products exact at the accumulation bound, every value
equal to the pure-Python reference interpreter, keys and states against an independent chunk-Merkle
key, and the batch path equal to the single-input path."""

import _ml_reference as ref
import numpy as np
import pytest
from _ml_fixtures import ALL_OPS_INPUT, all_ops_model, rand_i8, tiny_model
from test_format import chunk_merkle_key

from opml.ml import ops
from opml.ml.errors import InvalidInputError
from opml.ml.format import GraphBuilder, int8
from opml.ml.runner import run_batch, run_model


def exact_dense(x, w, bias, zx):
    """``x [B, K]`` by int64 matmul (numpy's integer matmul: no BLAS, no rounding)."""
    acc = (x.astype(np.int64) - zx) @ w.astype(np.int64).T
    return acc + (0 if bias is None else bias.astype(np.int64))


# --- BLAS exactness -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [65_793, 40_000])
def test_dense_blas_is_exact_at_the_bound(k):
    """Largest K the bound allows: products of ±32 640 and ±32 385 in every sign pattern."""
    rng = np.random.default_rng(k)
    m, b = 32, 32
    w = rng.choice(np.array([-128, 127], np.int8), size=(m, k))
    w[0] = -128  # row 0: every product +32 640 for x = −128, zx = 127 → the bound itself
    w[1] = 127
    x = rng.choice(np.array([-128, 127], np.int8), size=(b, k))
    x[0] = -128
    for zx in (127, -128):
        got = ops.dense_batch(x, w, None, zx)
        want = exact_dense(x, w, None, zx)
        assert np.array_equal(got.astype(np.int64), want)
        assert got.dtype == np.int32
    assert int(ops.dense_batch(x, w, None, 127)[0, 0]) == k * 32_640
    if k == 65_793:
        assert k * 32_640 == 2**31 - 1 - 127


def test_dense_blas_is_exact_with_bias_filling_int32():
    rng = np.random.default_rng(3)
    k = 1000
    bias_room = 2**31 - 1 - k * 32_640
    w = rng.choice(np.array([-128, 127], np.int8), size=(8, k))
    x = rng.choice(np.array([-128, 127], np.int8), size=(16, k))
    bias = rng.choice(np.array([-bias_room, bias_room]), size=8).astype(np.int32)
    for zx in (-128, 127, 0):
        assert np.array_equal(ops.dense_batch(x, w, bias, zx).astype(np.int64), exact_dense(x, w, bias, zx))


def test_conv2d_blas_is_exact_at_the_filter_limit():
    """KH·KW·C = 4096 (the largest filter), inputs and weights at the int8 extremes."""
    rng = np.random.default_rng(4)
    kh = kw = 4
    c = 256
    x = rng.choice(np.array([-128, 127], np.int8), size=(6, 6, c))
    w = rng.choice(np.array([-128, 127], np.int8), size=(3, kh, kw, c))
    w[0] = -128
    x[:4, :4] = -128
    for zx in (127, -128):
        got = ops.conv2d(x, w, None, zx, (2, 2), (1, 1, 1, 1))
        pad = np.pad(x.astype(np.int64) - zx, ((1, 1), (1, 1), (0, 0)))
        want = np.zeros(got.shape, np.int64)
        for a in range(got.shape[0]):
            for b in range(got.shape[1]):
                patch = pad[2 * a : 2 * a + kh, 2 * b : 2 * b + kw, :].reshape(-1)
                want[a, b] = w.reshape(3, -1).astype(np.int64) @ patch
        assert np.array_equal(got.astype(np.int64), want)
    assert int(ops.conv2d(x, w, None, 127, (1, 1), (0, 0, 0, 0))[0, 0, 0]) == 4096 * 32_640


# --- runner vs the reference interpreter ----------------------------------------------------------


def _inputs(shape, n, seed):
    rng = np.random.default_rng(seed)
    yield np.full(shape, -128, np.int8)
    yield np.full(shape, 127, np.int8)
    for _ in range(n):
        yield rand_i8(rng, shape)


def test_every_value_matches_the_reference_interpreter():
    model = all_ops_model()
    for x in _inputs(ALL_OPS_INPUT, 4, 11):
        result = run_model(model, x)
        want = ref.run_manifest(model.manifest, dict(model.tensors), x.tobytes())
        got = [v.tobytes() for v in result.values]
        assert len(got) == len(model.nodes) + 1
        for v, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g == w, f"value {v} ({model.nodes[v - 1].op.name if v else 'input'}) differs"


def test_keys_and_states_against_an_independent_chunk_merkle_key():
    model = all_ops_model()
    x = rand_i8(np.random.default_rng(5), ALL_OPS_INPUT)
    r = run_model(model, x)
    n = len(model.nodes)
    assert len(r.keys) == n + 1 and len(r.states) == n + 1
    for v, value in enumerate(r.values):
        assert r.keys[v] == chunk_merkle_key(value.tobytes())
        assert value.dtype == model.values[v].dtype.np and value.shape == model.values[v].shape
    for i in range(-1, n):
        assert r.state(i) == chunk_merkle_key(b"".join(r.keys[: i + 2]))
        assert r.state_preimage(i)[32 * (i + 1) : 32 * (i + 2)] == r.keys[i + 1]
    assert r.output_key == r.keys[n] == r.state_preimage(n - 1)[32 * n :]
    with pytest.raises(IndexError):
        r.state(n)
    # one changed input byte changes the input key and every state
    x2 = x.copy()
    x2[0, 0, 0] ^= 1
    r2 = run_model(model, x2)
    assert all(a != b for a, b in zip(r.states, r2.states, strict=True))


def test_int32_values_are_little_endian():
    r = run_model(tiny_model(), np.array([1, 2, 3, 4], np.int8))
    # dense: 7 + (−2)·1 + (−1)·(−2) + 0·3 + 1·(−4) = 3;  −9 + (−2)·127 + (−1)·(−128) + 0 + 1·5 = −130
    assert r.values[1].tolist() == [3, -130]
    assert r.values[1].tobytes() == bytes.fromhex("03000000") + (-130).to_bytes(4, "little", signed=True)
    assert r.output.tolist() == [0]


def test_batch_path_equals_single_path():
    model = all_ops_model()
    xs = np.stack(list(_inputs(ALL_OPS_INPUT, 6, 12)))
    batch = run_batch(model, xs, keep=True)
    assert isinstance(batch, list)
    for n, x in enumerate(xs):
        single = run_model(model, x)
        for v in range(len(single.values)):
            assert np.array_equal(batch[v][n], single.values[v])
    out = run_batch(model, xs)
    assert np.array_equal(out, batch[-1])


def test_shared_weights_and_value_zero_as_second_input():
    g = GraphBuilder(int8(4))
    a = g.relu(0, -5)
    s = g.add_(a, 0, za=0, ma=1 << 30, zb=0, mb=1 << 30, t=31, zy=0, lo=-128, hi=127)
    w = np.array([[1, 2, 3, 4], [-1, -2, -3, -4]], np.int8)
    d1 = g.dense(s, w)
    q = g.requantize(d1, 1, 1, 0)
    q = g.reshape(q, [2])
    g.dense(g.reshape(g.add_(q, q, 0, 1, 0, 1, 1, 0, -128, 127), [1, 2]), np.ones((1, 2), np.int8))
    model = g.build()
    for x in _inputs((4,), 5, 13):
        got = [v.tobytes() for v in run_model(model, x).values]
        assert got == ref.run_manifest(model.manifest, dict(model.tensors), x.tobytes())


def test_invalid_inputs():
    model = tiny_model()
    with pytest.raises(InvalidInputError):
        run_model(model, np.zeros(3, np.int8))
    with pytest.raises(InvalidInputError):
        run_model(model, np.full(4, 200))
    with pytest.raises(InvalidInputError):
        run_batch(model, np.zeros(4, np.int8))
    with pytest.raises(InvalidInputError):
        run_batch(model, np.zeros((2, 4), np.float64))
