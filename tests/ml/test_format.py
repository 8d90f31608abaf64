"""The model format of ml-spec §1–§3: byte layout at the spec's literal offsets, an independent
chunk-Merkle commitment, round trips, and one test per rejection case of §3.4."""

import struct

import numpy as np
import pytest
import sha3
from _ml_fixtures import all_ops_model, tiny_model

from opml.ml import errors
from opml.ml.format import (
    GraphBuilder,
    Model,
    decode_manifest,
    decode_model_file,
    encode_model_file,
    int8,
    int32,
    read_model,
    tensor_key,
    write_model,
)

# --- an independent chunk-Merkle key (oracle-spec §1.3), from keccak alone -----------------------


def keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def chunk_merkle_key(data: bytes) -> bytes:
    chunks = [data[i : i + 32].ljust(32, b"\0") for i in range(0, len(data), 32)] or [bytes(32)]
    depth = (len(chunks) - 1).bit_length()
    level = chunks + [bytes(32)] * ((1 << depth) - len(chunks))
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return bytes([3]) + keccak(level[0] + len(data).to_bytes(32, "big"))[1:]


# --- layout ---------------------------------------------------------------------------------------


def test_manifest_layout_at_the_spec_offsets():
    model = tiny_model()
    m = model.manifest
    assert len(m) == 64 + 160 * 2
    assert m[0:4] == b"OPMM"
    assert struct.unpack_from("<4I", m, 4) == (1, 2, 1, 1)  # version, N, int8, rank 1
    assert struct.unpack_from("<4I", m, 20) == (4, 0, 0, 0)
    assert m[36:64] == bytes(28)
    dense = m[64:224]
    assert struct.unpack_from("<6I", dense, 0) == (1, 1, 0, 0, 2, 1)  # dense, 1 input, v0, -, int32, rank 1
    assert struct.unpack_from("<4I", dense, 24) == (2, 0, 0, 0)
    assert struct.unpack_from("<14i", dense, 40) == (3,) + (0,) * 13
    w = np.array([[1, -2, 3, -4], [127, -128, 0, 5]], np.int8).tobytes()
    b = struct.pack("<2i", 7, -9)
    assert dense[96:128] == chunk_merkle_key(w) and dense[128:160] == chunk_merkle_key(b)
    argmax = m[224:384]
    assert struct.unpack_from("<10I", argmax, 0) == (9, 1, 1, 0, 2, 1, 1, 0, 0, 0)
    assert argmax[40:160] == bytes(120)
    assert model.commitment == chunk_merkle_key(m)


def test_file_layout():
    model = tiny_model()
    data = encode_model_file(model)
    assert data[:8] == b"OPMLMODL"
    assert struct.unpack_from("<3I", data, 8) == (1, 384, 2)
    assert data[20:404] == model.manifest
    w_key = model.nodes[0].tensor_keys[0]
    assert data[404:436] == w_key and struct.unpack_from("<I", data, 436) == (8,)
    assert data[440:448] == model.tensors[w_key]
    b_key = model.nodes[0].tensor_keys[1]
    assert data[448:480] == b_key and struct.unpack_from("<I", data, 480) == (8,)
    assert data[484:492] == model.tensors[b_key]
    assert len(data) == 492


def test_round_trip_of_every_op(tmp_path):
    model = all_ops_model()
    assert {n.op.name for n in model.nodes} >= {
        "DENSE", "CONV2D", "REQUANTIZE", "ADD", "RELU", "MAXPOOL", "AVGPOOL", "RESHAPE", "ARGMAX", "LUT",
        "SOFTMAX",
    }  # fmt: skip
    path = tmp_path / "m.opml"
    write_model(model, path)
    again = read_model(path)
    assert again.manifest == model.manifest and again.commitment == model.commitment
    assert again.tensors == model.tensors
    assert encode_model_file(again) == path.read_bytes()
    assert decode_manifest(model.manifest) == (model.input, model.nodes)
    for key, data in model.tensors.items():
        assert key == chunk_merkle_key(data) == tensor_key(data)


