"""Every op through the node program (mips-toolchain/build/ml_node) in the VM against numpy.

For each op, seeded random shapes, parameters and values (seed 0 takes the smallest shapes the format
allows, seed 1 the int8/int32 extremes), plus hand-built cases at the overflow bound and at
saturation: the node program's output key must be the native runner's key of the same value (the
chunk-Merkle key of its bytes), and it must accept the native ``S_k``. ``OPML_ML_SEEDS`` sets the
number of random seeds per op (default 6).

The malformed cases run manifests that the Python reader rejects, put straight into the store: the
node program must exit 3 for each, and never for a model the reader accepts.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from _ml_fixtures import all_ops_model, rand_i8
from _toolchain import build_toolchain

from opml.ml.format import (
    MAX_PRODUCT,
    V1_OPS,
    DType,
    GraphBuilder,
    Model,
    Node,
    Op,
    TensorDesc,
    encode_manifest,
    int8,
    int32,
    tensor_key,
)
from opml.ml.phase import (
    EXIT_INVALID,
    EXIT_MALFORMED,
    EXIT_VALID,
    node_local_values,
    node_memory_bound,
    node_program_setup,
    put_state,
    run_program,
)
from opml.ml.quantize import softmax_table
from opml.ml.runner import run_model, value_bytes
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.preimage import ZERO_CALLER, ZERO_CONTEXT, OracleView

SEEDS = range(int(os.environ.get("OPML_ML_SEEDS", "6")))
INT32_MAX = 2**31 - 1


@pytest.fixture(scope="module", autouse=True)
def built():
    build_toolchain()


def check_node_in_vm(model: Model, x, k: int, store_dir) -> None:
    """Node ``k`` in the VM: its key is numpy's, the native claim is valid, and memory is bounded."""
    run = run_model(model, x)
    store = PreimageStore(store_dir)
    result = run_program(node_program_setup(model, x, k, run.state(k), store, run=run))
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == [run.keys[k + 1]]
    assert result.memory_bytes <= node_memory_bound(model, k)


def pick(rng, *choices):
    return choices[int(rng.integers(len(choices)))]


def values(rng, desc: TensorDesc, extremes: bool) -> np.ndarray:
    lo, hi = desc.dtype.lo, desc.dtype.hi
    if extremes:
        return rng.choice(np.array([lo, hi, lo + 1, hi - 1, 0, -1], dtype=np.int64), size=desc.shape).astype(
            desc.dtype.np
        )
    return rng.integers(lo, hi + 1, size=desc.shape, dtype=np.int64).astype(desc.dtype.np)


def dims(rng, smallest: bool, rank: int, top: int = 6) -> tuple[int, ...]:
    return (1,) * rank if smallest else tuple(int(d) for d in rng.integers(1, top + 1, size=rank))


# --- one random single-op model per (op, seed): (model, input, k) ------------------------------------


def case_dense(rng, seed):
    shape = dims(rng, seed == 0, pick(rng, 1, 2, 3), 7)
    k = int(np.prod(shape))
    m = 1 if seed == 0 else int(rng.integers(1, 40))
    g = GraphBuilder(int8(*shape))
    w = values(rng, int8(m, k), seed == 1)
    bias = None if seed % 3 == 2 else rng.integers(-(2**20), 2**20, size=m).astype(np.int32)
    g.dense(0, w, bias, zx=int(rng.integers(-128, 128)) if seed != 1 else 127)
    return g.build(), values(rng, int8(*shape), seed == 1), 0


def case_conv2d(rng, seed):
    smallest = seed == 0
    kh, kw = (1, 1) if smallest else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    sh, sw = (1, 1) if smallest else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = (0, 0, 0, 0) if smallest else tuple(int(rng.integers(0, k)) for k in (kh, kw, kh, kw))
    oh, ow = (1, 1) if smallest else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    h = max(1, (oh - 1) * sh + kh - pads[0] - pads[2])
    w_ = max(1, (ow - 1) * sw + kw - pads[1] - pads[3])
    if (h + pads[0] + pads[2] - kh) % sh or (w_ + pads[1] + pads[3] - kw) % sw:
        sh = sw = 1  # max(1, …) broke the exact tiling: stride 1 always tiles
    c = 1 if smallest else int(rng.integers(1, 5))
    oc = 1 if smallest else int(rng.integers(1, 6))
    g = GraphBuilder(int8(h, w_, c))
    weights = values(rng, int8(oc, kh, kw, c), seed == 1)
    bias = None if seed % 3 == 2 else rng.integers(-(2**20), 2**20, size=oc).astype(np.int32)
    g.conv2d(0, weights, bias, zx=int(rng.integers(-128, 128)), strides=(sh, sw), pads=pads)
    return g.build(), values(rng, int8(h, w_, c), seed == 1), 0


