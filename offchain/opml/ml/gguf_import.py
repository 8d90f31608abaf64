"""A GGUF LLaMA (llama.cpp's file format) as the weights of a generation graph (docs/ml-spec.md §10).

    weights = read_gguf(path)      # LlamaWeights: config, block matrices, int16 norms

The matrices stay the file's own ``Q4_1``/``Q8_0`` bytes: a :class:`~opml.ml.llama.BlockMatrix` at the
smallest scale exponent ``F`` at which every block scale is an exact integer below ``2^24``
(:func:`opml.ml.blocks.smallest_f`, :func:`~opml.ml.blocks.check_scales`); nothing is re-quantized.
Only the F32 RMSNorm vectors are rounded, to int16 at the largest ``2^−gf`` that holds their largest
value (SmolLM2: ``gf`` 13 … 16, error ≤ half a step, ``2^−(gf+1)``).

| GGUF | here |
|---|---|
| ``llama.block_count``, ``embedding_length``, ``feed_forward_length`` | ``layers``, ``hidden``, ``ffn`` |
| ``llama.attention.head_count``, ``head_count_kv`` | ``heads``, ``kv_heads``; ``head_dim = hidden/heads`` |
| ``llama.rope.dimension_count`` (``= head_dim``), ``rope.freq_base`` | RoPE on every dim, ``rope_base`` |
| ``llama.attention.layer_norm_rms_epsilon``, ``context_length`` | ``eps``, ``context`` |
| ``token_embd.weight`` ``[ne0 = hidden, ne1 = vocab]`` | ``embedding`` (also the lm_head: tied) |
| ``blk.{i}.attn_q``/``attn_k``/``attn_v``/``attn_output``/``ffn_gate``/``ffn_up``/``ffn_down`` | matrices |
| ``blk.{i}.attn_norm``, ``ffn_norm``, ``output_norm`` (F32) | int16 norm vectors |

A GGUF tensor ``[ne0 = K, ne1 = M]`` is ``M`` rows of ``K/32`` blocks, the layout of a block matrix.
Every rejection is a :class:`~opml.ml.errors.GgufError` subclass with a one-line message naming the file.
The importer holds one copy of the weights: each tensor is read once from the file into ``bytes`` (the
metadata through gguf's memory-mapped reader, whose tokenizer arrays cost ~150 MB while it lives).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, ReaderField, ReaderTensor

from opml.ml import blocks
from opml.ml.errors import (
    BadScaleError,
    GgufArchitectureError,
    GgufConfigError,
    GgufMissingError,
    GgufQuantTypeError,
    GgufReadError,
    GgufScaleError,
    GgufShapeError,
    ScaleRangeError,
)
from opml.ml.format import DType
from opml.ml.llama import BlockMatrix, LlamaConfig, LlamaLayer, LlamaWeights, NormWeight

MATRIX_TYPES = {GGMLQuantizationType.Q4_1: DType.Q4_1, GGMLQuantizationType.Q8_0: DType.Q8_0}
NORM_MAX = 32767
MAX_GF = 30
"""``rmsnorm``'s ``Gf`` range is ``[0, 30]`` (ml-spec §10.2)."""

_INTS = frozenset(
    {
        GGUFValueType.UINT8,
        GGUFValueType.INT8,
        GGUFValueType.UINT16,
        GGUFValueType.INT16,
        GGUFValueType.UINT32,
        GGUFValueType.INT32,
        GGUFValueType.UINT64,
        GGUFValueType.INT64,
    }
)
_FLOATS = frozenset({GGUFValueType.FLOAT32, GGUFValueType.FLOAT64})


def _open(path: Path) -> GGUFReader:
    """The reader of ``path``; whatever it raises on a file that is not a GGUF or ends early (an index
    past the end, a reshape of a short tensor, an unknown type code, a cut string) is one error."""
    if path.stat().st_size == 0:  # a missing file stays an OSError
        raise GgufReadError(f"{path.name}: an empty file, not a GGUF file: download or export it again")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, TypeError) as exc:
        raise GgufReadError(
            f"{path.name}: not a GGUF file or truncated ({type(exc).__name__}: {exc}): download or export "
            "it again"
        ) from None