def test_shared_tensor_is_stored_once():
    g = GraphBuilder(int8(3))
    w = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.int8)
    v = g.dense(0, w)
    v = g.requantize(v, 1, 1, 0)
    g.dense(v, w)
    model = g.build()
    data = encode_model_file(model)
    assert struct.unpack_from("<I", data, 16) == (1,)
    assert decode_model_file(data).nodes == model.nodes


# --- rejections -----------------------------------------------------------------------------------


def _file(manifest: bytes, tensors: list[tuple[bytes, bytes]]) -> bytes:
    out = b"OPMLMODL" + struct.pack("<3I", 1, len(manifest), len(tensors)) + manifest
    for key, data in tensors:
        out += key + struct.pack("<I", len(data)) + data
    return out


def _tensor_list(model: Model) -> list[tuple[bytes, bytes]]:
    seen = []
    for node in model.nodes:
        for k in node.tensor_keys:
            if k is not None and k not in seen:
                seen.append(k)
    return [(k, model.tensors[k]) for k in seen]


def _rejects(data: bytes, error: type) -> str:
    with pytest.raises(error) as info:
        decode_model_file(data)
    message = str(info.value)
    assert message and "\n" not in message
    assert isinstance(info.value, errors.ModelFormatError)
    return message


N1 = 64 + 160  # offset of node 1 (the tiny model's argmax)


@pytest.mark.parametrize(
    "patches,error",
    [
        ([(0, "4s", b"OPMX")], errors.BadMagicError),
        ([(4, "<I", 3)], errors.UnknownVersionError),
        ([(8, "<I", 0)], errors.InvalidFieldError),  # node count 0
        ([(8, "<I", 4097)], errors.InvalidFieldError),
        ([(12, "<I", 3)], errors.UnknownDTypeError),  # input dtype
        ([(16, "<I", 5)], errors.InvalidFieldError),  # input rank
        ([(16, "<I", 0)], errors.InvalidFieldError),
        ([(16, "<I", 2)], errors.InvalidFieldError),  # rank 2 over dims (4, 0): a zero dim
        ([(20, "<I", 0)], errors.InvalidFieldError),
        ([(24, "<I", 1)], errors.NonCanonicalError),  # a dim past the rank
        ([(50, "B", 1)], errors.NonCanonicalError),  # reserved
        ([(63, "B", 1)], errors.NonCanonicalError),
        ([(64, "<I", 12)], errors.UnknownOpError),
        ([(64, "<I", 0)], errors.UnknownOpError),
        ([(64 + 4, "<I", 2)], errors.InputCountError),
        ([(64 + 4, "<I", 0)], errors.InputCountError),
        ([(64 + 12, "<I", 1)], errors.NonCanonicalError),  # input[1] of a one-input op
        ([(64 + 8, "<I", 1)], errors.ForwardReferenceError),  # node 0 reads its own output
        ([(N1 + 8, "<I", 2)], errors.ForwardReferenceError),  # node 1 reads its own output
        ([(N1 + 8, "<I", 99)], errors.ForwardReferenceError),  # past the graph
        ([(64 + 16, "<I", 1)], errors.ShapeMismatchError),  # dense output int8
        ([(64 + 16, "<I", 7)], errors.UnknownDTypeError),
        ([(64 + 20, "<I", 2), (64 + 28, "<I", 1)], errors.ShapeMismatchError),  # dense output [2, 1]
        ([(64 + 24, "<I", 3)], errors.TensorSizeError),  # M = 3: W and bias no longer fit
        ([(64 + 40, "<i", 128)], errors.ParamRangeError),  # zx
        ([(64 + 40, "<i", -129)], errors.ParamRangeError),
        ([(64 + 44, "<i", 1)], errors.ParamRangeError),  # bound = 1 (per row) needs version 2
        ([(64 + 48, "<i", 1)], errors.NonCanonicalError),  # an unused param
        ([(64 + 92, "<i", -1)], errors.NonCanonicalError),  # the last param
        ([(N1 + 40, "<i", 1)], errors.NonCanonicalError),  # argmax has no params
        ([(N1 + 96, "B", 3)], errors.NonCanonicalError),  # argmax takes no tensor
        ([(N1 + 159, "B", 1)], errors.NonCanonicalError),
        ([(N1 + 16, "<I", 1)], errors.ShapeMismatchError),  # argmax gives int32
        ([(N1 + 24, "<I", 2)], errors.ShapeMismatchError),  # argmax gives [1]
    ],
)
def test_manifest_field_rejections(patches, error):
    model = tiny_model()
    m = bytearray(model.manifest)
    for offset, fmt, value in patches:
        struct.pack_into(fmt, m, offset, value)
    _rejects(_file(bytes(m), _tensor_list(model)), error)
    with pytest.raises(error):
        decode_manifest(bytes(m)) if error is not errors.TensorSizeError else decode_model_file(
            _file(bytes(m), _tensor_list(model))
        )


