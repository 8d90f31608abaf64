"""Model format version 2 (ml-spec §1, §3, §10): version-1 models keep their commitments, version-2
manifests round-trip, fp16 scales become integers by their bits, and every malformed version-2 case
raises its typed error with a one-line message."""

import struct

import numpy as np
import pytest
from _digits import DIGITS_REPORT, MODELS
from _ml_fixtures import all_ops_model, tiny_model

from opml.ml import blocks, errors, gguf_quant, ops
from opml.ml import llama_tables as lt
from opml.ml.format import (
    MAX_NODES_V2,
    DType,
    GraphBuilder,
    Model,
    Node,
    Op,
    TensorDesc,
    check_graph,
    decode_manifest,
    decode_model_file,
    encode_manifest,
    encode_model_file,
    int8,
    int16,
    int32,
    node_offset,
    r16,
    read_model,
    tensor_key,
)
from opml.ml.runner import apply_node, run_model

# --- version 1 is unchanged -----------------------------------------------------------------------

# Commitments of the in-code fixtures, computed by the format before version 2 existed.
V1_COMMITMENTS = {
    "tiny": "030235d3d94f59eac1216de4c706c6b7c266c060750ede93e7ebf876d34ef4ad",
    "all_ops": "036499efaaf1f4604ad97aae94a9a65805be150dde0cc9ff9286903f3a8c0abc",
}


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_v1_model_files_load_with_their_commitments(name):
    model = read_model(MODELS / f"{name}.opml")
    assert model.version == 1
    assert "0x" + model.commitment.hex() == DIGITS_REPORT["models"][name]["commitment"]
    assert encode_model_file(model) == (MODELS / f"{name}.opml").read_bytes()


def test_v1_fixtures_keep_their_commitments():
    assert tiny_model().commitment.hex() == V1_COMMITMENTS["tiny"]
    assert all_ops_model().commitment.hex() == V1_COMMITMENTS["all_ops"]
    assert struct.unpack_from("<I", tiny_model().manifest, 4) == (1,)


def test_v1_manifests_reject_version_2_features():
    model = tiny_model()
    patched = bytearray(model.manifest)
    struct.pack_into("<I", patched, 64, int(Op.ADD32))  # node 0's op
    with pytest.raises(errors.UnknownOpError, match="version-2"):
        decode_manifest(bytes(patched))
    patched = bytearray(model.manifest)
    struct.pack_into("<I", patched, 12, int(DType.INT16))  # input dtype
    with pytest.raises(errors.UnknownDTypeError, match="version-2"):
        decode_manifest(bytes(patched))
    with pytest.raises(errors.UnknownOpError):
        GraphBuilder(int32(2, 2)).add32(0, 0)
    with pytest.raises(errors.UnknownDTypeError):
        GraphBuilder(int16(4)).relu(0)


def test_v1_limits_hold_in_v1_and_grow_in_v2():
    g = GraphBuilder(int32(1))
    nodes = [Node(Op.RELU, (i,), int32(1)) for i in range(4097)]
    with pytest.raises(errors.InvalidFieldError):
        check_graph(g.input, nodes, 1)
    adds = [Node(Op.ADD32, (i, i), int32(1)) for i in range(4097)]
    assert len(check_graph(g.input, adds, 2)) == 4098
    header = bytearray(encode_manifest(int32(1), adds[:1], 2))
    struct.pack_into("<I", header, 8, MAX_NODES_V2 + 1)
    with pytest.raises(errors.InvalidFieldError):
        decode_manifest(bytes(header))


# --- fp16 scales by their bits --------------------------------------------------------------------


def test_every_fp16_scale_decodes_to_its_exact_integer():
    bits = np.arange(1 << 16, dtype=np.uint16)
    exp = (bits >> 10) & 31
    ok = (exp < 31) & ~((exp == 0) & ((bits & 1023) != 0))
    value = bits[ok].view(np.float16).astype(np.float64)
    for f in (0, 10, 18, 24):
        small = np.abs(value) * 2.0**f < 2**24
        exact = np.floor(value * 2.0**f) == value * 2.0**f
        keep = small & exact  # the scales that are integers below 2^24 at this F
        got = blocks.scale_ints(bits[ok][keep], f, "t")
        assert np.array_equal(got, (value[keep] * 2.0**f).astype(np.int64))  # float64 is exact here
    for bad in (0x7C00, 0xFC00, 0x7E00, 0x0001, 0x83FF):  # ±Inf, NaN, subnormals
        with pytest.raises(errors.BadScaleError):
            blocks.scale_ints(np.array([bad], np.uint16), 24, "t")
    with pytest.raises(errors.ScaleRangeError, match="multiple"):
        blocks.scale_ints(np.array([0x3C01], np.uint16), 9, "t")  # 1 + 2^-10 needs F ≥ 10
    assert blocks.scale_ints(np.array([0x3C01], np.uint16), 10, "t").tolist() == [1025]
    with pytest.raises(errors.ScaleRangeError, match="2\\^24"):
        blocks.scale_ints(np.array([0x5C00], np.uint16), 20, "t")  # 256 · 2^20 = 2^28