class _Keys:
    """Typed metadata reads of one file."""

    def __init__(self, fields: Mapping[str, ReaderField], name: str) -> None:
        self.fields = fields
        self.name = name

    def _field(self, key: str, kinds: frozenset[GGUFValueType], what: str) -> Any:
        field = self.fields.get(key)
        if field is None:
            raise GgufMissingError(
                f"{self.name}: no metadata key {key}: export the model with llama.cpp's converter"
            )
        if len(field.types) != 1 or field.types[0] not in kinds:
            got = "/".join(t.name for t in field.types)
            raise GgufMissingError(
                f"{self.name}: metadata key {key} is {got}, not {what}: re-export the model"
            )
        return field.contents()

    def text(self, key: str) -> str:
        return str(self._field(key, frozenset({GGUFValueType.STRING}), "a string"))

    def integer(self, key: str) -> int:
        value = int(self._field(key, _INTS, "an integer"))
        if value < 1:
            raise GgufConfigError(f"{self.name}: {key} is {value}, it must be ≥ 1: re-export the model")
        return value

    def real(self, key: str) -> float:
        """A positive float; a FLOAT32 one as the shortest decimal that rounds to it (1e-05, not the
        9.99…e-06 its bits hold exactly)."""
        value = float(self._field(key, _FLOATS, "a float"))
        if not math.isfinite(value) or value <= 0:
            raise GgufConfigError(f"{self.name}: {key} is {value}, it must be positive: re-export the model")
        if self.fields[key].types[0] is GGUFValueType.FLOAT32:
            return float(str(np.float32(value)))
        return value

    def has(self, key: str) -> bool:
        return key in self.fields


def _config(keys: _Keys, tensors: Mapping[str, ReaderTensor]) -> LlamaConfig:
    name = keys.name
    arch = keys.text("general.architecture")
    if arch != "llama":
        raise GgufArchitectureError(
            f"{name}: general.architecture is {arch!r}, not 'llama': only LLaMA decoders can be imported"
        )
    for key in ("llama.rope.scaling.type", "llama.rope.scaling.factor"):
        if keys.has(key) and keys.fields[key].contents() not in ("none", 1.0):
            raise GgufArchitectureError(
                f"{name}: {key} is set: RoPE scaling is not implemented, use a model without it"
            )
    hidden = keys.integer("llama.embedding_length")
    heads = keys.integer("llama.attention.head_count")
    kv_heads = keys.integer("llama.attention.head_count_kv")
    if hidden % heads or heads % kv_heads:
        raise GgufConfigError(
            f"{name}: {heads} heads, {kv_heads} KV heads and a width of {hidden} do not divide: re-export it"
        )
    head_dim = hidden // heads
    rope_dims = keys.integer("llama.rope.dimension_count")
    if rope_dims != head_dim:
        raise GgufConfigError(
            f"{name}: llama.rope.dimension_count is {rope_dims}, not the head dimension {head_dim}: partial "
            "RoPE is not implemented"
        )
    emb = tensors.get("token_embd.weight")
    if emb is None:
        raise GgufMissingError(
            f"{name}: no tensor token_embd.weight: export the model with llama.cpp's converter"
        )
    dims = [int(d) for d in emb.shape]
    if len(dims) != 2 or dims[0] != hidden:
        raise GgufShapeError(
            f"{name}: token_embd.weight is {dims}, not [{hidden}, vocab]: re-export the model"
        )
    vocab = dims[1]
    declared = keys.integer("llama.vocab_size") if keys.has("llama.vocab_size") else vocab
    if declared != vocab:
        raise GgufConfigError(
            f"{name}: llama.vocab_size is {declared} but token_embd.weight has {vocab} rows: re-export it"
        )
    return LlamaConfig(
        layers=keys.integer("llama.block_count"),
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=keys.integer("llama.feed_forward_length"),
        vocab=vocab,
        context=keys.integer("llama.context_length"),
        rope_base=keys.real("llama.rope.freq_base"),
        eps=keys.real("llama.attention.layer_norm_rms_epsilon"),
    )


