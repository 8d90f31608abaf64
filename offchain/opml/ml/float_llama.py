"""A float LLaMA on the committed weights, the reference of fidelity checks (tests and bench only: the
protocol never runs it).

    ref = FloatLlama(weights)                 # float32; FloatLlama(weights, np.float64) for float64
    ref.logits(ids)                           # [T, V], teacher forced, every position
    ref.generate(prompt, 32, stop_id=2)       # greedy, one token at a time over a KV cache

It follows llama.cpp's graph for ``llama`` (design §5): the embedding row; per layer
``h = rmsnorm(x)·attn_norm``; ``q``, ``k``, ``v``; RoPE rotating adjacent pairs ``(2i, 2i+1)`` by
``pos·base^(−2i/hd)``; query head ``h`` on KV head ``h // (heads/kv_heads)``; scale ``1/√hd``; causal
mask; ``x += Wo·attn``; ``h = rmsnorm(x)·ffn_norm``; ``x += Wdown(silu(Wgate·h) ⊙ Wup·h)``; the final
norm; logits ``= token_embd · x`` (tied). The weights are the integer pipeline's own: each block matrix
decoded exactly (:func:`opml.ml.blocks.decode_rows`, ``(q·D + M)·2^−F``, equal to
``gguf.quants.dequantize``), each norm vector its int16 ``g·2^−gf``, so a difference from the integer
pipeline is the integer arithmetic's alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml import blocks
from opml.ml.format import DType
from opml.ml.llama import BlockMatrix, LlamaWeights, NormWeight

Array = npt.NDArray[Any]


def dequantize(m: BlockMatrix, dtype: npt.DTypeLike = np.float64) -> Array:
    """A block matrix's weights ``[rows, cols]``: ``(q·D + M)·2^−F`` from its integers (exact in float64;
    rounded once to ``dtype``)."""
    rows = blocks.decode_rows(m.raw, m.wtype is DType.Q4_1, m.cols, slice(None), m.f, "dequantize")
    w = rows.q.astype(np.float64) * rows.d[..., None].astype(np.float64)
    if rows.m is not None:
        w += rows.m[..., None].astype(np.float64)
    w *= 2.0**-m.f
    return w.reshape(m.rows, m.cols).astype(dtype, copy=False)


def norm_vector(n: NormWeight, dtype: npt.DTypeLike = np.float64) -> Array:
    """A norm weight's values ``g·2^−gf``."""
    return (n.g.astype(np.float64) * 2.0**-n.gf).astype(dtype)


@dataclass(frozen=True)
class _Layer:
    attn_norm: Array
    wq: Array  # [heads·hd, H]
    wk: Array  # [kv_heads·hd, H]
    wv: Array  # [kv_heads·hd, H]
    wo: Array  # [H, heads·hd]
    ffn_norm: Array
    gate: Array  # [F, H]
    up: Array  # [F, H]
    down: Array  # [H, F]


@dataclass
class KVCache:
    """Per layer, the keys and values of the positions so far (``[L, kv_heads·hd]`` each)."""

    keys: list[Array] = field(default_factory=list)
    values: list[Array] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.keys else int(self.keys[0].shape[0])