def case_requantize(rng, seed):
    shape = dims(rng, seed == 0, pick(rng, 1, 3))
    g = GraphBuilder(int32(*shape))
    m0 = int(rng.integers(1, INT32_MAX + 1)) if seed != 1 else INT32_MAX
    t = int(rng.integers(1, 63))
    lo = int(rng.integers(-128, 128))
    g.requantize(0, m0, t, zy=int(rng.integers(-128, 128)), lo=lo, hi=int(rng.integers(lo, 128)))
    return g.build(), values(rng, int32(*shape), seed == 1), 0


def case_add(rng, seed):
    shape = dims(rng, seed == 0, pick(rng, 1, 2, 4))
    g = GraphBuilder(int8(*shape))
    v = g.lut(0, values(rng, int8(256), seed == 1))
    t = int(rng.integers(1, 63))
    lo = int(rng.integers(-128, 128))
    ma, mb = (INT32_MAX, INT32_MAX) if seed == 1 else tuple(int(m) for m in rng.integers(0, 2**31, size=2))
    z = [int(z) for z in rng.integers(-128, 128, size=3)]
    g.add_(0, v, z[0], ma, z[1], mb, t, z[2], lo, int(rng.integers(lo, 128)))
    return g.build(), values(rng, int8(*shape), seed == 1), 1


def case_relu(rng, seed):
    desc = TensorDesc(pick(rng, DType.INT8, DType.INT32), dims(rng, seed == 0, pick(rng, 1, 3)))
    g = GraphBuilder(desc)
    g.relu(0, int(rng.integers(desc.dtype.lo, desc.dtype.hi, endpoint=True)))
    return g.build(), values(rng, desc, seed == 1), 0


def case_pool(op, rng, seed):
    h, w, c = dims(rng, seed == 0, 3, 7)
    kh, kw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    strides = (1, 1) if seed == 0 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    g = GraphBuilder(int8(h, w, c))
    (g.maxpool if op is Op.MAXPOOL else g.avgpool)(0, (kh, kw), strides)
    return g.build(), values(rng, int8(h, w, c), seed == 1), 0


def case_reshape(rng, seed):
    desc = TensorDesc(pick(rng, DType.INT8, DType.INT32), dims(rng, seed == 0, 3))
    g = GraphBuilder(desc)
    g.reshape(0, [desc.elems])
    return g.build(), values(rng, desc, seed == 1), 0


def case_argmax(rng, seed):
    desc = TensorDesc(pick(rng, DType.INT8, DType.INT32), dims(rng, seed == 0, pick(rng, 1, 2, 4)))
    g = GraphBuilder(desc)
    g.argmax(0)
    return g.build(), values(rng, desc, seed == 1), 0


def case_lut(rng, seed):
    shape = dims(rng, seed == 0, pick(rng, 1, 3))
    g = GraphBuilder(int8(*shape))
    g.lut(0, values(rng, int8(256), seed == 1))
    return g.build(), values(rng, int8(*shape), seed == 1), 0


def case_softmax(rng, seed):
    n = 1 if seed == 0 else int(rng.integers(1, 300))
    g = GraphBuilder(int8(n))
    g.softmax(0, softmax_table(float(rng.uniform(0.001, 0.5))))
    return g.build(), values(rng, int8(n), seed == 1), 0