def _shapes(c: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the graph reads, with its GGUF shape ``[ne0, ne1]`` (``ne0`` the row length)."""
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (c.hidden, c.vocab),
        "output_norm.weight": (c.hidden,),
    }
    per_layer = {
        "attn_norm": (c.hidden,),
        "attn_q": (c.hidden, c.q_width),
        "attn_k": (c.hidden, c.kv_width),
        "attn_v": (c.hidden, c.kv_width),
        "attn_output": (c.q_width, c.hidden),
        "ffn_norm": (c.hidden,),
        "ffn_gate": (c.hidden, c.ffn),
        "ffn_up": (c.hidden, c.ffn),
        "ffn_down": (c.ffn, c.hidden),
    }
    for i in range(c.layers):
        for part, shape in per_layer.items():
            shapes[f"blk.{i}.{part}.weight"] = shape
    return shapes


def _tensor_bytes(t: ReaderTensor, name: str, fd: int) -> bytes:
    """The tensor's bytes, read once from the file (not through the reader's mapping, whose touched
    pages would count twice); a short read is a truncated file."""
    data = os.pread(fd, t.n_bytes, t.data_offset)
    if len(data) != t.n_bytes:
        raise GgufReadError(
            f"{name}: tensor {t.name} ends early (truncated file): download or export it again"
        )
    return data


def _matrix(t: ReaderTensor, name: str, fd: int) -> BlockMatrix:
    wtype = MATRIX_TYPES.get(t.tensor_type)
    if wtype is None:
        raise GgufQuantTypeError(
            f"{name}: tensor {t.name} is {t.tensor_type.name}: only Q4_1 and Q8_0 matrices can be imported, "
            "re-quantize the model to Q4_1 or Q8_0"
        )
    cols, rows = (int(d) for d in t.shape)
    data = _tensor_bytes(t, name, fd)
    is_q4_1 = wtype is DType.Q4_1
    f = blocks.smallest_f(data, is_q4_1)
    try:
        blocks.check_scales(data, is_q4_1, f, f"{name}: tensor {t.name}")
    except BadScaleError as exc:
        raise GgufScaleError(f"{exc}: re-quantize the tensor") from None
    except ScaleRangeError:
        raise GgufScaleError(
            f"{name}: tensor {t.name} has block scales that no one F makes integers below 2^24 (every scale "
            f"is exact from F = {f}, where the largest is too big): re-quantize the tensor"
        ) from None
    return BlockMatrix(data, wtype, f, rows, cols)


def _norm(t: ReaderTensor, name: str, fd: int) -> NormWeight:
    """An F32 vector as int16 at ``2^−gf``, the largest ``gf ≤ 30`` at which its largest value fits."""
    if t.tensor_type is not GGMLQuantizationType.F32:
        raise GgufQuantTypeError(
            f"{name}: norm {t.name} is {t.tensor_type.name}, not F32: re-export the model"
        )
    g = np.frombuffer(_tensor_bytes(t, name, fd), dtype="<f4").astype(np.float64)
    top = float(np.abs(g).max(initial=0.0))
    if not math.isfinite(top) or top > NORM_MAX:
        raise GgufScaleError(f"{name}: norm {t.name} has a value {top} that does not fit int16: re-export it")
    gf = MAX_GF if top == 0 else min(MAX_GF, math.floor(math.log2(NORM_MAX / top)))
    while gf > 0 and top * 2.0**gf > NORM_MAX:  # log2's rounding at an exact power of two
        gf -= 1
    return NormWeight(np.rint(g * 2.0**gf).astype(np.int16), gf)


def _check_tensors(
    tensors: Mapping[str, ReaderTensor], shapes: Mapping[str, tuple[int, ...]], name: str
) -> None:
    for key, shape in shapes.items():
        t = tensors.get(key)
        if t is None:
            raise GgufMissingError(f"{name}: no tensor {key}: export the model with llama.cpp's converter")
        dims = tuple(int(d) for d in t.shape)
        if dims != shape:
            raise GgufShapeError(
                f"{name}: tensor {key} is {list(dims)}, the llama.* keys give {list(shape)}: re-export it"
            )
    emb = tensors["token_embd.weight"]
    for key, t in tensors.items():
        if key in shapes:
            continue
        if key == "output.weight":
            same = t.tensor_type == emb.tensor_type and np.array_equal(t.shape, emb.shape)
            if same and np.array_equal(np.asarray(t.data), np.asarray(emb.data)):
                continue  # a copy of the embedding: still tied
            raise GgufArchitectureError(
                f"{name}: output.weight differs from token_embd.weight: the graph ties the lm_head to the "
                "embedding, so untied models cannot be imported"
            )
        raise GgufArchitectureError(
            f"{name}: tensor {key} has no place in the LLaMA graph (biases, rope_freqs …): use a plain LLaMA"
        )


def read_gguf(path: str | Path) -> LlamaWeights:
    """The weights of a GGUF LLaMA with a tied embedding; see the module's table."""
    path = Path(path)
    name = path.name
    reader = _open(path)
    tensors = {t.name: t for t in reader.tensors}
    config = _config(_Keys(reader.fields, name), tensors)
    _check_tensors(tensors, _shapes(config), name)

    with path.open("rb") as file:
        fd = file.fileno()

        def norm(key: str) -> NormWeight:
            return _norm(tensors[key], name, fd)

        def matrix(key: str) -> BlockMatrix:
            return _matrix(tensors[key], name, fd)

        layers = tuple(
            LlamaLayer(
                attn_norm=norm(f"blk.{i}.attn_norm.weight"),
                wq=matrix(f"blk.{i}.attn_q.weight"),
                wk=matrix(f"blk.{i}.attn_k.weight"),
                wv=matrix(f"blk.{i}.attn_v.weight"),
                wo=matrix(f"blk.{i}.attn_output.weight"),
                ffn_norm=norm(f"blk.{i}.ffn_norm.weight"),
                gate=matrix(f"blk.{i}.ffn_gate.weight"),
                up=matrix(f"blk.{i}.ffn_up.weight"),
                down=matrix(f"blk.{i}.ffn_down.weight"),
            )
            for i in range(config.layers)
        )
        return LlamaWeights(config, matrix("token_embd.weight"), layers, norm("output_norm.weight"))
