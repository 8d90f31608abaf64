"""LLaMA decoders as integer graphs (docs/ml-spec.md §10): a config, its weights as committed tensors,
and the graph of one greedy generation.

One task is one generation: the graph's input is the prompt (int32 ``[P]`` token ids), its output the
argmax records (§10.2) of the ``n`` generated tokens, int32 ``[n, 3]``. The prompt is prefilled in
chunks of rows (all at once, one token at a time, or anything between); every new token is the
previous token's argmax record fed back through ``embedding``. Each layer's KV cache is an ordinary
value (a ``concat`` per chunk), so phase 1 bisects over it like over any activation.

Every op is row-local and integer, so how the prompt is chunked changes the graph but not a single
byte of any row: the caches after the prompt, the records and the tokens are identical whatever the
chunking (:func:`generation_graph` with ``chunks``; ``tests/ml/test_llama.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opml.ml.format import TRANSCRIPT_HEADER, DType, GraphBuilder, Model, TensorRef, int32
from opml.ml.llama_tables import attention_scale, exp2_table, rope_table, sigmoid_table

RESIDUAL_FRAC = 12
"""Fractional bits of the int32 residual stream: SmolLM2's largest channel (≈ 23,850) has 20× headroom."""


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a LLaMA decoder (GGUF's ``llama.*`` metadata)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    rope_base: float
    eps: float

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class BlockMatrix:
    """A GGUF block matrix as it is: ``rows`` rows of ``cols`` weights, scales exact at ``2^−f``."""

    data: bytes | TensorRef
    """The GGUF bytes, or their key and size where the weights are not in memory (ml-spec §10.7)."""
    wtype: DType
    f: int
    rows: int
    cols: int

    @property
    def raw(self) -> bytes | memoryview:
        """The bytes, for what reads the weights in memory (the float reference, the evaluator)."""
        if isinstance(self.data, TensorRef):
            raise TypeError("this matrix is known by its key only (a synthetic model's): read its model file")
        return self.data


@dataclass(frozen=True)
class NormWeight:
    """An RMSNorm weight vector as int16 at ``2^−gf``."""

    g: npt.NDArray[np.int16]
    gf: int


@dataclass(frozen=True)
class LlamaLayer:
    attn_norm: NormWeight
    wq: BlockMatrix
    wk: BlockMatrix
    wv: BlockMatrix
    wo: BlockMatrix
    ffn_norm: NormWeight
    gate: BlockMatrix
    up: BlockMatrix
    down: BlockMatrix


@dataclass(frozen=True)
class LlamaWeights:
    """Everything a generation graph commits to; ``embedding`` is also the output projection (tied)."""

    config: LlamaConfig
    embedding: BlockMatrix
    layers: tuple[LlamaLayer, ...]
    output_norm: NormWeight


@dataclass(frozen=True)
class Generation:
    """A generation graph and where its values are."""

    model: Model
    prompt_len: int
    new_tokens: int
    caches: tuple[int, ...]
    """Per layer, the value holding its KV cache after the whole prompt."""
    records: tuple[int, ...]
    """The value of each generated token's argmax record (int32 ``[1, 3]``), in order."""


def eps_units(config: LlamaConfig) -> int:
    """``rmsnorm``'s ε in the residual's squared units (``ε·2^(2R)``; 168 for ε = 10^−5 at R = 12)."""
    return round(config.eps * (1 << (2 * RESIDUAL_FRAC)))


class _Tables:
    """The fixed-point tables of one config, each committed once (the builder keys tensors by content)."""

    def __init__(self, config: LlamaConfig) -> None:
        self.rope = rope_table(config.context, config.head_dim, config.rope_base)
        self.exp2 = exp2_table()
        self.sigmoid = sigmoid_table()
        self.mul, self.sa = attention_scale(config.head_dim)
        self.eps = eps_units(config)


@dataclass(frozen=True)
class NodeLabel:
    """A task graph's node: at step (position) ``step``, in ``layer`` (``None``: outside the layers),
    the value ``role`` (``attention``, ``ffn_down``, ``kv_cache``, ``lm_head`` …)."""

    step: int
    layer: int | None
    role: str

    def __str__(self) -> str:
        where = "" if self.layer is None else f" layer {self.layer}"
        return f"{self.role}{where} at position {self.step}"


class _Labels:
    """Names each node a builder adds (none without a builder) by the role of the value it leads to."""

    def __init__(self, g: GraphBuilder | None) -> None:
        self.g = g
        self.labels: list[NodeLabel] = []
        self.step = 0
        self.layer: int | None = None

    def __call__(self, role: str, value: int) -> int:
        while self.g is not None and len(self.labels) < len(self.g.nodes):
            self.labels.append(NodeLabel(self.step, self.layer, role))
        return value


def _dense(g: GraphBuilder, x: int, w: BlockMatrix, *, residual: bool = False) -> int:
    if residual:
        return g.qdense(x, w.data, w.wtype, w.f, out=DType.INT32, r=RESIDUAL_FRAC)
    return g.qdense(x, w.data, w.wtype, w.f)


def _norm(g: GraphBuilder, x: int, norm: NormWeight, tables: _Tables) -> int:
    return g.rmsnorm(x, norm.g, norm.gf, tables.eps)


def _layer(
    g: GraphBuilder,
    x: int,
    layer: LlamaLayer,
    cache: int | None,
    pos0: int,
    config: LlamaConfig,
    tables: _Tables,
    label: _Labels,
) -> tuple[int, int]:
    """One decoder layer over the ``T`` rows of ``x`` at positions ``pos0 …``; returns the new residual
    and the layer's cache extended by these rows."""
    t = g.values[x].shape[0]
    hd = config.head_dim
    h = label("attn_norm", _norm(g, x, layer.attn_norm, tables))
    q = label("q", g.rope(label("attn_q", _dense(g, h, layer.wq)), tables.rope, hd, pos0))
    k = label("k", g.rope(label("attn_k", _dense(g, h, layer.wk)), tables.rope, hd, pos0))
    v = label("attn_v", _dense(g, h, layer.wv))
    rows = g.concat(g.reshape(k, (t, 1, config.kv_width)), g.reshape(v, (t, 1, config.kv_width)), axis=1)
    if cache is None:  # the first rows are the whole cache
        cache = label("kv_cache", rows)
    else:
        cache = label("kv_cache", g.concat(cache, label("kv_rows", rows), axis=0))
    attn = label("attention", g.attention(q, cache, tables.exp2, hd, tables.mul, tables.sa))
    x = label("attn_residual", g.add32(x, label("attn_output", _dense(g, attn, layer.wo, residual=True))))
    h = label("ffn_norm", _norm(g, x, layer.ffn_norm, tables))
    gate = label("ffn_gate", _dense(g, h, layer.gate))
    mlp = label("swiglu", g.swiglu(gate, label("ffn_up", _dense(g, h, layer.up)), tables.sigmoid))
    out = label("ffn_residual", g.add32(x, label("ffn_down", _dense(g, mlp, layer.down, residual=True))))
    return out, cache


def _forward(
    g: GraphBuilder,
    ids: int,
    weights: LlamaWeights,
    caches: list[int | None],
    pos0: int,
    tables: _Tables,
    label: _Labels | None = None,
) -> int:
    """Rows ``ids`` (token ids ``[T]`` or argmax records ``[T, 3]``) through every layer, updating
    ``caches`` in place; returns the last residual value (int32 ``[T, H]``)."""
    config = weights.config
    emb = weights.embedding
    label = label or _Labels(None)
    x = label("embedding", g.embedding(ids, emb.data, emb.wtype, emb.f, config.hidden, RESIDUAL_FRAC))
    for i, layer in enumerate(weights.layers):
        label.layer = i
        x, caches[i] = _layer(g, x, layer, caches[i], pos0, config, tables, label)
    return x


def _next_token(
    g: GraphBuilder, x: int, weights: LlamaWeights, tables: _Tables, label: _Labels | None = None
) -> int:
    """The argmax record of the token after the last row of the residual ``x``."""
    t = g.values[x].shape[0]
    last = x if t == 1 else g.slice(x, t - 1, 1)
    label = label or _Labels(None)
    label.layer = None
    h = label("output_norm", _norm(g, last, weights.output_norm, tables))
    emb = weights.embedding
    rows = lm_head_rows(emb)
    record = g.qdense_argmax(h, emb.data, emb.wtype, emb.f, row0=0, m=rows)
    for row0 in range(rows, emb.rows, rows):
        shard = g.qdense_argmax(h, emb.data, emb.wtype, emb.f, row0=row0, m=min(rows, emb.rows - row0))
        record = g.argmax_merge(record, shard)
    return record


LM_HEAD_SHARD_MACS = 1 << 27
"""Most multiply-adds (rows × K) of one ``qdense_argmax`` of the output projection: a larger one is
split by rows, so that no node program nears the 2^31-step cap (ml-spec §10.5)."""


def lm_head_rows(embedding: BlockMatrix) -> int:
    """Rows of each shard of the output projection: all of them up to :data:`LM_HEAD_SHARD_MACS`
    multiply-adds (SmolLM2's 49,152 × 576: one node), else ``⌊2^27 / K⌋`` (Llama-3.2-1B's 128,256 ×
    2,048: 65,536 and 62,720)."""
    return min(embedding.rows, max(1, LM_HEAD_SHARD_MACS // embedding.cols))


def lm_head_shards(embedding: BlockMatrix) -> int:
    """How many ``qdense_argmax`` nodes the output projection takes: ``⌈rows / lm_head_rows⌉``."""
    return -(-embedding.rows // lm_head_rows(embedding))


def generation_graph(
    weights: LlamaWeights, prompt_len: int, new_tokens: int, chunks: Sequence[int] | None = None
) -> Generation:
    """The graph of a greedy generation of ``new_tokens ≥ 1`` tokens after a prompt of ``prompt_len``
    tokens, prefilled in ``chunks`` (row counts adding up to ``prompt_len``; one chunk by default)."""
    config = weights.config
    chunks = [prompt_len] if chunks is None else list(chunks)
    if prompt_len < 1 or new_tokens < 1 or sum(chunks) != prompt_len or min(chunks) < 1:
        raise ValueError(f"chunks {chunks} must be positive and add up to the prompt length {prompt_len}")
    if prompt_len + new_tokens - 1 > config.context:
        raise ValueError(f"{prompt_len} + {new_tokens} tokens do not fit a context of {config.context}")
    tables = _Tables(config)
    g = GraphBuilder(int32(prompt_len), version=2)
    caches: list[int | None] = [None] * config.layers
    pos = 0
    x = 0
    for n in chunks:  # only the last chunk's logits are needed: the first token
        ids = 0 if n == prompt_len else g.slice(0, pos, n)
        x = _forward(g, ids, weights, caches, pos, tables)
        pos += n
    prompt_caches = tuple(c for c in caches if c is not None)
    records = [_next_token(g, x, weights, tables)]
    for _ in range(new_tokens - 1):
        x = _forward(g, records[-1], weights, caches, pos, tables)
        records.append(_next_token(g, x, weights, tables))
        pos += 1
    out = records[0]
    for r in records[1:]:
        out = g.concat(out, r, axis=0)
    return Generation(g.build(), prompt_len, new_tokens, prompt_caches, tuple(records))


@dataclass(frozen=True)
class TaskGraph:
    """The graph that serves every generation task of one registration (§10.5): prompts of 1 …
    ``max_prompt`` tokens, 1 … ``max_new`` new tokens."""

    model: Model
    max_prompt: int
    max_new: int
    labels: tuple[NodeLabel, ...]
    """What node ``k`` computes (``labels[k]``)."""

    @property
    def steps(self) -> int:
        return self.max_prompt + self.max_new - 1


def task_input(
    prompt: Sequence[int], new_tokens: int, max_prompt: int, max_new: int
) -> npt.NDArray[np.int32]:
    """A task's input: the transcript int32 ``[2 + max_prompt + max_new]`` with ``P``, ``n``, the prompt
    and zeros. Raises ``ValueError`` (one line) for an empty or too long prompt or count."""
    if not 1 <= len(prompt) <= max_prompt:
        raise ValueError(f"a prompt of {len(prompt)} tokens: this model takes 1 … {max_prompt}")
    if not 1 <= new_tokens <= max_new:
        raise ValueError(f"{new_tokens} new tokens: this model generates 1 … {max_new}")
    x = np.zeros(TRANSCRIPT_HEADER + max_prompt + max_new, dtype=np.int32)
    x[0], x[1] = len(prompt), new_tokens
    x[TRANSCRIPT_HEADER : TRANSCRIPT_HEADER + len(prompt)] = prompt
    return x


def generated_ids(transcript: npt.NDArray[np.int32], stop_id: int | None = None) -> list[int]:
    """The tokens a task's output transcript holds after its prompt, up to and including the first
    ``stop_id``."""
    x = np.asarray(transcript).reshape(-1)
    prompt_len, count = int(x[0]), int(x[1])
    out: list[int] = []
    for token in x[TRANSCRIPT_HEADER + prompt_len : TRANSCRIPT_HEADER + prompt_len + count]:
        out.append(int(token))
        if token == stop_id:
            break
    return out


def task_graph(weights: LlamaWeights, max_prompt: int, max_new: int) -> TaskGraph:
    """The one graph of every task up to ``max_prompt`` prompt tokens and ``max_new`` new tokens: one
    step per position ``t = 0 … max_prompt + max_new − 2``, each reading its token from the transcript
    (``slice``), running every layer on that one row and writing its argmax record's token to position
    ``t + 1`` when the task generates it (``emit``)."""
    g, labels = task_builder(weights, max_prompt, max_new)
    return TaskGraph(g.build(), max_prompt, max_new, labels)


def task_builder(
    weights: LlamaWeights, max_prompt: int, max_new: int
) -> tuple[GraphBuilder, tuple[NodeLabel, ...]]:
    """The builder holding :func:`task_graph`'s nodes, and their labels: for weights given as
    :class:`~opml.ml.format.TensorRef` (whose bytes the builder never holds)."""
    config = weights.config
    if max_prompt < 1 or max_new < 1:
        raise ValueError(f"max_prompt {max_prompt} and max_new {max_new} must be ≥ 1")
    steps = max_prompt + max_new - 1
    if steps > config.context:
        raise ValueError(f"{steps} positions do not fit a context of {config.context}")
    tables = _Tables(config)
    g = GraphBuilder(int32(TRANSCRIPT_HEADER + max_prompt + max_new), version=2)
    label = _Labels(g)
    caches: list[int | None] = [None] * config.layers
    transcript = 0
    for t in range(steps):
        label.step, label.layer = t, None
        token = label("token", g.slice(transcript, TRANSCRIPT_HEADER + t, 1))
        x = _forward(g, token, weights, caches, t, tables, label)
        label.layer = None
        record = label("lm_head", _next_token(g, x, weights, tables, label))
        transcript = label("emit", g.emit(transcript, record, t))
    return g, tuple(label.labels)


def tokens_of(records: npt.NDArray[np.int32]) -> list[int]:
    """The token ids of argmax records (int32 ``[n, 3]``: id, then the int64 logit's low and high words)."""
    return [int(i) for i in np.asarray(records).reshape(-1, 3)[:, 0]]