CASES = {
    Op.DENSE: case_dense,
    Op.CONV2D: case_conv2d,
    Op.REQUANTIZE: case_requantize,
    Op.ADD: case_add,
    Op.RELU: case_relu,
    Op.MAXPOOL: lambda rng, seed: case_pool(Op.MAXPOOL, rng, seed),
    Op.AVGPOOL: lambda rng, seed: case_pool(Op.AVGPOOL, rng, seed),
    Op.RESHAPE: case_reshape,
    Op.ARGMAX: case_argmax,
    Op.LUT: case_lut,
    Op.SOFTMAX: case_softmax,
}


def test_every_op_has_cases():
    """The version-1 ops here; the version-2 ops in test_ml_vm_v2.py."""
    assert set(CASES) == V1_OPS


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", sorted(V1_OPS), ids=lambda op: op.name.lower())
def test_op_in_vm_equals_numpy(op, seed, tmp_path):
    rng = np.random.default_rng([int(op), seed])
    model, x, k = CASES[op](rng, seed)
    assert model.nodes[k].op is op
    check_node_in_vm(model, x, k, tmp_path)


# --- hand-built extremes --------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_at_the_overflow_bound(with_bias, tmp_path):
    """K·255·128 + max|bias| = 2^31 − 1 exactly, with every product at its largest magnitude."""
    k = 40
    g = GraphBuilder(int8(k))
    bias = np.array([INT32_MAX - k * MAX_PRODUCT, -(INT32_MAX - k * MAX_PRODUCT)], np.int32)
    w = np.full((2, k), -128, np.int8)
    g.dense(0, w, bias if with_bias else None, zx=127)
    model = g.build()
    x = np.full(k, -128, np.int8)
    out = run_model(model, x).output
    if with_bias:
        assert int(out[0]) == INT32_MAX
    check_node_in_vm(model, x, 0, tmp_path)


def test_conv2d_at_the_largest_filter(tmp_path):
    """KH·KW·C = 4096, the weight buffer's size, with extreme values."""
    rng = np.random.default_rng(4096)
    g = GraphBuilder(int8(4, 4, 256))
    g.conv2d(0, values(rng, int8(3, 4, 4, 256), True), None, zx=-128, strides=(1, 1), pads=(0, 0, 0, 0))
    check_node_in_vm(g.build(), values(rng, int8(4, 4, 256), True), 0, tmp_path)


def test_requantize_saturates_and_rounds_half_up(tmp_path):
    g = GraphBuilder(int32(8))
    g.requantize(0, 1, 2, zy=0, lo=-128, hi=127)
    model = g.build()
    x = np.array([3, -3, 2, -2, INT32_MAX, -(2**31), 1, -1], np.int32)
    assert [int(v) for v in run_model(model, x).output] == [1, -1, 1, 0, 127, -128, 0, 0]
    check_node_in_vm(model, x, 0, tmp_path)


def test_every_node_of_the_all_ops_model(tmp_path):
    model = all_ops_model()
    rng = np.random.default_rng(3)
    x = rand_i8(rng, model.input.shape)
    for k in range(len(model.nodes)):
        check_node_in_vm(model, x, k, tmp_path / str(k))


def test_dense_1024x1024_streams_its_weights(tmp_path):
    """A 1 MiB weight tensor runs in a fixed 4 KiB buffer: peak VM memory stays under the bound of
    ml-spec §7.3, far below the weights' size, and the key is numpy's."""
    rng = np.random.default_rng(1024)
    g = GraphBuilder(int8(1024))
    g.dense(0, rand_i8(rng, (1024, 1024)), rng.integers(-1000, 1000, 1024).astype(np.int32), zx=-3)
    model = g.build()
    x = rand_i8(rng, (1024,))
    run = run_model(model, x)
    result = run_program(node_program_setup(model, x, 0, run.state(0), PreimageStore(tmp_path), run=run))
    assert result.exit_code == EXIT_VALID and result.keys == [run.keys[1]]
    bound = node_memory_bound(model, 0)
    assert bound == 128 * 1024 + 1024 + 4 * 1024
    assert result.memory_bytes <= bound < 1024 * 1024 // 4


# --- malformed inputs: exit 3 ---------------------------------------------------------------------