def test_bad_file_magic_and_version():
    data = encode_model_file(tiny_model())
    _rejects(b"OPMLMODX" + data[8:], errors.BadMagicError)
    _rejects(b"", errors.BadMagicError)
    _rejects(data[:8] + struct.pack("<I", 2) + data[12:], errors.UnknownVersionError)


def test_every_truncation_is_rejected():
    data = encode_model_file(tiny_model())
    for cut in range(len(data)):
        with pytest.raises(errors.ModelFormatError) as info:
            decode_model_file(data[:cut])
        assert type(info.value) in (errors.BadMagicError, errors.TruncatedError, errors.TensorSetError)
    for cut in range(20, len(data)):
        with pytest.raises((errors.TruncatedError, errors.TensorSetError)):
            decode_model_file(data[:cut])


def test_manifest_size_and_trailing_bytes():
    model = tiny_model()
    data = encode_model_file(model)
    _rejects(data + b"\0", errors.TrailingDataError)
    longer = model.manifest + bytes(160)
    _rejects(_file(longer, _tensor_list(model)), errors.TrailingDataError)
    _rejects(_file(model.manifest[:-1], _tensor_list(model)), errors.TruncatedError)
    with pytest.raises(errors.TrailingDataError):
        decode_manifest(model.manifest + b"\0")


def test_tensor_set_rules():
    model = tiny_model()
    m = model.manifest
    (w_key, w), (b_key, b) = _tensor_list(model)
    _rejects(_file(m, [(w_key, w)]), errors.TensorSetError)  # missing
    _rejects(_file(m, [(b_key, b), (w_key, w)]), errors.TensorSetError)  # order
    _rejects(_file(m, [(w_key, w), (w_key, w)]), errors.TensorSetError)  # twice
    other = bytes([5]) * 8
    _rejects(_file(m, [(w_key, w), (b_key, b), (tensor_key(other), other)]), errors.TensorSetError)  # extra
    _rejects(_file(m, [(w_key, w), (tensor_key(other), other)]), errors.TensorSetError)  # not named


def test_tensor_whose_bytes_do_not_match_its_key():
    model = tiny_model()
    (w_key, w), (b_key, b) = _tensor_list(model)
    bad = bytes([w[0] ^ 1]) + w[1:]
    message = _rejects(_file(model.manifest, [(w_key, bad), (b_key, b)]), errors.TensorKeyMismatchError)
    assert w_key.hex() in message


def _with_tensor(model: Model, node: int, slot: int, data: bytes) -> bytes:
    """The model file with node ``node``'s tensor ``slot`` replaced by ``data`` (manifest re-keyed)."""
    m = bytearray(model.manifest)
    old = model.nodes[node].tensor_keys[slot]
    new = tensor_key(data)
    off = 64 + 160 * node + 96 + 32 * slot
    m[off : off + 32] = new
    tensors = [(new, data) if k == old else (k, d) for k, d in _tensor_list(model)]
    return _file(bytes(m), tensors)


