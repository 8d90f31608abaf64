"""Importing a GGUF LLaMA (opml.ml.gguf_import): SmolLM2-135M-Instruct's file as it is, and small GGUFs
written with gguf's own writer to break one rule each.

- The config comes from the ``llama.*`` keys; the block matrices are the file's bytes at the smallest
  exact ``F``; our integer decoding ``(q·D + M)·2^−F`` is ``gguf.quants.dequantize`` exactly on every
  tensor; the int16 norms are within half a step (``2^−(gf+1)``, gf 13 … 16) of the F32 vectors.
- A tiny LLaMA written as a GGUF reads back as the same weights and generates the same tokens.
- Every malformed file raises its typed error (a :class:`GgufError`, one line naming the file): not a
  GGUF, truncated anywhere (header, metadata, tensor infos, data), another architecture, a missing key
  or tensor, an inconsistent key, an unsupported type, a wrong shape, an untied or unknown tensor, a
  scale no ``F`` makes exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import pytest
from _ci import slow_except

from opml.ml import blocks
from opml.ml.errors import (
    GgufArchitectureError,
    GgufConfigError,
    GgufError,
    GgufMissingError,
    GgufQuantTypeError,
    GgufReadError,
    GgufScaleError,
    GgufShapeError,
)
from opml.ml.float_llama import dequantize
from opml.ml.format import DType
from opml.ml.gguf_import import read_gguf
from opml.ml.llama import BlockMatrix, LlamaWeights, NormWeight, generation_graph, tokens_of
from opml.ml.runner import run_model
from opml.ml.tiny_llama import tiny_llama
from opml.ml.tokenizer import smollm2_gguf

Q = gguf.GGMLQuantizationType
V = gguf.GGUFValueType


@pytest.fixture(scope="module")
def path() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="module")
def reader(path):
    return gguf.GGUFReader(path)


@pytest.fixture(scope="module")
def weights(path) -> LlamaWeights:
    return read_gguf(path)


# --- SmolLM2 -------------------------------------------------------------------------------------


def test_config_of_smollm2(weights):
    c = weights.config
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn) == (30, 576, 9, 3, 64, 1536)
    assert (c.vocab, c.context, c.rope_base, c.eps) == (49152, 8192, 100_000.0, 1e-5)
    assert len(weights.layers) == 30
    emb = weights.embedding
    assert (emb.wtype, emb.rows, emb.cols, emb.f) == (DType.Q8_0, 49152, 576, 21)
    layer = weights.layers[0]
    shapes = [
        (m.rows, m.cols) for m in (layer.wq, layer.wk, layer.wv, layer.wo, layer.gate, layer.up, layer.down)
    ]
    assert shapes == [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]


def _matrices(weights: LlamaWeights) -> dict[str, BlockMatrix]:
    out = {"token_embd.weight": weights.embedding}
    for i, layer in enumerate(weights.layers):
        for part, m in zip(
            ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"),
            (layer.wq, layer.wk, layer.wv, layer.wo, layer.gate, layer.up, layer.down),
            strict=True,
        ):
            out[f"blk.{i}.{part}.weight"] = m
    return out


def _norms(weights: LlamaWeights) -> dict[str, NormWeight]:
    out = {"output_norm.weight": weights.output_norm}
    for i, layer in enumerate(weights.layers):
        out[f"blk.{i}.attn_norm.weight"] = layer.attn_norm
        out[f"blk.{i}.ffn_norm.weight"] = layer.ffn_norm
    return out


def test_matrices_are_the_files_bytes_at_the_smallest_exact_f(weights, reader):
    tensors = {t.name: t for t in reader.tensors}
    matrices = _matrices(weights)
    assert len(matrices) == 211 and len(_norms(weights)) == 61 and len(tensors) == 272
    for name, m in matrices.items():
        t = tensors[name]
        assert (m.wtype, t.tensor_type) in ((DType.Q4_1, Q.Q4_1), (DType.Q8_0, Q.Q8_0)), name
        assert m.data == np.ascontiguousarray(t.data).tobytes(), name
        assert m.f == blocks.smallest_f(m.data, m.wtype is DType.Q4_1), name
        if m.wtype is DType.Q4_1:
            assert 15 <= m.f <= 18, name


def test_integer_decoding_is_gguf_dequantize(weights, reader):
    """On rows spread over every matrix (Q4_1 and the Q8_0 embedding): ``(q·D + M)·2^−F`` from our
    integers equals gguf's float32 decoding exactly."""
    tensors = {t.name: t for t in reader.tensors}
    for name, m in _matrices(weights).items():
        rows = np.unique([0, 1, m.rows // 3, (7 * m.rows) // 11, m.rows - 1])
        dec = blocks.decode_rows(m.data, m.wtype is DType.Q4_1, m.cols, rows, m.f, name)
        ours = dec.q.astype(np.float64) * dec.d[..., None]
        if dec.m is not None:
            ours += dec.m[..., None]
        ours = ours.reshape(len(rows), m.cols) / 2.0**m.f
        theirs = gguf.quants.dequantize(np.asarray(tensors[name].data)[rows], tensors[name].tensor_type)
        assert np.array_equal(ours, theirs.astype(np.float64)), name
    emb = weights.embedding  # and the whole embedding, as the float reference decodes it
    whole = gguf.quants.dequantize(np.asarray(tensors["token_embd.weight"].data), Q.Q8_0)
    assert np.array_equal(dequantize(emb, np.float32), whole)


def test_norms_are_int16_within_half_a_step(weights, reader):
    tensors = {t.name: t for t in reader.tensors}
    gfs = set()
    for name, n in _norms(weights).items():
        f32 = np.asarray(tensors[name].data, dtype=np.float64)
        assert tensors[name].tensor_type == Q.F32
        assert int(np.abs(n.g.astype(np.int64)).max()) <= 32767 < np.abs(f32).max() * 2.0 ** (n.gf + 1), name
        err = np.abs(n.g / 2.0**n.gf - f32).max()
        assert err <= 2.0 ** -(n.gf + 1), name  # half a step: ≤ 2^-14 at gf 13
        gfs.add(n.gf)
    assert gfs == {13, 14, 15, 16}


# --- a tiny LLaMA written as a GGUF ---------------------------------------------------------------

TINY = tiny_llama(0)


def _keys(weights: LlamaWeights) -> dict[str, tuple[object, gguf.GGUFValueType]]:
    c = weights.config
    return {
        "llama.block_count": (c.layers, V.UINT32),
        "llama.context_length": (c.context, V.UINT32),
        "llama.embedding_length": (c.hidden, V.UINT32),
        "llama.feed_forward_length": (c.ffn, V.UINT32),
        "llama.attention.head_count": (c.heads, V.UINT32),
        "llama.attention.head_count_kv": (c.kv_heads, V.UINT32),
        "llama.rope.dimension_count": (c.head_dim, V.UINT32),
        "llama.rope.freq_base": (c.rope_base, V.FLOAT32),
        "llama.attention.layer_norm_rms_epsilon": (c.eps, V.FLOAT32),
        "llama.vocab_size": (c.vocab, V.UINT32),
    }


def _block(m: BlockMatrix) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    return np.frombuffer(m.data, np.uint8).reshape(m.rows, -1), Q.Q4_1 if m.wtype is DType.Q4_1 else Q.Q8_0


def _tensors(weights: LlamaWeights) -> dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType | None]]:
    out: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType | None]] = {}
    out["token_embd.weight"] = _block(weights.embedding)
    for name, m in _matrices(weights).items():
        out[name] = _block(m)
    for name, n in _norms(weights).items():
        out[name] = ((n.g / 2.0**n.gf).astype(np.float32), None)
    return out