def run_raw(
    tmp_path, manifest: bytes, tensors: list[bytes], k: int, prev_preimage: bytes, values_: list[bytes]
):
    """The node program over a manifest and tensors put in the store as they are (not checked)."""
    store = PreimageStore(tmp_path)
    commitment = store.put_chunk_merkle(manifest)
    for data in [*tensors, *values_]:
        store.put_chunk_merkle(data)
    prev = put_state(store, prev_preimage)
    for ident, value in node_local_values(commitment, k, prev, bytes(32)).items():
        store.put_local(ident, ZERO_CALLER, ZERO_CONTEXT, value)
    from opml.ml.phase import NODE_PROGRAM, ProgramSetup

    oracle = OracleView(store, ZERO_CALLER, ZERO_CONTEXT)
    return run_program(ProgramSetup(NODE_PROGRAM, load_elf(NODE_PROGRAM), {}, oracle))


def dense_parts(k: int = 4, m: int = 2, bias=None, w=None):
    """A one-dense-node manifest's parts: (input desc, node, tensors, input bytes)."""
    w = np.ones((m, k), np.int8) if w is None else w
    wb = w.tobytes()
    tensors = [wb]
    keys = [tensor_key(wb), None]
    if bias is not None:
        bb = np.asarray(bias, "<i4").tobytes()
        tensors.append(bb)
        keys[1] = tensor_key(bb)
    params = (0,) * 14
    node = Node(Op.DENSE, (0,), int32(m), params, (keys[0], keys[1]))
    return int8(k), node, tensors, bytes(k)


def raw_run(tmp_path, input_desc, nodes, tensors, x: bytes, k: int = 0, manifest: bytes | None = None):
    manifest = encode_manifest(input_desc, nodes) if manifest is None else manifest
    prev = tensor_key(x)
    return run_raw(tmp_path, manifest, tensors, k, prev, [x])


def test_a_well_formed_raw_manifest_is_accepted(tmp_path):
    """The raw path itself works: the same model as a valid manifest exits 0 or 1, never 3."""
    desc, node, tensors, x = dense_parts()
    result = raw_run(tmp_path, desc, [node], tensors, x)
    assert result.exit_code == EXIT_INVALID  # the claim passed is 32 zero bytes


def mutate(manifest: bytes, offset: int, value: bytes) -> bytes:
    return manifest[:offset] + value + manifest[offset + len(value) :]


U32 = struct.Struct("<I").pack
NODE0 = 64


@pytest.mark.parametrize(
    "why, offset, value",
    [
        ("bad magic", 0, b"OPMX"),
        ("unknown version", 4, U32(3)),
        ("node count 0", 8, U32(0)),
        ("unknown input dtype", 12, U32(3)),
        ("non-zero reserved byte", 40, b"\x01"),
        ("unknown op", NODE0, U32(99)),
        ("wrong input count", NODE0 + 4, U32(2)),
        ("forward reference", NODE0 + 8, U32(1)),
        ("wrong output dtype", NODE0 + 16, U32(1)),
        ("non-zero dim past the rank", NODE0 + 28, U32(5)),
        ("zx out of range", NODE0 + 40, struct.pack("<i", 128)),
        ("bound = 1 (per row) in a version-1 manifest", NODE0 + 44, U32(1)),
        ("non-zero unused param", NODE0 + 48, U32(1)),
        ("missing weight key", NODE0 + 96, bytes(32)),
    ],
)
def test_malformed_manifest_exits_3(why, offset, value, tmp_path):
    desc, node, tensors, x = dense_parts()
    manifest = mutate(encode_manifest(desc, [node]), offset, value)
    result = raw_run(tmp_path, desc, [node], tensors, x, manifest=manifest)
    assert result.exit_code == EXIT_MALFORMED, why
    assert result.stderr.startswith(b"ml: malformed: ")


def test_overflow_bound_broken_by_one_exits_3(tmp_path):
    k = 40
    desc, node, tensors, x = dense_parts(k=k, m=1, bias=[INT32_MAX - k * MAX_PRODUCT + 1])
    assert raw_run(tmp_path, desc, [node], tensors, x).exit_code == EXIT_MALFORMED


def test_tensor_of_the_wrong_size_exits_3(tmp_path):
    desc, node, _, x = dense_parts()
    short = bytes(7)  # W must be 2·4 bytes
    node = Node(node.op, node.inputs, node.out, node.params, (tensor_key(short), None))
    assert raw_run(tmp_path, desc, [node], [short], x).exit_code == EXIT_MALFORMED


