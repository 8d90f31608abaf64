"""The cost bound (ml-spec §9, opml.ml.cost): every program a dispute can run stays below its bound.

- The C side (mips-toolchain/ml/cost.c, through tests/ml_cost.c) computes the same integers as Python.
- The node program's real VM steps on every node of both digits models and on seeded random shapes of
  every op are at most ``node_step_bound``, and the bound is at most 4× the steps; the whole-model
  program's steps are at most ``model_step_bound``.
- The attack: a 2-node model whose conv2d 1×1 writes a 16 MiB int32 output (≈ 1.5·10^10 VM steps to
  hash) is rejected by the reader (``NodeCostError``), and the node and whole-model programs exit 3 on
  it within a few thousand steps. At the cap itself, the programs and the reader draw the line at the
  same node.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from _ml_fixtures import all_ops_model, rand_i8
from _toolchain import build_toolchain

from opml.errors import OpmlError
from opml.ml import cost
from opml.ml.cost import (
    MAX_MODEL_STEPS,
    MAX_NODE_STEPS,
    STEPS_READ_BYTE,
    model_program_bound,
    model_step_bound,
    node_bound,
    node_step_bound,
    node_work,
)
from opml.ml.errors import ModelFormatError, NodeCostError, ProgramRunError
from opml.ml.format import (
    V1_OPS,
    DType,
    GraphBuilder,
    Model,
    Node,
    Op,
    TensorDesc,
    check_value,
    decode_model_file,
    encode_manifest,
    encode_model_file,
    int8,
    int32,
    read_model,
    tensor_key,
)
from opml.ml.phase import (
    EXIT_MALFORMED,
    EXIT_VALID,
    model_program_setup,
    node_program_setup,
    run_program,
)
from opml.ml.quantize import softmax_table
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.fast import FastVM

MODELS = Path(__file__).resolve().parents[2] / "models"
EXPECTED = Path(__file__).resolve().parents[2] / "mips-toolchain" / "tests" / "expected" / "ml_cost.out"
LOOSEST = 4
"""The largest bound/steps ratio allowed on the nodes below (none is padding-dominated)."""
QUICK_EXIT = 10**6
"""A node above the cap must be refused within this many steps (the check comes before its work)."""


@pytest.fixture(scope="module", autouse=True)
def built():
    build_toolchain()


def node_steps(model: Model, x, k: int, store_dir) -> int:
    run = run_model(model, x)
    result = run_program(node_program_setup(model, x, k, run.state(k), PreimageStore(store_dir), run=run))
    assert result.exit_code == EXIT_VALID, result.stderr
    return result.steps


def model_steps(model: Model, x, store_dir) -> int:
    run = run_model(model, x)
    claim = run.state(len(model.nodes) - 1)
    result = run_program(model_program_setup(model, x, claim, PreimageStore(store_dir)))
    assert result.exit_code == EXIT_VALID, result.stderr
    return result.steps


def assert_bounded(model: Model, x, tmp_path: Path, nodes=None) -> list[float]:
    """Every node (or ``nodes``) and the whole model: steps ≤ bound ≤ LOOSEST·steps; the ratios."""
    ratios = []
    for k in range(len(model.nodes)) if nodes is None else nodes:
        steps, bound = node_steps(model, x, k, tmp_path / f"n{k}"), node_step_bound(model, k)
        assert steps <= bound <= LOOSEST * steps, (k, model.nodes[k].op, steps, bound)
        ratios.append(bound / steps)
    steps = model_steps(model, x, tmp_path / "model")
    assert steps <= model_program_bound(model) <= model_step_bound(model)
    assert model_program_bound(model) <= LOOSEST * steps
    return ratios


# --- the C bound is the Python bound ---------------------------------------------------------------


def _desc(dtype: DType, *dims: int) -> TensorDesc:
    return TensorDesc(dtype, dims)


def _node(op: Op, out: TensorDesc, params=(), bias: bool = False, inputs=(0,)) -> Node:
    keys = (b"\x03" + bytes(31), b"\x03" + bytes(31) if bias else None)
    has_tensor = op in (Op.DENSE, Op.CONV2D, Op.LUT, Op.SOFTMAX)
    full = (*params, *([0] * (14 - len(params))))
    return Node(op, inputs, out, full, keys if has_tensor else (None, None))


I8, I32 = DType.INT8, DType.INT32
C_CASES: dict[str, tuple[int, Node, list[TensorDesc]]] = {
    # The cases of mips-toolchain/tests/ml_cost.c, in its order: (index, node, input descs).
    "dense_784x128_bias": (0, _node(Op.DENSE, int32(128), [-3], True), [int8(784)]),
    "dense_65793x1": (5, _node(Op.DENSE, int32(1), [0]), [int8(1, 1, 65793)]),
    "dense_4096x4096_bias": (4095, _node(Op.DENSE, int32(4096), [0], True), [int8(4096)]),
    "dense_64x64_bias_row_bound": (1, _node(Op.DENSE, int32(64), [-128, 1], True), [int8(64)]),
    "conv_3x3_c8_oc16": (
        2,
        _node(Op.CONV2D, int32(28, 28, 16), [1, 3, 3, 1, 1, 1, 1, 1, 1], True),
        [int8(28, 28, 8)],
    ),
    "conv_3x3_c8_oc16_row_bound": (
        2,
        _node(Op.CONV2D, int32(28, 28, 16), [1, 3, 3, 1, 1, 1, 1, 1, 1, 1], True),
        [int8(28, 28, 8)],
    ),
    "conv_1x1_16mib": (0, _node(Op.CONV2D, int32(2048, 2048, 1), [0, 1, 1, 1, 1]), [int8(2048, 2048, 1)]),
    "conv_kh4096": (
        9,
        _node(Op.CONV2D, int32(1, 1, 7), [0, 4096, 1, 1, 1, 2047, 0, 2048, 0], True),
        [int8(1, 1, 1)],
    ),
    "conv_2x2_c1024_oc1024": (
        1,
        _node(Op.CONV2D, int32(64, 64, 1024), [0, 2, 2, 1, 1, 1, 1, 0, 0], True),
        [int8(64, 64, 1024)],
    ),
    "requantize_4m": (100, _node(Op.REQUANTIZE, int8(1 << 22), [1, 1, 0, -128, 127]), [int32(1 << 22)]),
    "add_1000": (
        4095,
        _node(Op.ADD, int8(10, 100), [0, 1, 0, 1, 1, 0, -128, 127], inputs=(0, 0)),
        [int8(10, 100), int8(10, 100)],
    ),
    "relu_i32": (3, _node(Op.RELU, int32(7, 3), [-5]), [int32(7, 3)]),
    "maxpool_2048_on_4096": (
        0,
        _node(Op.MAXPOOL, int8(2049, 2049, 1), [2048, 2048, 1, 1]),
        [int8(4096, 4096, 1)],
    ),
    "avgpool_3x2": (7, _node(Op.AVGPOOL, int8(4, 4, 3), [3, 2, 2, 2]), [int8(9, 9, 3)]),
    "reshape_i32": (1, _node(Op.RESHAPE, int32(16)), [int32(4, 4)]),
    "argmax_16m": (0, _node(Op.ARGMAX, int32(1)), [int8(1 << 24)]),
    "lut_300": (2, _node(Op.LUT, int8(300)), [int8(300)]),
    "softmax_32767": (1, _node(Op.SOFTMAX, int8(32767)), [int8(32767)]),
}


def _python_lines() -> list[str]:
    lines = [
        f"{name} 0x{node_bound(index, node, ins):016x} 0x{node_work(node, ins):016x}"
        for name, (index, node, ins) in C_CASES.items()
    ]
    for name, input_desc, n in (
        ("model_fixed_4096", int8(8, 8, 1), 4096),
        ("model_fixed_1", int32(1 << 22), 1),
    ):
        fixed = (
            cost.STEPS_MODEL_BASE
            + cost.STEPS_READ_BYTE * input_desc.nbytes
            + cost.hash_steps(cost.KEY_SIZE * (n + 1))
        )
        lines.append(f"{name} 0x{fixed:016x}")
    return lines


def test_c_bound_is_the_python_bound():
    """tests/ml_cost.c prints ml/cost.c's bounds of hand-built records (in the VM and, pinned in
    tests/expected/ml_cost.out, under qemu-mipsel): each equals opml.ml.cost's, integer for integer,
    the 64-bit ones (a 2^47-step maxpool) included."""
    vm = FastVM.from_state(load_elf(build_toolchain() / "ml_cost"), copy_memory=True)
    vm.run(10**7)
    assert vm.exited and vm.exit_code == 0
    out, _ = vm.take_output()
    assert out.decode().splitlines() == _python_lines()
    assert EXPECTED.read_text().splitlines() == _python_lines()
    assert node_bound(*C_CASES["maxpool_2048_on_4096"]) > 1 << 47


def test_the_model_cap_is_implied_by_the_node_cap():
    """A node's share of the whole-model program is below its node program's bound, so 4096 nodes under
    MAX_NODE_STEPS keep the whole-model program under MAX_MODEL_STEPS (its input and state included)."""
    for index, node, ins in C_CASES.values():
        assert cost.STEPS_MODEL_NODE + node_work(node, ins) < node_bound(index, node, ins)
    worst_fixed = cost.STEPS_MODEL_BASE + cost.STEPS_READ_BYTE * (1 << 24) + cost.hash_steps(32 * 4097)
    assert worst_fixed + 4096 * MAX_NODE_STEPS < MAX_MODEL_STEPS


def test_the_model_cap_is_checked(monkeypatch):
    model = all_ops_model()
    bound = model_program_bound(model)
    assert model_step_bound(model) == max(
        bound, *(node_step_bound(model, k) for k in range(len(model.nodes)))
    )
    monkeypatch.setattr(cost, "MAX_MODEL_STEPS", bound - 1)
    with pytest.raises(NodeCostError, match="split the model"):
        Model.create(model.input, model.nodes, model.tensors)
    monkeypatch.setattr(cost, "MAX_MODEL_STEPS", bound)
    Model.create(model.input, model.nodes, model.tensors)


# --- real steps within the bound -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_digits_models_within_bound(name, tmp_path):
    model = read_model(MODELS / f"{name}.opml")
    x = np.random.default_rng(7).integers(0, 17, size=model.input.shape).astype(np.int8)
    ratios = assert_bounded(model, x, tmp_path)
    assert max(ratios) < 2


def _values(rng, desc: TensorDesc) -> np.ndarray:
    return rng.integers(desc.dtype.lo, desc.dtype.hi + 1, size=desc.shape, dtype=np.int64).astype(
        desc.dtype.np
    )


def _r(rng, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _random_node(op: Op, rng) -> tuple[Model, np.ndarray, int]:
    """A model whose last node is ``op`` on a seeded random shape, behind 0 … 40 reshapes (so that
    ``k``, and the state the node program hashes, varies too)."""
    if op is Op.DENSE:
        x = int8(_r(rng, 1, 2000))
    elif op in (Op.CONV2D, Op.MAXPOOL, Op.AVGPOOL):
        x = int8(_r(rng, 1, 12), _r(rng, 1, 12), _r(rng, 1, 16))
    else:
        dtype = (
            DType.INT32 if op is Op.REQUANTIZE or (op in (Op.RELU, Op.ARGMAX) and rng.random() < 0.5) else I8
        )
        x = TensorDesc(dtype, (_r(rng, 1, 1500),))
    g = GraphBuilder(x)
    v = 0
    for _ in range(_r(rng, 0, 40)):
        v = g.reshape(v, list(x.shape))
    if op is Op.DENSE:
        m = _r(rng, 1, 40)
        bias = rng.integers(-1000, 1000, size=m).astype(np.int32) if rng.random() < 0.5 else None
        g.dense(v, rand_i8(rng, (m, x.elems)), bias, zx=_r(rng, -128, 127))
    elif op is Op.CONV2D:
        h, w, c = x.shape
        kh, kw = _r(rng, 1, min(h, 4)), _r(rng, 1, min(w, 4))
        oc = _r(rng, 1, 8)
        bias = rng.integers(-1000, 1000, size=oc).astype(np.int32) if rng.random() < 0.5 else None
        pads = (_r(rng, 0, kh - 1), _r(rng, 0, kw - 1), 0, 0)
        pads = (pads[0], pads[1], (kh - 1 - pads[0]), (kw - 1 - pads[1]))  # "same" padding, stride 1
        g.conv2d(v, rand_i8(rng, (oc, kh, kw, c)), bias, zx=_r(rng, -128, 127), pads=pads)
    elif op in (Op.MAXPOOL, Op.AVGPOOL):
        h, w, _ = x.shape
        pool = g.maxpool if op is Op.MAXPOOL else g.avgpool
        pool(v, (_r(rng, 1, h), _r(rng, 1, w)), (_r(rng, 1, 3), _r(rng, 1, 3)))
    elif op is Op.REQUANTIZE:
        lo = _r(rng, -128, 127)
        g.requantize(v, _r(rng, 1, 2**31 - 1), _r(rng, 1, 62), _r(rng, -128, 127), lo, _r(rng, lo, 127))
    elif op is Op.ADD:
        lo = _r(rng, -128, 127)
        z = [_r(rng, -128, 127) for _ in range(3)]
        ms = [_r(rng, 0, 2**31 - 1) for _ in range(2)]
        g.add_(v, 0, z[0], ms[0], z[1], ms[1], _r(rng, 1, 62), z[2], lo, _r(rng, lo, 127))
    elif op is Op.RELU:
        g.relu(v, _r(rng, -100, 100))
    elif op is Op.RESHAPE:
        g.reshape(v, [x.elems])
    elif op is Op.ARGMAX:
        g.argmax(v)
    elif op is Op.LUT:
        g.lut(v, rand_i8(rng, (256,)))
    else:
        g.softmax(v, softmax_table(float(rng.uniform(0.001, 0.5))))
    model = g.build()
    return model, _values(rng, x), len(model.nodes) - 1


# The version-2 ops' bounds are checked on every node of tests/ml/test_ml_vm_v2.py.
@pytest.mark.parametrize("op", sorted(V1_OPS), ids=lambda op: op.name.lower())
def test_random_shapes_within_bound(op, tmp_path):
    for seed in range(3):
        model, x, k = _random_node(op, np.random.default_rng([int(op), seed]))
        assert model.nodes[k].op is op
        assert_bounded(model, x, tmp_path / str(seed), nodes=[k])


def test_all_ops_model_within_bound(tmp_path):
    model = all_ops_model()
    assert_bounded(model, rand_i8(np.random.default_rng(3), model.input.shape), tmp_path)


def test_node_steps_grow_like_log_k(tmp_path):
    """The node program computes S_k from the O(log k) nodes of S_{k−1}'s tree on the new key's path
    (ml-spec §7.1): on a chain of 4096 reshapes (the format's largest graph) steps ≤ bound ≤
    LOOSEST·steps at every k below, and each doubling of k + 1 (one more tree level) costs at most two
    keccak coefficients, where hashing the k + 2 keys cost about k more permutations."""
    g = GraphBuilder(int8(32))
    v = 0
    for _ in range(4096):
        v = g.reshape(v, [32])
    model = g.build()
    x = np.arange(32, dtype=np.int8)
    run = run_model(model, x)
    doublings = [(1 << i) - 1 for i in range(13)]  # k + 1 = 1, 2, 4, … 4096: the walk reads no node
    steps = {}
    for k in [*doublings, 2, 5, 100, 1000, 2730, 4000, 4094]:
        store = PreimageStore(tmp_path / str(k))
        result = run_program(node_program_setup(model, x, k, run.state(k), store, run=run))
        assert result.exit_code == EXIT_VALID, result.stderr
        steps[k] = result.steps
        assert steps[k] <= node_step_bound(model, k) <= LOOSEST * steps[k], (k, steps[k])
    for a, b in itertools.pairwise(doublings):
        assert 0 < steps[b] - steps[a] <= 2 * cost.STEPS_KECCAK, (a, b)
    assert max(steps.values()) < 10 * steps[0]


def test_extreme_values_within_bound(tmp_path):
    """Constant extreme inputs (branches taken every time: maxima, clamps, negative window sums)."""
    g = GraphBuilder(int8(12, 12, 4))
    a = g.maxpool(0, (5, 3), (1, 1))
    b = g.avgpool(0, (5, 3), (1, 1))
    g.add_(a, b, -128, 2**31 - 1, 127, 2**31 - 1, 1, 0, -128, 127)
    g.argmax(0)
    model = g.build()
    for fill in (-128, 127):
        assert_bounded(model, np.full(model.input.shape, fill, np.int8), tmp_path / str(fill))


def _requantize_model(x: TensorDesc, params: tuple[int, ...], mode: int, reshapes: int = 0) -> Model:
    """A version-2 model whose last node is a requantize in ``mode``, behind ``reshapes`` reshapes."""
    g = GraphBuilder(x, version=2)
    v = 0
    for _ in range(reshapes):
        v = g.reshape(v, list(x.shape))
    g.requantize(v, *params, mode=mode)
    return g.build()


def _random_requantize_nodes_within_bound(mode: int, m0_max: int, tmp_path: Path) -> None:
    """Three seeded random ``mode`` requantize nodes (``M0 ≤ m0_max``) behind random reshapes."""
    for seed in range(3):
        rng = np.random.default_rng([int(Op.REQUANTIZE), mode, seed])
        x = int32(_r(rng, 1, 1500))
        lo = _r(rng, -128, 127)
        params = (_r(rng, 1, m0_max), _r(rng, 1, 62), _r(rng, -128, 127), lo, _r(rng, lo, 127))
        model = _requantize_model(x, params, mode, _r(rng, 0, 40))
        assert_bounded(model, _values(rng, x), tmp_path / str(seed), nodes=[len(model.nodes) - 1])


def test_requantize_half_to_even_within_bound(tmp_path):
    """Mode 1 (half to even, version 2) has mode 0's term ``28·E``: its tie test adds 2 to 5 steps per
    element (measured), which the term's margin over the fitted 21.9 steps (ml-spec §9.3, §10.4)
    covers. Seeded random mode-1 nodes stay within the bound, and on the same input mode 1 takes at
    most 6 steps per element more than mode 0 (random accumulators and all ties, saturated and not)."""
    _random_requantize_nodes_within_bound(1, 2**31 - 1, tmp_path)
    n = 2048
    rng = np.random.default_rng(5)
    inputs = {"random": _values(rng, int32(n)), "ties": (2 * rng.integers(-64, 64, n) + 1).astype(np.int32)}
    for name, x in inputs.items():
        for i, params in enumerate(
            [(1, 1, 0, -128, 127), (1, 1, 0, -20, 30), (1518500250, 38, -5, -128, 127)]
        ):
            models = [_requantize_model(int32(n), params, mode) for mode in (0, 1)]
            steps = [node_steps(m, x, 0, tmp_path / f"{name}{i}{mode}") for mode, m in enumerate(models)]
            assert 0 < steps[1] - steps[0] <= 6 * n, (name, params, steps)


def test_requantize_float32_within_bound(tmp_path):
    """Mode 2 (the float32 product, version 2) has its own term ``185·E`` (ml-spec §9.2, §10.4): its three
    int64 roundings add 50 – 123 steps per element to mode 0's (measured), ≤ 145 in all, × 1.25.
    Seeded random mode-2 nodes, scalar and per channel, stay within the bound; on the same input mode 2
    takes more steps than mode 0, at most ``(185 − 28)·E`` more (random, small and large accumulators,
    the slowest (M0, t) found: |x| ≥ 2^24 and a product past 2^32, both rounded)."""
    _random_requantize_nodes_within_bound(2, 2**24 - 1, tmp_path)
    rng = np.random.default_rng(6)
    g = GraphBuilder(int32(64, 8), version=2)
    table = np.stack([rng.integers(1, 2**24, 8), rng.integers(1, 63, 8)], axis=1).astype(np.int32)
    g.requantize(0, 0, 0, 3, mode=2, channels=table)
    assert_bounded(g.build(), _values(rng, int32(64, 8)), tmp_path / "channels")
    n = 2048
    inputs = {
        "random": _values(rng, int32(n)),
        "small": rng.integers(-(2**20), 2**20, n).astype(np.int32),
        "large": rng.integers(-(2**31), 2**31, n).astype(np.int32),
    }
    for name, x in inputs.items():
        for i, params in enumerate(
            [(1, 1, 0, -128, 127), (377, 26, 0, -128, 127), (2**24 - 1, 40, -5, -20, 30)]
        ):
            models = [_requantize_model(int32(n), params, mode) for mode in (0, 2)]
            steps = [node_steps(m, x, 0, tmp_path / f"{name}{i}{j}") for j, m in enumerate(models)]
            assert 0 < steps[1] - steps[0] <= (185 - 28) * n, (name, params, steps)
            assert steps[1] <= node_step_bound(models[1], 0)


def _row_bound_model(desc: TensorDesc, w: np.ndarray, bias: np.ndarray, bound: int) -> Model:
    g = GraphBuilder(desc, version=2)
    if len(desc.shape) == 1:
        g.dense(0, w, bias, zx=5, bound=bound)
    else:
        g.conv2d(0, w, bias, zx=-3, bound=bound)
    return g.build()


def test_row_bound_within_bound(tmp_path):
    """dense and conv2d with the per-row overflow bound (``bound`` = 1, version 2) read the weights once
    more and sum each row's magnitudes: ``8·rows·K + 400·rows`` steps on top of ``bound`` = 0's (ml-spec
    §9.2; measured 10.2 – 10.7 per weight and ≈ 312 per row with their reads). Seeded random nodes stay
    within the bound, and each takes more steps than the same node with ``bound`` = 0."""
    for seed in range(3):
        rng = np.random.default_rng([int(Op.DENSE), 1, seed])
        k, m = _r(rng, 1, 1500), _r(rng, 1, 40)
        h, w, c, oc = _r(rng, 1, 8), _r(rng, 1, 8), _r(rng, 1, 16), _r(rng, 1, 8)
        kh, kw = _r(rng, 1, h), _r(rng, 1, w)
        cases = [
            (int8(k), rand_i8(rng, (m, k)), rng.integers(-999, 999, m).astype(np.int32)),
            (int8(h, w, c), rand_i8(rng, (oc, kh, kw, c)), rng.integers(-9, 9, oc).astype(np.int32)),
        ]
        for j, (desc, weights, bias) in enumerate(cases):
            x = _values(rng, desc)
            steps = []
            for bound in (0, 1):
                model = _row_bound_model(desc, weights, bias, bound)
                steps.append(node_steps(model, x, 0, tmp_path / f"{seed}-{j}-{bound}"))
                assert steps[-1] <= node_step_bound(model, 0) <= LOOSEST * steps[-1]
            assert steps[0] < steps[1], (seed, desc, steps)


@pytest.mark.parametrize(
    "desc, shape",
    [
        (int8(1), (4096, 1)),  # rows of one weight: the per-row cost
        (int8(9000), (1, 9000)),  # one row longer than the weight buffer: the per-weight cost
        (int8(2, 2, 1), (2048, 1, 1, 1)),  # a conv of 2048 one-weight filters
    ],
    ids=["dense-K1", "dense-long-row", "conv-1x1"],
)
def test_row_bound_charges_at_least_its_pass(desc, shape, tmp_path):
    """The steps ``bound`` = 1 adds are at most what its terms add to the bound, on the worst shapes and
    weights (all −128: ``abs`` negates each), so neither coefficient can be lowered unseen."""
    weights = np.full(shape, -128, np.int8)
    bias = np.arange(shape[0], dtype=np.int32) - 7
    x = np.full(desc.shape, 127, np.int8)
    steps, bounds = [], []
    for bound in (0, 1):
        model = _row_bound_model(desc, weights, bias, bound)
        steps.append(node_steps(model, x, 0, tmp_path / str(bound)))
        bounds.append(node_step_bound(model, 0))
    assert 0 < steps[1] - steps[0] <= bounds[1] - bounds[0], (steps, bounds)


def test_requantize_float32_cost_in_c(tmp_path):
    """The node program charges mode 2 its own 185·E (cost.c as cost.py): a mode-2 node whose bound is
    above 2^31 only by that term (in mode 1 it is below) is refused before its work."""
    e = 1_700_000
    models = []
    for mode in (1, 2):
        node = Node(Op.REQUANTIZE, (0,), int8(e), (1, 20, 0, -128, 127, mode) + (0,) * 8)
        manifest = encode_manifest(int32(e), [node], version=2)
        models.append(Model(int32(e), (node,), {}, (int32(e), int8(e)), manifest))
    assert node_step_bound(models[0], 0) < MAX_NODE_STEPS < node_step_bound(models[1], 0)
    x = np.random.default_rng(17).integers(-(2**31), 2**31, e).astype(np.int32)
    run = run_model(models[1], x)
    result = run_program(
        node_program_setup(models[1], x, 0, run.state(0), PreimageStore(tmp_path), run=run),
        max_steps=QUICK_EXIT,
    )
    assert result.exit_code == EXIT_MALFORMED, result.stderr
    assert b"step bound is above 2^31" in result.stderr and result.steps < QUICK_EXIT


# --- the attack: a node no one can trace -----------------------------------------------------------


def unchecked_model(input_desc: TensorDesc, nodes: list[Node], tensors: dict[bytes, bytes]) -> Model:
    """A :class:`Model` built past the reader's checks, as a hand-registered manifest would be."""
    values = [input_desc] + [n.out for n in nodes]
    return Model(input_desc, tuple(nodes), tensors, tuple(values), encode_manifest(input_desc, nodes))


def attack_model() -> Model:
    """conv2d 1×1 over int8[2048, 2048, 1] into int32[2048, 2048, 1] (16 MiB), then argmax: every op
    rule holds, but hashing the conv's output alone takes ≈ 906 steps per byte."""
    w = np.ones(1, np.int8).tobytes()
    key = tensor_key(w)
    conv = Node(Op.CONV2D, (0,), int32(2048, 2048, 1), (0, 1, 1, 1, 1) + (0,) * 9, (key, None))
    argmax = Node(Op.ARGMAX, (1,), int32(1))
    return unchecked_model(int8(2048, 2048, 1), [conv, argmax], {key: w})


def test_the_reader_rejects_the_attack(tmp_path):
    model = attack_model()
    assert node_step_bound(model, 0) > 7 * MAX_NODE_STEPS  # ≈ 1.9·10^10
    assert node_step_bound(model, 1) < MAX_NODE_STEPS
    path = tmp_path / "attack.opml"
    path.write_bytes(encode_model_file(model))
    with pytest.raises(NodeCostError, match=r"node 0 .*split the node") as info:
        read_model(path)
    assert isinstance(info.value, ModelFormatError) and isinstance(info.value, OpmlError)
    assert "\n" not in str(info.value)
    with pytest.raises(NodeCostError):
        decode_model_file(path.read_bytes())
    with pytest.raises(NodeCostError):
        GraphBuilder(int8(2048, 2048, 1)).conv2d(0, np.ones((1, 1, 1, 1), np.int8))


def test_the_programs_refuse_the_attack_quickly(tmp_path):
    """Set up as node_program_setup does (the native run computes the 16 MiB value): the node program
    exits 3 before any of the node's work, and so does the whole-model program."""
    model = attack_model()
    x = check_value(np.random.default_rng(16).integers(-128, 128, (2048, 2048, 1)), model.input, "x")
    run = run_model(model, x)
    store = PreimageStore(tmp_path)
    result = run_program(node_program_setup(model, x, 0, run.state(0), store, run=run), max_steps=QUICK_EXIT)
    assert result.exit_code == EXIT_MALFORMED
    assert re.match(
        rb"ml: malformed: a node whose step bound is above 2\^31: split the node\n", result.stderr
    )
    assert result.steps < QUICK_EXIT
    whole = run_program(model_program_setup(model, x, run.state(1), store), max_steps=QUICK_EXIT)
    assert whole.exit_code == EXIT_MALFORMED and whole.steps < QUICK_EXIT
    assert b"split the node" in whole.stderr


def _relu_node(n: int) -> Node:
    return Node(Op.RELU, (0,), int8(n), (-128,) + (0,) * 13)


def test_reader_and_programs_draw_the_line_at_the_same_node(tmp_path):
    """relu int8[n] at node 0: the largest n within MAX_NODE_STEPS builds and its node program runs on
    past the check; n + 1 is rejected by the reader and refused by the program within QUICK_EXIT."""

    def bound(n: int) -> int:
        return node_bound(0, _relu_node(n), [int8(n)])

    lo, hi = 1, 1 << 24  # bound(lo) ≤ cap < bound(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if bound(mid) <= MAX_NODE_STEPS else (lo, mid)
    assert bound(lo) <= MAX_NODE_STEPS < bound(hi)
    g = GraphBuilder(int8(lo))
    g.relu(0, -128)
    inside = g.build()
    with pytest.raises(NodeCostError):
        GraphBuilder(int8(hi)).relu(0, -128)
    outside = unchecked_model(int8(hi), [_relu_node(hi)], {})
    for model, refused in ((inside, False), (outside, True)):
        x = np.zeros(model.input.shape, np.int8)
        run = run_model(model, x)
        store = PreimageStore(tmp_path / str(refused))
        setup = node_program_setup(model, x, 0, run.state(0), store, run=run)
        if refused:
            assert run_program(setup, max_steps=QUICK_EXIT).exit_code == EXIT_MALFORMED
        else:
            with pytest.raises(ProgramRunError):  # still running: past the check, hashing
                run_program(setup, max_steps=QUICK_EXIT)


def test_requantize_channels_within_bound(tmp_path):
    """A per-channel table (int32 ``[C, 2]``) is a parameter tensor read once: the bound grows by exactly
    ``STEPS_READ_BYTE · 8·C``. Measured, the node program takes ≈ 50 – 58 steps more per channel
    (its ``(M0_c, t_c)`` setup) and ≤ 3.4 more per element than the scalar op; the node bound still
    holds, with its hashing margin, for one row (dense ``[M]``, a channel per element) and for many rows
    (conv ``[H, W, C]``, ``C`` past one 512-channel piece of the weight buffer), in both modes."""
    rng = np.random.default_rng([int(Op.REQUANTIZE), 2])
    cases = [((1,), 0), ((700,), 1), ((1500,), 0), ((4, 4, 600), 1), ((9, 7, 5), 0)]
    for i, (shape, mode) in enumerate(cases):
        c, e = shape[-1], int(np.prod(shape))
        table = np.stack([rng.integers(1, 2**31, c), rng.integers(1, 63, c)], axis=1).astype(np.int32)
        g = GraphBuilder(int32(*shape), version=2)
        g.requantize(0, 0, 0, -5, mode=mode, channels=table)
        per_channel = g.build()
        scalar = _requantize_model(int32(*shape), (1518500250, 38, -5, -128, 127), mode)
        assert node_step_bound(per_channel, 0) - node_step_bound(scalar, 0) == STEPS_READ_BYTE * 8 * c
        x = _values(rng, int32(*shape))
        assert_bounded(per_channel, x, tmp_path / f"pc{i}")
        steps = [node_steps(m, x, 0, tmp_path / f"{i}{j}") for j, m in enumerate((scalar, per_channel))]
        assert 0 < steps[1] - steps[0] <= 60 * c + 4 * e, (shape, mode, steps)