@pytest.mark.parametrize("is_q4_1", [True, False])
def test_blocks_decode_to_the_gguf_weights_exactly(is_q4_1):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.05, (7, 96))
    data = (gguf_quant.quantize_q4_1 if is_q4_1 else gguf_quant.quantize_q8_0)(w)
    f = blocks.smallest_f(data, is_q4_1)
    blocks.check_scales(data, is_q4_1, f, "t")
    if f > 0:
        with pytest.raises(errors.ScaleRangeError):
            blocks.check_scales(data, is_q4_1, f - 1, "t")
    rows = blocks.decode_rows(data, is_q4_1, 96, slice(0, 7), f, "t")
    ints = rows.q.astype(np.int64) * rows.d[..., None]
    if rows.m is not None:
        ints += rows.m[..., None]
    want = gguf_quant.dequantize(data, is_q4_1, 96) * 2.0**f  # dyadic: exact in float64
    assert np.array_equal(ints.reshape(7, 96), want)
    assert np.max(np.abs(want / 2.0**f - w)) < 0.05  # and the blocks are the weights


def test_q4_1_nibble_layout():
    """Byte j of a block holds weight j in its low nibble and weight j + 16 in its high nibble."""
    block = struct.pack("<ee", 1.0, -2.0) + bytes((j & 15) | ((15 - j) << 4) for j in range(16))
    rows = blocks.decode_rows(block, True, 32, slice(0, 1), 0, "t")
    assert rows.q[0, 0].tolist() == list(range(16)) + [15 - j for j in range(16)]
    assert (rows.d.tolist(), rows.m.tolist()) == ([[1]], [[-2]])


# --- a small version-2 model ----------------------------------------------------------------------

H, V = 32, 16


def _weights(seed, m, k, is_q4_1):
    w = np.random.default_rng(seed).normal(0, 0.1, (m, k))
    data = (gguf_quant.quantize_q4_1 if is_q4_1 else gguf_quant.quantize_q8_0)(w)
    return data, blocks.smallest_f(data, is_q4_1)


EMB = _weights(1, V, H, False)
WQ = _weights(2, 32, H, True)


def small_model() -> Model:
    """ids → embedding → rmsnorm → qdense → rope → attention(self) → qdense (int32) → add32 → rmsnorm →
    swiglu → quantize → qdense_argmax over the tied embedding, split in two and merged."""
    g = GraphBuilder(int32(3), version=2)
    x = g.embedding(0, EMB[0], DType.Q8_0, EMB[1], H, 12)
    h = g.rmsnorm(x, np.full(H, 4096, np.int16), 12, 168)
    q = g.rope(g.qdense(h, WQ[0], DType.Q4_1, WQ[1]), lt.rope_table(8, 16, 1e4), 16, 0)
    kv = g.concat(g.reshape(q, [3, 1, 32]), g.reshape(q, [3, 1, 32]), 1)
    a = g.attention(q, kv, lt.exp2_table(), 16, *lt.attention_scale(16))
    x = g.add32(x, g.qdense(a, WQ[0], DType.Q4_1, WQ[1], out=DType.INT32, r=12))
    h = g.rmsnorm(x, np.full(H, 4096, np.int16), 12, 168)
    s = g.swiglu(h, h, lt.sigmoid_table())
    last = g.slice(s, 2, 1)
    top = g.qdense_argmax(last, EMB[0], DType.Q8_0, EMB[1], row0=0, m=10)
    low = g.qdense_argmax(last, EMB[0], DType.Q8_0, EMB[1], row0=10, m=6)
    g.argmax_merge(top, low)
    return g.build()