class FloatLlama:
    """The float forward pass of :class:`~opml.ml.llama.LlamaWeights` in ``dtype`` (float32 or float64)."""

    def __init__(self, weights: LlamaWeights, dtype: npt.DTypeLike = np.float32) -> None:
        self.config = c = weights.config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype {self.dtype}: float32 or float64")
        self.embedding = dequantize(weights.embedding, self.dtype)  # [V, H], also the lm_head
        self.layers = tuple(
            _Layer(
                norm_vector(layer.attn_norm, self.dtype),
                dequantize(layer.wq, self.dtype),
                dequantize(layer.wk, self.dtype),
                dequantize(layer.wv, self.dtype),
                dequantize(layer.wo, self.dtype),
                norm_vector(layer.ffn_norm, self.dtype),
                dequantize(layer.gate, self.dtype),
                dequantize(layer.up, self.dtype),
                dequantize(layer.down, self.dtype),
            )
            for layer in weights.layers
        )
        self.output_norm = norm_vector(weights.output_norm, self.dtype)
        half = c.head_dim // 2
        self._theta = c.rope_base ** (-np.arange(half, dtype=np.float64) * 2 / c.head_dim)  # [hd/2]
        self._head_kv = np.arange(c.heads) // (c.heads // c.kv_heads)

    # --- the pieces ---

    def _norm(self, x: Array, g: Array) -> Array:
        ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)
        out: Array = (x / np.sqrt(ms + self.config.eps).astype(self.dtype)) * g
        return out

    def _rope(self, x: Array, pos0: int) -> Array:
        """Rotate adjacent pairs of each head of the rows ``x`` ``[T, n·hd]`` at positions ``pos0 …``."""
        t = x.shape[0]
        angle = np.arange(pos0, pos0 + t, dtype=np.float64)[:, None] * self._theta[None, :]
        cos, sin = np.cos(angle).astype(self.dtype), np.sin(angle).astype(self.dtype)
        pairs = x.reshape(t, -1, self.config.head_dim // 2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        cos, sin = cos[:, None, :], sin[:, None, :]
        out: Array = np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(x.shape)
        return out

    def _attention(self, q: Array, keys: Array, values: Array, pos0: int) -> Array:
        """Causal grouped-query attention of the query rows ``q`` ``[T, heads·hd]`` at ``pos0 …`` over
        the ``L = pos0 + T`` keys and values so far."""
        c = self.config
        t, n = q.shape[0], keys.shape[0]
        hd = c.head_dim
        qh = q.reshape(t, c.heads, hd).transpose(1, 0, 2)  # [nh, T, hd]
        kh = keys.reshape(n, c.kv_heads, hd)[:, self._head_kv].transpose(1, 2, 0)  # [nh, hd, L]
        vh = values.reshape(n, c.kv_heads, hd)[:, self._head_kv].transpose(1, 0, 2)  # [nh, L, hd]
        scores = (qh @ kh) * self.dtype.type(1 / np.sqrt(hd))
        allowed = np.arange(n)[None, :] <= (pos0 + np.arange(t))[:, None]  # [T, L]
        scores = np.where(allowed[None], scores, -np.inf)
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        out: Array = (p @ vh).transpose(1, 0, 2).reshape(t, c.heads * hd)
        return out

    def _forward(self, ids: Sequence[int] | Array, cache: KVCache) -> Array:
        """The final residual rows ``[T, H]`` of ``ids`` at the positions after ``cache``, which grows."""
        pos0 = cache.length
        x = self.embedding[np.asarray(ids, dtype=np.int64)]
        for i, layer in enumerate(self.layers):
            h = self._norm(x, layer.attn_norm)
            q = self._rope(h @ layer.wq.T, pos0)
            k = self._rope(h @ layer.wk.T, pos0)
            v = h @ layer.wv.T
            if i < len(cache.keys):
                cache.keys[i] = np.concatenate([cache.keys[i], k])
                cache.values[i] = np.concatenate([cache.values[i], v])
            else:
                cache.keys.append(k)
                cache.values.append(v)
            x = x + self._attention(q, cache.keys[i], cache.values[i], pos0) @ layer.wo.T
            h = self._norm(x, layer.ffn_norm)
            gate = h @ layer.gate.T
            silu = gate * (0.5 + 0.5 * np.tanh(0.5 * gate))  # sigmoid(g) = (1 + tanh(g/2))/2: no overflow
            x = x + (silu * (h @ layer.up.T)) @ layer.down.T
        return x

    def _head(self, x: Array) -> Array:
        out: Array = self._norm(x, self.output_norm) @ self.embedding.T
        return out

    # --- the API ---

    def residual(self, ids: Sequence[int] | Array) -> Array:
        """The final residual stream ``[T, H]`` (before the output norm), teacher forced from position 0."""
        return self._forward(ids, KVCache())

    def logits(self, ids: Sequence[int] | Array) -> Array:
        """The logits ``[T, V]`` after every position of ``ids``, teacher forced from position 0."""
        return self._head(self._forward(ids, KVCache()))

    def generate(self, prompt_ids: Sequence[int], n: int, stop_id: int | None = None) -> list[int]:
        """Up to ``n`` greedy tokens after the prompt (the lowest index of the largest logit), one at a
        time over a KV cache, up to and including the first ``stop_id``."""
        cache = KVCache()
        logits = self._head(self._forward(list(prompt_ids), cache)[-1:])[0]
        out: list[int] = []
        while len(out) < n:
            token = int(np.argmax(logits))
            out.append(token)
            if token == stop_id or len(out) == n:
                break
            logits = self._head(self._forward([token], cache))[0]
        return out
