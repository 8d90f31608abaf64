"""Synthetic LLaMA models at real sizes (docs/ml-spec.md §10.7): the Llama-3.2-1B shape (1.236 B
parameters) with seeded weights, generated and written to a model file in a stream, never committed to
the repository.

Every tensor is a pure function of ``(seed, its index, the piece)``: a matrix is generated in pieces of
whole rows (at most :data:`PIECE_BYTES`), each from its own numpy PCG64 stream seeded with the four
words ``[seed, index, piece, 0]`` (``seed < 2^32``), so a piece can be made again alone. A matrix is
``q4_1`` (the embedding, tied with the output projection, ``q8_0``) with one fp16 scale per row,
``d = (4 + k)·2^−(e+2)`` for a random ``k ∈ 0 … 3``, and uniform random codes:

- ``q4_1``: ``w = d·q + m`` with ``m = −7.5·d``, ``q ∈ 0 … 15``: mean 0, standard deviation ``4.61·d``;
- ``q8_0``: ``w = d·q``, ``q`` any int8: standard deviation ``73.9·d``;

with ``e`` chosen so that the deviation is about :attr:`MatrixSpec.deviation` (``gain/√cols`` with the
gains of :mod:`opml.ml.tiny_llama`, so that the residual grows; 1 for the embedding). Every scale is
exact at ``2^−F`` with ``F = e + 3`` (``e + 2`` for ``q8_0``). Norm weights are int16 within 10 % of 1 at
``2^−12``, from integer operations on the raw words of ``[seed, index, 0, 1]``.

The file is written in two passes over the generator: the first hashes each matrix to its key (the
node records name the keys, and the manifest comes before the tensors), the second writes the tensors
in the manifest's order. Generating runs at ~1.7 GB/s, so twice costs less than a second copy of the
weights; memory holds a piece or two and one matrix's tree nodes from level 7 up (1/128 of it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from opml.ml import blocks
from opml.ml.format import DType, TensorData, TensorEntry, TensorRef, named_keys, tensor_key, write_model_file
from opml.ml.llama import (
    BlockMatrix,
    LlamaConfig,
    LlamaLayer,
    LlamaWeights,
    NodeLabel,
    NormWeight,
    task_builder,
)
from opml.oracle.chunk_tree import ChunkKeyStream

LLAMA_3_2_1B = LlamaConfig(
    layers=16,
    hidden=2048,
    heads=32,
    kv_heads=8,
    head_dim=64,
    ffn=8192,
    vocab=128_256,
    context=8192,
    rope_base=500_000.0,
    eps=1e-5,
)
"""Llama-3.2-1B's shape; its context is cut to 8,192 positions (the RoPE table's rows) and its RoPE has
no frequency scaling (ml-spec §10.7)."""

SHAPES = {
    "llama-3.2-1b": LLAMA_3_2_1B,
    # the same 16 layers, head size, 4:1 grouped queries and vocabulary at hidden 256
    "llama-3.2-1b-h256": replace(LLAMA_3_2_1B, hidden=256, heads=4, kv_heads=1, ffn=1024),
}

PIECE_BYTES = 1 << 23
"""Largest piece of a matrix generated at once (8 MiB)."""
NORM_FRAC = 12
STOP_ID = -1
"""A synthetic model has no stop token: every task generates all its tokens."""


@dataclass(frozen=True)
class MatrixSpec:
    """A weight matrix of a synthetic model: GGUF's ``name``, its place ``index`` among the model's
    tensors, ``rows × cols`` weights of ``wtype`` with a standard deviation of about ``deviation``."""

    name: str
    index: int
    wtype: DType
    rows: int
    cols: int
    deviation: float

    @property
    def is_q4_1(self) -> bool:
        return self.wtype is DType.Q4_1

    @property
    def row_bytes(self) -> int:
        return self.cols // blocks.BLOCK * blocks.block_bytes(self.is_q4_1)

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    @property
    def piece_rows(self) -> int:
        return max(1, PIECE_BYTES // self.row_bytes)

    @property
    def exponent(self) -> int:
        """``e`` of the row scales ``(4 + k)·2^−(e+2)``."""
        spread = 4.61 if self.is_q4_1 else 73.9  # deviation of the codes, in units of d
        return -round(math.log2(self.deviation / spread))

    @property
    def f(self) -> int:
        return self.exponent + (3 if self.is_q4_1 else 2)

    def pieces(self, seed: int) -> Iterator[bytes]:
        """The matrix's bytes, one piece of whole rows after another."""
        for piece in range(-(-self.rows // self.piece_rows)):
            yield self.piece(seed, piece)

    def piece(self, seed: int, piece: int) -> bytes:
        """Rows ``piece·piece_rows …`` of the matrix of ``seed``."""
        r0 = piece * self.piece_rows
        n = min(self.piece_rows, self.rows - r0)
        nb = self.cols // blocks.BLOCK
        bs = blocks.block_bytes(self.is_q4_1)
        head = 4 if self.is_q4_1 else 2  # the fp16 fields before a block's codes
        gen = _stream(seed, self.index, piece, MATRIX)
        k = (gen.random_raw(n) & 3).astype(np.float64)
        d = ((4 + k) * 2.0 ** -(self.exponent + 2)).astype("<f2")
        out = np.empty((n, nb, bs), np.uint8)
        codes = n * nb * (bs - head)
        words = gen.random_raw(-(-codes // 8)).astype("<u8", copy=False)
        out[:, :, head:] = words.view(np.uint8)[:codes].reshape(n, nb, bs - head)
        out[:, :, 0:2] = d.view(np.uint8).reshape(n, 1, 2)
        if self.is_q4_1:
            m = (-7.5 * d.astype(np.float64)).astype("<f2")
            out[:, :, 2:4] = m.view(np.uint8).reshape(n, 1, 2)
        return out.tobytes()


@dataclass(frozen=True)
class SynthModel:
    """What writing a synthetic model gives: its commitment, its node labels, its parameter count and
    the file's size."""

    commitment: bytes
    labels: tuple[NodeLabel, ...]
    params: int
    file_bytes: int


def matrix_specs(config: LlamaConfig) -> list[MatrixSpec]:
    """The matrices of a config in the order of GGUF's tensors; norms take the indices between."""
    c = config
    specs = [MatrixSpec("token_embd.weight", 0, DType.Q8_0, c.vocab, c.hidden, 1.0)]
    per_layer = (  # name, rows, cols, gain; the index counts the two norms of each layer too
        ("attn_q", c.q_width, c.hidden, 2.0),
        ("attn_k", c.kv_width, c.hidden, 2.0),
        ("attn_v", c.kv_width, c.hidden, 1.0),
        ("attn_output", c.hidden, c.q_width, 4.0),
        ("ffn_gate", c.ffn, c.hidden, 1.0),
        ("ffn_up", c.ffn, c.hidden, 1.0),
        ("ffn_down", c.hidden, c.ffn, 4.0),
    )
    for layer in range(c.layers):
        base = 1 + 9 * layer
        for i, (name, rows, cols, gain) in enumerate(per_layer):
            index = base + 1 + i + (i >= 4)  # attn_norm at base, ffn_norm after attn_output
            deviation = gain / math.sqrt(cols)
            specs.append(MatrixSpec(f"blk.{layer}.{name}.weight", index, DType.Q4_1, rows, cols, deviation))
    return specs


MATRIX, NORM = 0, 1
"""The last word of a stream's seed: what it makes."""
MAX_SEED = (1 << 32) - 1


def _stream(seed: int, index: int, piece: int, kind: int) -> np.random.BitGenerator:
    """The PCG64 stream of one piece: seeded with four words below 2^32, so that no two pieces (of any
    seeds) share a stream (numpy pads a shorter seed with zero words and splits a larger one)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed}: a seed is an integer in 0 … 2^32 − 1")
    return np.random.default_rng([seed, index, piece, kind]).bit_generator


def _norm(seed: int, index: int, n: int) -> NormWeight:
    """int16 ``2^12 + (w mod 819) − 409`` per raw word ``w``: uniform within 10 % of 1 at ``Gf = 12``."""
    words = _stream(seed, index, 0, NORM).random_raw(n)
    g = ((words % 819).astype(np.int64) + (1 << NORM_FRAC) - 409).astype(np.int16)
    return NormWeight(g, NORM_FRAC)


def parameter_count(config: LlamaConfig) -> int:
    """Weights of the model, norms included (the embedding once: it is tied)."""
    matrices = sum(s.rows * s.cols for s in matrix_specs(config))
    return matrices + (2 * config.layers + 1) * config.hidden


def synth_weights(
    config: LlamaConfig, seed: int, progress: Callable[[MatrixSpec], None] | None = None
) -> tuple[LlamaWeights, dict[bytes, MatrixSpec]]:
    """The weights of ``seed`` with every matrix as its key (hashed from its pieces, none kept), and
    which matrix each key is."""
    by_key: dict[bytes, MatrixSpec] = {}

    def matrix(spec: MatrixSpec) -> BlockMatrix:
        stream = ChunkKeyStream()
        for piece in spec.pieces(seed):
            stream.update(piece)
        key = stream.key()
        by_key[key] = spec
        if progress is not None:
            progress(spec)
        return BlockMatrix(TensorRef(key, spec.nbytes), spec.wtype, spec.f, spec.rows, spec.cols)

    specs = iter(matrix_specs(config))
    embedding = matrix(next(specs))
    layers = []
    for layer in range(config.layers):
        base = 1 + 9 * layer
        wq, wk, wv, wo, gate, up, down = (matrix(next(specs)) for _ in range(7))
        layers.append(
            LlamaLayer(
                attn_norm=_norm(seed, base, config.hidden),
                wq=wq,
                wk=wk,
                wv=wv,
                wo=wo,
                ffn_norm=_norm(seed, base + 5, config.hidden),
                gate=gate,
                up=up,
                down=down,
            )
        )
    output_norm = _norm(seed, 1 + 9 * config.layers, config.hidden)
    return LlamaWeights(config, embedding, tuple(layers), output_norm), by_key


def _held(data: TensorData) -> list[TensorData]:
    return [data]


def write_synth(
    path: str | Path,
    config: LlamaConfig,
    seed: int,
    max_prompt: int,
    max_new: int,
    progress: Callable[[MatrixSpec], None] | None = None,
) -> SynthModel:
    """Write the task graph (ml-spec §10.5) of the synthetic model of ``config`` (one of :data:`SHAPES`)
    and ``seed`` to ``path``, and its card beside it (no tokenizer, no stop token); ``progress`` is
    called after each matrix of each pass. The file is not read back here: ``read_model(path,
    verify=True)`` checks it."""
    from opml.ml.llm import LlmCard, card_path  # llm imports the tokenizer; synth needs neither

    weights, matrices = synth_weights(config, seed, progress)
    g, labels = task_builder(weights, max_prompt, max_new)
    entries: list[TensorEntry] = []
    for key in named_keys(g.nodes):
        held = g.tensors.get(key)
        if held is not None:
            entries.append((key, len(held), partial(_held, held)))
            continue
        spec = matrices[key]

        def pieces(spec: MatrixSpec = spec) -> Iterator[bytes]:
            yield from spec.pieces(seed)
            if progress is not None:
                progress(spec)

        entries.append((key, spec.nbytes, pieces))
    manifest = g.manifest()
    write_model_file(path, manifest, entries)
    card_path(path).write_text(LlmCard(None, max_prompt, max_new, STOP_ID, config.layers, labels).to_json())
    return SynthModel(
        tensor_key(manifest),
        labels,
        parameter_count(config),
        Path(path).stat().st_size,
    )