def test_v2_round_trip():
    model = small_model()
    assert model.version == 2 and struct.unpack_from("<I", model.manifest, 4) == (2,)
    again = decode_model_file(encode_model_file(model))
    assert again.manifest == model.manifest and again.commitment == model.commitment
    assert again.tensors == model.tensors
    assert EMB[0] in model.tensors.values()  # the GGUF bytes as they are, one tensor for both uses


def _replace(model: Model, index: int, *, data: bytes | None = None, params=None, out=None) -> Model:
    """``model`` with node ``index``'s first tensor, params or output desc replaced (checked anew)."""
    nodes = list(model.nodes)
    n = nodes[index]
    tensors = dict(model.tensors)
    keys = n.tensor_keys
    if data is not None:
        keys = (tensor_key(data), keys[1])
        tensors[keys[0]] = data
    full = tuple(params) + (0,) * (14 - len(params)) if params is not None else n.params
    nodes[index] = Node(n.op, n.inputs, out or n.out, full, keys)
    return Model.create(model.input, nodes, tensors, version=2)


def _node(model: Model, op: Op) -> int:
    return next(i for i, n in enumerate(model.nodes) if n.op is op)


def _one_line(info) -> None:
    message = str(info.value)
    assert message and "\n" not in message and isinstance(info.value, errors.ModelFormatError)


@pytest.mark.parametrize(
    "bits,error",
    [(0x7C00, errors.BadScaleError), (0x7E01, errors.BadScaleError), (0x0200, errors.BadScaleError)],
)
def test_bad_fp16_scale_is_rejected(bits, error):
    model = small_model()
    i = _node(model, Op.QDENSE)
    data = bytearray(WQ[0])
    struct.pack_into("<H", data, 20 * 5, bits)  # block 5's d
    with pytest.raises(error) as info:
        _replace(model, i, data=bytes(data))
    _one_line(info)


def test_scale_that_does_not_fit_f_is_rejected():
    model = small_model()
    i = _node(model, Op.QDENSE)
    p = list(model.nodes[i].params[:5])
    with pytest.raises(errors.ScaleRangeError) as info:
        _replace(model, i, params=[p[0], p[1] - 1, *p[2:]])
    _one_line(info)
    big = bytearray(WQ[0])
    struct.pack_into("<H", big, 2, 0xE800)  # block 0's m = −2048: 2^11 · 2^F ≥ 2^24 for F ≥ 13
    with pytest.raises(errors.ScaleRangeError, match="2\\^24"):
        _replace(model, i, data=bytes(big))
    with pytest.raises(errors.ParamRangeError):
        _replace(model, i, params=[p[0], 25, *p[2:]])