def test_softmax_table_out_of_range_exits_3(tmp_path):
    table = np.zeros(256, "<i4")
    table[3] = 2**16 + 1
    tb = table.tobytes()
    node = Node(Op.SOFTMAX, (0,), int8(5), (0,) * 14, (tensor_key(tb), None))
    assert raw_run(tmp_path, int8(5), [node], [tb], bytes(5)).exit_code == EXIT_MALFORMED


def test_input_value_of_the_wrong_size_exits_3(tmp_path):
    desc, node, tensors, _ = dense_parts()
    assert raw_run(tmp_path, desc, [node], tensors, bytes(5)).exit_code == EXIT_MALFORMED


def test_node_index_past_the_graph_exits_3(tmp_path):
    desc, node, tensors, x = dense_parts()
    manifest = encode_manifest(desc, [node])
    prev_preimage = tensor_key(x) + bytes(32)  # 32·(k + 1) bytes for k = 1
    assert run_raw(tmp_path, manifest, tensors, 1, prev_preimage, [x]).exit_code == EXIT_MALFORMED


def test_prev_state_of_the_wrong_size_exits_3(tmp_path):
    desc, node, tensors, x = dense_parts()
    manifest = encode_manifest(desc, [node])
    assert run_raw(tmp_path, manifest, tensors, 0, tensor_key(x) * 2, [x]).exit_code == EXIT_MALFORMED


@pytest.mark.parametrize("ident, value", [(1, bytes(31)), (2, bytes(3)), (3, bytes(33)[:0]), (4, bytes(16))])
def test_local_value_of_the_wrong_size_exits_3(ident, value, tmp_path):
    model = all_ops_model()
    x = rand_i8(np.random.default_rng(0), model.input.shape)
    store = PreimageStore(tmp_path)
    run = run_model(model, x)
    setup = node_program_setup(model, x, 0, run.state(0), store, run=run)
    store.put_local(ident, ZERO_CALLER, ZERO_CONTEXT, value)
    assert run_program(setup).exit_code == EXIT_MALFORMED


def test_value_bytes_of_a_node_input_come_from_the_agreed_state(tmp_path):
    """The node program reads node k's inputs by the keys in S_{k−1}: a state whose key for the input
    names other (well-formed) bytes gives the key of the node on those bytes, not on the true input."""
    model = all_ops_model()
    rng = np.random.default_rng(5)
    x, other = rand_i8(rng, model.input.shape), rand_i8(rng, model.input.shape)
    run, run_other = run_model(model, x), run_model(model, other)
    store = PreimageStore(tmp_path)
    setup = node_program_setup(model, other, 0, run.state(0), store, run=run_other)
    store.put_chunk_merkle(value_bytes(run.values[0], model.input))
    result = run_program(setup)
    assert result.keys == [run_other.keys[1]] and result.exit_code == EXIT_INVALID


@pytest.mark.parametrize("fill", [-128, 127])
@pytest.mark.parametrize(
    "op", [Op.MAXPOOL, Op.AVGPOOL, Op.ARGMAX, Op.SOFTMAX, Op.RELU], ids=lambda o: o.name.lower()
)
def test_constant_extreme_input(op, fill, tmp_path):
    """Every element at −128 or at 127: windows, maxima and sums made only of extremes."""
    g = GraphBuilder(int8(4, 4, 2) if op in (Op.MAXPOOL, Op.AVGPOOL) else int8(16))
    if op is Op.MAXPOOL:
        g.maxpool(0, (2, 3), (2, 1))
    elif op is Op.AVGPOOL:
        g.avgpool(0, (2, 3), (2, 1))
    elif op is Op.ARGMAX:
        g.argmax(0)
    elif op is Op.SOFTMAX:
        g.softmax(0, softmax_table(0.1))
    else:
        g.relu(0, -128)
    model = g.build()
    x = np.full(model.input.shape, fill, np.int8)
    if op is Op.MAXPOOL:
        assert set(run_model(model, x).output.reshape(-1).tolist()) == {fill}
    check_node_in_vm(model, x, 0, tmp_path)