def test_tensor_size_must_match_the_shape():
    model = tiny_model()
    _rejects(_with_tensor(model, 0, 0, bytes(7)), errors.TensorSizeError)  # W [2, 4] is 8 bytes
    _rejects(_with_tensor(model, 0, 1, bytes(12)), errors.TensorSizeError)  # bias int32 [2] is 8


def test_missing_required_tensor_and_forbidden_second_tensor():
    model = tiny_model()
    m = bytearray(model.manifest)
    m[64 + 96 : 64 + 128] = bytes(32)
    _rejects(_file(bytes(m), _tensor_list(model)[1:]), errors.NonCanonicalError)
    g = GraphBuilder(int8(3))
    g.lut(0, np.arange(-128, 128).astype(np.int8))
    lut = g.build()
    m = bytearray(lut.manifest)
    m[64 + 128 : 64 + 160] = lut.nodes[0].tensor_keys[0]
    _rejects(_file(bytes(m), _tensor_list(lut)), errors.NonCanonicalError)


def test_overflow_bound():
    k = 65_793
    g = GraphBuilder(int8(k))
    g.dense(0, np.ones((1, k), np.int8))  # K·255·128 = 2^31 − 127: accepted
    g2 = GraphBuilder(int8(k))
    with pytest.raises(errors.OverflowBoundError):
        g2.dense(0, np.ones((1, k), np.int8), np.array([128], np.int32))
        g2.build()
    g3 = GraphBuilder(int8(k + 1))
    g3.dense(0, np.ones((1, k + 1), np.int8))
    with pytest.raises(errors.OverflowBoundError):
        g3.build()
    g4 = GraphBuilder(int8(4))
    g4.dense(0, np.ones((1, 4), np.int8), np.array([-(2**31)], np.int32))
    with pytest.raises(errors.OverflowBoundError):
        g4.build()


def _graph_error(build) -> type:
    with pytest.raises(errors.ModelFormatError) as info:
        build()
    assert "\n" not in str(info.value)
    return type(info.value)