def test_bad_block_shapes_are_rejected():
    model = small_model()
    i = _node(model, Op.QDENSE)
    with pytest.raises(errors.BlockShapeError) as info:
        _replace(model, i, data=WQ[0][:-7])
    _one_line(info)
    with pytest.raises(errors.TensorSizeError):
        _replace(model, i, data=WQ[0][:-20])  # whole blocks, one row short
    g = GraphBuilder(r16(2, 40), version=2)
    with pytest.raises(errors.BlockShapeError):
        g.qdense(0, bytes(40 // 32 * 20 * 4), DType.Q4_1, 0)


def test_shard_outside_its_matrix_is_rejected():
    model = small_model()
    i = _node(model, Op.QDENSE_ARGMAX)
    p = model.nodes[i].params[:5]
    with pytest.raises(errors.ShardError) as info:
        _replace(model, i, params=[p[0], p[1], p[2], 10, 7])
    _one_line(info)
    j = _node(model, Op.QDENSE)
    n = model.nodes[j]
    with pytest.raises(errors.ShardError):
        _replace(model, j, params=[*n.params[:3], 1, 0])  # rows 1 … 32 of 32


def test_node_over_the_step_bound_is_rejected():
    x = r16(64, 4096)
    w = Node(Op.QDENSE, (0,), r16(64, 16384), (7, 21, 16384, 0, 0) + (0,) * 9, (b"\1" * 32, None))
    with pytest.raises(errors.NodeCostError) as info:
        check_graph(x, [w], 2)
    _one_line(info)
    ok = Node(Op.QDENSE, (0,), r16(64, 512), (7, 21, 16384, 0, 0) + (0,) * 9, (b"\1" * 32, None))
    check_graph(x, [ok], 2)  # a row split of the same 71 MB matrix fits


def test_big_parameter_tensors_fit_v2():
    """SmolLM2's tied embedding (28.7 MiB of q8_0) is one tensor; above 2^30 bytes is rejected."""
    emb = Node(Op.EMBEDDING, (0,), int32(1, 576), (7, 21, 49152, 12) + (0,) * 10, (b"\1" * 32, None))
    check_graph(int32(1), [emb], 2)
    huge = Node(Op.EMBEDDING, (0,), int32(1, 8192), (7, 21, 1 << 17, 12) + (0,) * 10, (b"\1" * 32, None))
    with pytest.raises(errors.InvalidFieldError):
        check_graph(int32(1), [huge], 2)


@pytest.mark.parametrize(
    "op,patch",
    [
        (Op.ROPE, lambda t: t.at(5, (1 << 30) + 1)),
        (Op.ATTENTION, lambda t: t.at(0, (1 << 30) - 1)),
        (Op.ATTENTION, lambda t: t.at(9, -1)),
        (Op.SWIGLU, lambda t: t.at(2048, (1 << 30) + 1)),
    ],
)
def test_tables_out_of_range_are_rejected(op, patch):
    model = small_model()
    i = _node(model, op)
    table = np.frombuffer(model.tensors[model.nodes[i].tensor_keys[0]], "<i4").copy()

    class At:
        def at(self, j, v):
            table.reshape(-1)[j] = v
            return table

    with pytest.raises(errors.ParamRangeError) as info:
        _replace(model, i, data=patch(At()).tobytes())
    _one_line(info)


@pytest.mark.parametrize(
    "build,error",
    [
        (lambda g: g.reshape(g.qdense(0, WQ[0], DType.Q4_1, WQ[1]), [2, 2, 16]), errors.ShapeMismatchError),
        (lambda g: g.concat(0, 0, 1), errors.ParamRangeError),  # across the rows of an r16
        (lambda g: g.rope(0, lt.rope_table(4, 16, 1e4), 16, 3), errors.ParamRangeError),  # P < pos0 + T
        (lambda g: g.rope(0, lt.rope_table(8, 12, 1e4), 12, 0), errors.ShapeMismatchError),  # 32 % 12
        (lambda g: g.slice(0, 1, 2), errors.ParamRangeError),
        (lambda g: g.swiglu(0, g.slice(0, 0, 1), lt.sigmoid_table()), errors.ShapeMismatchError),
        (lambda g: g.quantize(0, DType.R16), errors.ShapeMismatchError),  # r16 → r16
        (lambda g: g.rmsnorm(0, np.ones(32, np.int16), 0, 0), errors.ShapeMismatchError),  # wants int32
        (lambda g: g.add(Op.RELU, [0], [0]), errors.ShapeMismatchError),  # v1 ops keep their dtypes
    ],
)
def test_v2_op_rules(build, error):
    g = GraphBuilder(r16(2, 32), version=2)
    with pytest.raises(error) as info:
        build(g)
    _one_line(info)


def test_attention_shapes():
    g = GraphBuilder(r16(3, 64), version=2)
    kv3 = g.concat(g.reshape(g.slice(0, 0, 3), [3, 1, 64]), g.reshape(g.slice(0, 0, 3), [3, 1, 64]), 1)
    x, mul = lt.exp2_table(), lt.attention_scale(16)
    g.attention(0, kv3, x, 16, *mul)  # 4 query heads over 4 KV heads
    with pytest.raises(errors.ShapeMismatchError):
        g.attention(0, kv3, x, 24, *mul)  # 64 % 24
    kv2 = g.slice(kv3, 0, 2)
    with pytest.raises(errors.ShapeMismatchError):
        g.attention(0, kv2, x, 16, *mul)  # fewer keys than queries
    with pytest.raises(errors.ParamRangeError):
        g.attention(0, kv3, x, 16, 1 << 23, 10)


def test_block_dtype_is_never_a_value():
    with pytest.raises(errors.UnknownDTypeError):
        GraphBuilder(TensorDesc(DType.Q4_1, (1, 32)), version=2).add32(0, 0)
    header = bytearray(encode_manifest(int32(1), [Node(Op.ADD32, (0, 0), int32(1))], 2))
    struct.pack_into("<I", header, 12, int(DType.Q8_0))
    with pytest.raises(errors.UnknownDTypeError):
        decode_manifest(bytes(header))
    assert int8(1).nbytes == 1 and r16(3, 5).nbytes == 3 * (4 + 10)


# --- a tensor shared by nodes is checked for each way it is read (review findings) -----------------


def _fp16(v: float) -> bytes:
    return np.array(v, np.float16).view(np.uint16).tobytes()


def test_an_rmsnorm_weight_does_not_vouch_for_a_table_with_its_bytes():
    """An int16 rmsnorm weight (never range-checked) with the bytes of a bad exp2 table: the attention
    that reads those bytes as its table is still checked, and rejected."""
    h = 2050  # 2·2050 bytes = the 4·1025 bytes of the table
    table = np.zeros(1025, np.int32)
    table[1] = -5
    g = GraphBuilder(int32(1, h), version=2)
    x = g.rmsnorm(0, table.view(np.int16), 12, 0)
    kv = g.concat(g.reshape(x, (1, 1, h)), g.reshape(x, (1, 1, h)), axis=1)
    g.attention(x, kv, table, 205, 1 << 22, 10)
    with pytest.raises(errors.ParamRangeError):
        g.build()


def _q4_1_and_q8_0_bytes(nan_in_q8_0: bool) -> bytes:
    """680 bytes: 34 q4_1 blocks with valid scales, and as 20 q8_0 blocks valid scales too (they lie in
    the q4_1 nibbles), but for block 1's ``d`` when ``nan_in_q8_0``."""
    data = bytearray(np.random.default_rng(1).integers(0, 256, 680, dtype=np.uint8).tobytes())
    for b in range(20):
        if (34 * b) % 20 >= 4:
            data[34 * b : 34 * b + 2] = _fp16(1 / 16)
    for b in range(34):
        data[20 * b : 20 * b + 4] = _fp16(1 / 16) * 2
    if nan_in_q8_0:
        data[34:36] = (0x7E00).to_bytes(2, "little")
    return bytes(data)


def test_scales_are_checked_as_each_wtype_reads_them():
    data = _q4_1_and_q8_0_bytes(nan_in_q8_0=True)
    g = GraphBuilder(r16(1, 32), version=2)
    g.qdense(0, data, DType.Q4_1, 4, row0=0, m=1)
    g.qdense(0, data, DType.Q8_0, 4, row0=1, m=1)
    with pytest.raises(errors.BadScaleError):
        g.build()


def test_the_runner_decodes_shared_bytes_as_each_node_reads_them():
    """The same bytes as q4_1 and as q8_0, and as q8_0 rows of 32 and of 64: each node's output is what
    it gives when run alone (the runner's weight cache is keyed by how the bytes are read)."""
    x = np.random.default_rng(2).integers(-300, 300, (1, 64)).astype(np.int32)
    data = _q4_1_and_q8_0_bytes(nan_in_q8_0=False)
    g = GraphBuilder(int32(1, 64), version=2)
    rows32 = g.quantize(g.reshape(0, (2, 32)), DType.R16)
    g.qdense(rows32, data, DType.Q4_1, 4, row0=0, m=1)
    g.qdense(rows32, data, DType.Q8_0, 4, row0=0, m=1)
    g.qdense(g.quantize(0, DType.R16), data, DType.Q8_0, 4, row0=0, m=1)  # the q8_0 bytes as [10, 64]
    model = g.build()
    run = run_model(model, x)
    for k, node in enumerate(model.nodes):
        if node.op is Op.QDENSE:
            alone = Model.create(model.input, model.nodes, model.tensors, version=2)
            ins = [run.values[v] for v in node.inputs]
            assert bytes(apply_node(alone, k, ins)) == bytes(run.values[k + 1])


# --- requantize's rounding mode (p5) --------------------------------------------------------------


def _requantize_p5(manifest: bytes, index: int, mode: int, version: int | None = None) -> bytes:
    """``manifest`` with node ``index``'s p5 (requantize's mode) and, if given, the header's version set."""
    patched = bytearray(manifest)
    assert struct.unpack_from("<I", patched, 64 + 160 * index) == (int(Op.REQUANTIZE),)
    struct.pack_into("<i", patched, 64 + 160 * index + 40 + 4 * 5, mode)
    if version is not None:
        struct.pack_into("<I", patched, 4, version)
    return bytes(patched)


def _requantize_model(version: int, mode: int = 0) -> Model:
    g = GraphBuilder(int32(8), version=version)
    g.requantize(0, 1518500250, 38, -5, mode=mode)
    g.relu(g.requantize(0, 1, 2, 0, lo=-20, hi=20, mode=mode), -3)
    return g.build()


def test_requantize_mode_0_records_are_unchanged():
    """``mode`` defaults to 0, which writes the record as before (the v1 fixtures and digits models, which
    use requantize, keep their commitments above); the same graph in v1 and v2 differs by the version."""
    v1 = _requantize_model(1)
    assert all(n.params[5] == 0 for n in v1.nodes) and v1.nodes[0].p == (1518500250, 38, -5, -128, 127, 0)
    assert v1.manifest[8:] == _requantize_model(2).manifest[8:]
    assert any(n.op is Op.REQUANTIZE for n in all_ops_model().nodes)


@pytest.mark.parametrize("mode", [1, 2])
def test_requantize_modes_1_and_2_need_version_2(mode):
    with pytest.raises(
        errors.ParamRangeError, match=rf"node 0 \(requantize\): mode = {mode} .*version-2"
    ) as info:
        GraphBuilder(int32(8)).requantize(0, 1, 2, 0, mode=mode)
    _one_line(info)
    manifest = _requantize_p5(_requantize_model(2).manifest, 1, mode, version=1)  # a v1 graph but for p5
    decode_manifest(_requantize_p5(manifest, 1, 0))  # valid in version 1 with mode 0
    with pytest.raises(
        errors.ParamRangeError, match=rf"node 1 \(requantize\): mode = {mode} .*version-2"
    ) as info:
        decode_manifest(manifest)
    _one_line(info)
    with pytest.raises(errors.ParamRangeError, match="version-2"):
        decode_manifest(_requantize_p5(all_ops_model().manifest, 2, mode))


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("mode", [3, -1, 2**31 - 1])
def test_requantize_mode_outside_0_2_is_rejected(version, mode):
    with pytest.raises(
        errors.ParamRangeError, match=rf"node 0 \(requantize\): mode = {mode}, want 0 … 2"
    ) as info:
        GraphBuilder(int32(8), version=version).requantize(0, 1, 2, 0, mode=mode)
    _one_line(info)
    with pytest.raises(errors.ParamRangeError) as info:
        decode_manifest(_requantize_p5(_requantize_model(version).manifest, 0, mode))
    _one_line(info)


def test_requantize_mode_1_loads_in_version_2(tmp_path):
    model = _requantize_model(2, mode=1)
    assert [n.params[5] for n in model.nodes if n.op is Op.REQUANTIZE] == [1, 1]
    path = tmp_path / "even.opml"
    path.write_bytes(encode_model_file(model))
    again = read_model(path, verify=True)
    assert again.version == 2 and again.manifest == model.manifest and again.commitment == model.commitment
    x = np.array([2, -2, 6, -6, 10, -10, 2**31 - 1, -(2**31)], np.int32)
    assert run_model(again, x).values[2].tolist()[:6] == [0, 0, 2, -2, 2, -2]  # x/4 to even


def test_requantize_mode_2_loads_in_version_2(tmp_path):
    """Mode 2 (float32 product) with ``M0 < 2^24``: loads, round-trips and runs as numpy's float32."""
    g = GraphBuilder(int32(8), version=2)
    g.requantize(0, 2**24 - 1, 30, -5, mode=2)
    g.requantize(0, 377, 26, 0, lo=-20, hi=20, mode=2)
    model = g.build()
    assert [n.params[5] for n in model.nodes] == [2, 2]
    path = tmp_path / "f32.opml"
    path.write_bytes(encode_model_file(model))
    again = read_model(path, verify=True)
    assert again.manifest == model.manifest and again.commitment == model.commitment
    x = np.array([445019, -445019, 83886081, 0, 1, -1, 2**31 - 1, -(2**31)], np.int32)
    y = run_model(again, x).values[2].tolist()
    assert y[:2] == [2, -2] and y[6:] == [20, -20]  # 5·2^25 + 63 over 2^26: the float32 tie 2.5 → 2


def test_requantize_mode_2_m0_below_2_24():
    """Mode 2's scalar M0 must be < 2^24 (exact in float32); modes 0 and 1 keep the whole int32 range."""
    want = r"node 0 \(requantize\): M0 = 16777216, want 1 … 16777215"
    with pytest.raises(errors.ParamRangeError, match=want) as info:
        GraphBuilder(int32(8), version=2).requantize(0, 2**24, 30, 0, mode=2)
    _one_line(info)
    GraphBuilder(int32(8), version=2).requantize(0, 2**24 - 1, 30, 0, mode=2)
    for mode in (0, 1):
        GraphBuilder(int32(8), version=2).requantize(0, 2**24, 30, 0, mode=mode)
    g = GraphBuilder(int32(8), version=2)
    g.requantize(0, 2**24 - 1, 30, 0, mode=2)
    manifest = bytearray(g.build().manifest)
    decode_manifest(bytes(manifest))
    for m0 in (2**24, 2**31 - 1):
        struct.pack_into("<i", manifest, node_offset(0) + 40, m0)
        with pytest.raises(
            errors.ParamRangeError, match=rf"node 0 \(requantize\): M0 = {m0}, want 1 … 16777215"
        ):
            decode_manifest(bytes(manifest))


# --- requantize per channel (version 2) -------------------------------------------------------------

CHANNELS = np.array([[1518500250, 38], [1, 1], [2**31 - 1, 62], [1 << 30, 31]], np.int32)


def _channels_model(version: int = 2, table: np.ndarray = CHANNELS) -> Model:
    """dense int8 [3] → int32 [4] → requantize with 4 channels; conv2d → int32 [2, 2, 4] → the same."""
    g = GraphBuilder(int8(3, 3, 1), version=version)
    w = np.arange(-18, 18, dtype=np.int8).reshape(4, 3, 3, 1)
    conv = g.conv2d(0, w[:, :2, :2], np.array([1, -2, 3, -4]))
    g.requantize(conv, 0, 0, -3, mode=1, channels=table)
    d = g.dense(0, w.reshape(4, 9), zx=1)
    g.requantize(d, 0, 0, 5, lo=-100, hi=100, channels=table)
    return g.build()


def _with_key(model: Model, index: int, data: bytes, params=None, version: int = 2) -> Model:
    n = model.nodes[index]
    nodes = list(model.nodes)
    full = tuple(params) + (0,) * (14 - len(params)) if params is not None else n.params
    nodes[index] = Node(n.op, n.inputs, n.out, full, (tensor_key(data), n.tensor_keys[1]))
    return Model.create(model.input, nodes, {**model.tensors, tensor_key(data): data}, version=version)


def test_requantize_channels_loads_and_round_trips(tmp_path):
    model = _channels_model()
    for k in (1, 3):
        n = model.nodes[k]
        assert n.params[:6] == (0, 0, n.params[2], n.params[3], n.params[4], n.params[5])
        assert np.array_equal(model.param(k, 0), CHANNELS) and n.tensor_keys[1] is None
    path = tmp_path / "channels.opml"
    path.write_bytes(encode_model_file(model))
    again = read_model(path, verify=True)
    assert again.manifest == model.manifest and again.commitment == model.commitment
    assert again.tensors == model.tensors
    x = np.arange(-4, 5, dtype=np.int8).reshape(3, 3, 1)
    run = run_model(again, x)
    for k in (1, 3):
        p = again.nodes[k].p
        assert np.array_equal(run.values[k + 1], ops.requantize_channels(run.values[k], CHANNELS, *p[2:6]))
    # without a table the record and the commitment are those of before: p0, p1 and no key
    g = GraphBuilder(int32(4), version=2)
    g.requantize(0, 1518500250, 38, -5)
    assert g.build().nodes[0].tensor_keys == (None, None)


@pytest.mark.parametrize("p0, p1", [(1, 0), (0, 1), (1518500250, 38), (-1, 0)])
def test_requantize_channels_with_m0_or_t_is_rejected(p0, p1):
    model = _channels_model()
    n = model.nodes[1]
    data = bytes(model.tensors[n.tensor_keys[0]])
    with pytest.raises(errors.ParamRangeError, match=r"node 1 \(requantize\): M0 = .* per-channel") as info:
        _with_key(model, 1, data, params=(p0, p1, *n.params[2:6]))
    _one_line(info)
    manifest = bytearray(model.manifest)
    struct.pack_into("<ii", manifest, node_offset(1) + 40, p0, p1)
    with pytest.raises(errors.ParamRangeError, match=r"node 1 \(requantize\)"):
        decode_manifest(bytes(manifest))


@pytest.mark.parametrize(
    "why, table",
    [
        ("a channel short", CHANNELS[:3]),
        ("a channel more", np.concatenate([CHANNELS, CHANNELS[:1]])),
        ("[C] not [C, 2]", CHANNELS[:, 0].copy()),
        ("int16", CHANNELS.astype(np.int16)),
        ("int64", CHANNELS.astype(np.int64)),
    ],
)
def test_requantize_channels_of_the_wrong_size_is_rejected(why, table):
    model = _channels_model()
    with pytest.raises(errors.TensorSizeError, match=r"node 1 \(requantize\): tensor 0 has") as info:
        _with_key(model, 1, table.tobytes())
    _one_line(info)
    if table.shape != (4, 2):  # the builder refuses the shape (and writes any dtype's values as int32)
        with pytest.raises(errors.ShapeMismatchError, match=r"per-channel table of shape"):
            GraphBuilder(int32(4), version=2).requantize(0, 0, 0, 0, channels=table)


@pytest.mark.parametrize(
    "c, m0, t, name",
    [
        (0, 0, 5, "M0"),
        (2, -1, 5, "M0"),
        (3, -(2**31), 5, "M0"),
        (1, 1, 0, "t"),
        (3, 1, 63, "t"),
        (0, 5, -1, "t"),
    ],
)
def test_requantize_channels_out_of_range_is_rejected(c, m0, t, name):
    table = CHANNELS.copy()
    table[c] = m0, t
    model = _channels_model()
    want = rf"node 1 \(requantize\) channel {c}: {name} = "
    with pytest.raises(errors.ParamRangeError, match=want) as info:
        _with_key(model, 1, table.tobytes())
    _one_line(info)
    with pytest.raises(errors.ParamRangeError, match=r"node 1 \(requantize\) channel"):  # the builder
        _channels_model(table=table)
    ok = table.copy()
    ok[c] = (2**31 - 1, 62) if name == "M0" else (1, 1)
    _channels_model(table=ok)


def test_requantize_channels_needs_version_2():
    want = r"node 1 \(requantize\): a per-channel table needs a version-2"
    with pytest.raises(errors.ParamRangeError, match=want):
        _channels_model(version=1)
    manifest = bytearray(_channels_model().manifest)
    struct.pack_into("<I", manifest, 4, 1)
    with pytest.raises(errors.ParamRangeError, match=want):
        decode_manifest(bytes(manifest))


def test_requantize_channels_with_a_second_key_is_rejected():
    model = _channels_model()
    n = model.nodes[1]
    nodes = list(model.nodes)
    nodes[1] = Node(n.op, n.inputs, n.out, n.params, (n.tensor_keys[0], n.tensor_keys[0]))
    with pytest.raises(errors.NonCanonicalError, match=r"node 1 \(requantize\): tensor_key\[1\]"):
        Model.create(model.input, nodes, model.tensors, version=2)


@pytest.mark.parametrize("c", [0, 3])
def test_requantize_channels_mode_2_m0_below_2_24(c):
    """In mode 2 every table row's ``M0_c`` must be < 2^24 (checked with the tensors, naming the channel)."""
    table = np.array([[2**24 - 1, 30], [1, 1], [377, 26], [1 << 23, 31]], np.int32)

    def build(tab: np.ndarray) -> Model:
        g = GraphBuilder(int8(3, 3, 1), version=2)
        w = np.arange(-18, 18, dtype=np.int8).reshape(4, 9)
        g.requantize(g.dense(0, w, zx=1), 0, 0, 5, mode=2, channels=tab)
        return g.build()

    model = build(table)
    x = np.arange(-4, 5, dtype=np.int8).reshape(3, 3, 1)
    run = run_model(model, x)
    assert np.array_equal(run.values[2], ops.requantize_channels(run.values[1], table, 5, -128, 127, 2))
    bad = table.copy()
    bad[c, 0] = 2**24
    want = rf"node 1 \(requantize\) channel {c}: M0 = 16777216, want 1 … 16777215"
    with pytest.raises(errors.ParamRangeError, match=want) as info:
        build(bad)
    _one_line(info)
    with pytest.raises(errors.ParamRangeError, match=want):
        _with_key(model, 1, bad.tobytes())
    n = model.nodes[1]  # the same table in mode 1 is fine
    _with_key(model, 1, bad.tobytes(), params=(*n.params[:5], 1))