def write_gguf(
    path: Path,
    weights: LlamaWeights = TINY,
    *,
    arch: str = "llama",
    keys: dict | None = None,
    tensors: dict | None = None,
) -> Path:
    """``weights`` as a GGUF file, with ``keys``/``tensors`` entries replaced (``None`` drops one)."""
    all_keys = {**_keys(weights), **(keys or {})}
    all_tensors = {**_tensors(weights), **(tensors or {})}
    w = gguf.GGUFWriter(path, arch)
    for key, kv in all_keys.items():
        if kv is not None:
            w.add_key_value(key, kv[0], kv[1])
    for name, t in all_tensors.items():
        if t is not None:
            w.add_tensor(name, t[0], raw_dtype=t[1])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_written_tiny_llama_reads_back_as_itself(tmp_path):
    got = read_gguf(write_gguf(tmp_path / "tiny.gguf"))
    assert got.config == TINY.config
    assert _matrices(got) == _matrices(TINY)  # the same bytes, wtypes, F and shapes
    for name, n in _norms(got).items():
        want = _norms(TINY)[name]
        assert np.array_equal(n.g / 2.0**n.gf, want.g / 2.0**want.gf), name
        assert n.gf == 14  # 1 ± 0.3 at 2^-12 has two spare bits: the largest gf that fits
    prompt = np.array([1, 2, 3, 4], dtype=np.int32)  # rmsnorm's output does not depend on gf
    assert tokens_of(run_model(generation_graph(got, 4, 8).model, prompt).output) == tokens_of(
        run_model(generation_graph(TINY, 4, 8).model, prompt).output
    )