def test_op_rule_rejections():
    w33 = np.ones((2, 3, 3, 1), np.int8)

    def conv(pads=(1, 1, 1, 1), strides=(1, 1), shape=(5, 5, 1), w=w33):
        g = GraphBuilder(int8(*shape))
        g.conv2d(0, w, zx=0, strides=strides, pads=pads)
        return g.build()

    conv()
    assert _graph_error(lambda: conv(pads=(3, 0, 0, 0))) is errors.ParamRangeError  # pad ≥ KH
    conv(strides=(2, 1))  # (5 + 2 − 3) / 2 is exact
    assert _graph_error(lambda: conv(strides=(2, 1), shape=(6, 6, 1))) is errors.ShapeMismatchError
    assert _graph_error(lambda: conv(strides=(3, 1))) is errors.ShapeMismatchError  # 4/3 not exact
    assert _graph_error(lambda: conv(strides=(0, 1))) is errors.ParamRangeError
    assert _graph_error(lambda: conv(shape=(1, 1, 1), pads=(0, 0, 0, 0))) is errors.ShapeMismatchError
    big = np.ones((1, 3, 3, 456), np.int8)  # 9·456 = 4104 > 4096
    assert _graph_error(lambda: conv(shape=(3, 3, 456), pads=(0, 0, 0, 0), w=big)) is errors.ParamRangeError

    def one(op_builder, shape=(4, 4, 2), dtype=int8):
        g = GraphBuilder(dtype(*shape))
        op_builder(g)
        return g.build()

    assert _graph_error(lambda: one(lambda g: g.maxpool(0, (5, 1), (1, 1)))) is errors.ParamRangeError
    assert _graph_error(lambda: one(lambda g: g.avgpool(0, (1, 1), (1, 0)))) is errors.ParamRangeError
    assert (
        _graph_error(lambda: one(lambda g: g.maxpool(0, (2, 2), (1, 1)), (4, 4))) is errors.ShapeMismatchError
    )
    assert _graph_error(lambda: one(lambda g: g.relu(0, 128))) is errors.ParamRangeError
    one(lambda g: g.relu(0, -(2**31)), dtype=int32)
    assert (
        _graph_error(lambda: one(lambda g: g.requantize(0, 1, 1, 0))) is errors.ShapeMismatchError
    )  # int8 in
    for m0, t, zy, lo, hi in ((0, 1, 0, -128, 127), (1, 0, 0, -128, 127), (1, 63, 0, -128, 127),
                              (1, 1, 128, -128, 127), (1, 1, 0, 5, 4), (2**31, 1, 0, -128, 127)):  # fmt: skip
        assert _graph_error(lambda m0=m0, t=t, zy=zy, lo=lo, hi=hi: one(
            lambda g: g.requantize(0, m0, t, zy, lo, hi), dtype=int32)) is errors.ParamRangeError  # fmt: skip
    pooled_add = lambda g: g.add_(0, g.maxpool(0, (1, 1), (2, 2)), 0, 1, 0, 1, 1, 0, -128, 127)  # noqa: E731
    assert _graph_error(lambda: one(pooled_add)) is errors.ShapeMismatchError
    assert (
        _graph_error(lambda: one(lambda g: g.add_(0, 0, 0, -1, 0, 1, 1, 0, -128, 127)))
        is errors.ParamRangeError
    )
    assert _graph_error(lambda: one(lambda g: g.reshape(0, [31]))) is errors.ShapeMismatchError
    assert (
        _graph_error(lambda: one(lambda g: g.softmax(0, np.zeros(256, np.int32))))
        is errors.ShapeMismatchError
    )
    table = np.zeros(256, np.int32)
    table[3] = (1 << 16) + 1
    assert _graph_error(lambda: one(lambda g: g.softmax(0, table), (5,))) is errors.ParamRangeError
    table[3] = -1
    assert _graph_error(lambda: one(lambda g: g.softmax(0, table), (5,))) is errors.ParamRangeError
    assert _graph_error(lambda: one(lambda g: g.softmax(0, np.zeros(256, np.int32)), (32_768,))) \
        is errors.ShapeMismatchError  # fmt: skip
    assert _graph_error(lambda: one(lambda g: g.lut(0, np.zeros(256, np.int8)), dtype=int32)) \
        is errors.ShapeMismatchError  # fmt: skip
    assert (
        _graph_error(lambda: one(lambda g: None, (1 << 12, 1 << 12, 2))) is errors.InvalidFieldError
    )  # > 2^24


def test_node_count_limit():
    g = GraphBuilder(int8(2))
    for _ in range(4097):
        g.relu(len(g.nodes), 0)
    with pytest.raises(errors.InvalidFieldError):
        g.build()


def test_every_byte_flip_is_rejected_or_changes_the_commitment():
    """Flipping any byte of a model file either fails with a ModelFormatError (never another
    exception) or, inside the manifest, gives a different but valid model."""
    model = tiny_model()
    data = encode_model_file(model)
    accepted = 0
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            try:
                other = decode_model_file(bytes(bad))
            except errors.ModelFormatError:
                continue
            accepted += 1
            assert 20 <= i < 20 + len(model.manifest), i  # only manifest params may change validly
            assert other.commitment != model.commitment
    assert 0 < accepted < 40


def test_invalid_input():
    model = tiny_model()
    for bad in (
        np.zeros(5, np.int8),
        np.zeros((4, 1), np.int8),
        np.zeros(4, np.float32),
        np.array([0, 0, 0, 128]),
    ):
        with pytest.raises(errors.InvalidInputError):
            model.check_input(bad)
    assert model.check_input(np.array([1, 2, 3, -128], np.int64)).dtype == np.int8