def test_an_identical_output_weight_is_still_tied(tmp_path):
    same = write_gguf(tmp_path / "t.gguf", tensors={"output.weight": _block(TINY.embedding)})
    assert read_gguf(same).embedding == TINY.embedding


# --- malformed files -----------------------------------------------------------------------------


def _raises(error: type[GgufError], path: Path, *words: str) -> None:
    with pytest.raises(error) as info:
        read_gguf(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path.name), message
    assert isinstance(info.value, GgufError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in message, message


def _scales(bits: list[int]) -> BlockMatrix:
    """The tiny embedding with the fp16 ``d`` of its first blocks set to ``bits``."""
    raw = np.frombuffer(TINY.embedding.data, np.uint8).reshape(-1, blocks.Q8_0_BYTES).copy()
    for i, b in enumerate(bits):
        raw[i, 0:2] = np.array([b], "<u2").view(np.uint8)
    return BlockMatrix(raw.tobytes(), DType.Q8_0, 0, TINY.embedding.rows, TINY.embedding.cols)


@pytest.mark.parametrize(
    ("case", "error", "word"),
    [
        ("not a gguf", GgufReadError, "not a GGUF"),
        ("empty", GgufReadError, "empty"),
        ("architecture", GgufArchitectureError, "gpt2"),
        ("missing key", GgufMissingError, "llama.block_count"),
        ("key of the wrong type", GgufMissingError, "llama.embedding_length"),
        ("missing tensor", GgufMissingError, "blk.1.ffn_up.weight"),
        ("vocab size", GgufConfigError, "llama.vocab_size"),
        ("rope dims", GgufConfigError, "llama.rope.dimension_count"),
        ("heads", GgufConfigError, "heads"),
        ("f16 matrix", GgufQuantTypeError, "F16"),
        ("q4_0 matrix", GgufQuantTypeError, "Q4_0"),
        ("f16 norm", GgufQuantTypeError, "F16"),
        ("shape", GgufShapeError, "blk.0.ffn_gate.weight"),
        ("untied output", GgufArchitectureError, "output.weight"),
        ("bias", GgufArchitectureError, "blk.0.attn_q.bias"),
        ("rope scaling", GgufArchitectureError, "llama.rope.scaling.type"),
        ("scale range", GgufScaleError, "token_embd.weight"),
        ("nan scale", GgufScaleError, "token_embd.weight"),
        ("subnormal scale", GgufScaleError, "subnormal"),
        ("norm too large", GgufScaleError, "output_norm.weight"),
    ],
)
def test_a_malformed_gguf_raises_its_error(tmp_path, case, error, word):
    p = tmp_path / "bad.gguf"
    c = TINY.config
    layer = TINY.layers[0]
    if case == "not a gguf":
        p.write_bytes(b"OPMLMODL" + bytes(100))
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "architecture":
        write_gguf(p, arch="gpt2")
    elif case == "missing key":
        write_gguf(p, keys={"llama.block_count": None})
    elif case == "key of the wrong type":
        write_gguf(p, keys={"llama.embedding_length": ("64", V.STRING)})
    elif case == "missing tensor":
        write_gguf(p, tensors={"blk.1.ffn_up.weight": None})
    elif case == "vocab size":
        write_gguf(p, keys={"llama.vocab_size": (c.vocab + 1, V.UINT32)})
    elif case == "rope dims":
        write_gguf(p, keys={"llama.rope.dimension_count": (c.head_dim // 2, V.UINT32)})
    elif case == "heads":
        write_gguf(p, keys={"llama.attention.head_count_kv": (3, V.UINT32)})
    elif case == "f16 matrix":
        w = dequantize(layer.wq, np.float16)
        write_gguf(p, tensors={"blk.0.attn_q.weight": (w, None)})
    elif case == "q4_0 matrix":
        w = gguf.quants.quantize(dequantize(layer.wq, np.float32), Q.Q4_0)
        write_gguf(p, tensors={"blk.0.attn_q.weight": (w, Q.Q4_0)})
    elif case == "f16 norm":
        write_gguf(p, tensors={"output_norm.weight": (np.ones(c.hidden, np.float16), None)})
    elif case == "shape":
        write_gguf(p, keys={"llama.feed_forward_length": (2 * c.ffn, V.UINT32)})
    elif case == "untied output":
        write_gguf(p, tensors={"output.weight": _block(_scales([0x3C00]))})
    elif case == "bias":
        write_gguf(p, tensors={"blk.0.attn_q.bias": (np.zeros(c.q_width, np.float32), None)})
    elif case == "rope scaling":
        write_gguf(p, keys={"llama.rope.scaling.type": ("linear", V.STRING)})
    elif case == "scale range":  # 1024 needs F ≤ 9, 2^-14·(1 + 2^-10) needs F = 24
        write_gguf(p, tensors={"token_embd.weight": _block(_scales([0x6400, 0x0401]))})
    elif case == "nan scale":
        write_gguf(p, tensors={"token_embd.weight": _block(_scales([0x7E00]))})
    elif case == "subnormal scale":
        write_gguf(p, tensors={"token_embd.weight": _block(_scales([0x0001]))})
    elif case == "norm too large":
        write_gguf(p, tensors={"output_norm.weight": (np.full(c.hidden, 40000.0, np.float32), None)})
    _raises(error, p, word)


def _truncations(reader) -> dict[str, int]:
    tokens = reader.fields["tokenizer.ggml.tokens"]
    return {
        "header": 20,  # inside the key-value count
        "metadata": tokens.offset + 100_000,  # inside the tokenizer's token list
        "tensor infos": reader.tensors[100].field.offset + 7,
        "data start": reader.data_offset,
        "mid data": reader.data_offset + 50_000_000,
        "last bytes": reader.tensors[-1].data_offset + reader.tensors[-1].n_bytes - 1,
    }


@pytest.mark.parametrize(
    "where",
    slow_except({0, 1}, ["header", "metadata", "tensor infos", "data start", "mid data", "last bytes"]),
)
def test_a_truncated_smollm2_raises_one_error(path, reader, tmp_path, where):
    cut = _truncations(reader)[where]
    p = tmp_path / f"cut-{cut}.gguf"
    with path.open("rb") as src, p.open("wb") as dst:
        dst.write(src.read(cut))
    _raises(GgufReadError, p, "truncated")


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "nothing.gguf")


def test_the_norm_exponent_is_the_largest_that_fits(tmp_path):
    c = TINY.config
    norms = {
        "output_norm.weight": (np.full(c.hidden, 0.5, np.float32), None),  # 0.5·2^16 = 32768 > 32767
        "blk.0.attn_norm.weight": (np.zeros(c.hidden, np.float32), None),
        "blk.0.ffn_norm.weight": (np.linspace(-3, 3, c.hidden).astype(np.float32), None),
    }
    got = read_gguf(write_gguf(tmp_path / "n.gguf", tensors=norms))
    assert got.output_norm.gf == 15 and int(got.output_norm.g[0]) == 16384
    assert got.layers[0].attn_norm.gf == 30 and not got.layers[0].attn_norm.g.any()
    assert got.layers[0].ffn_norm.gf == math.floor(math.log2(32767 / 3)) == 13
