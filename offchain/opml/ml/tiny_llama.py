"""A tiny LLaMA with seeded weights, for tests: 2 layers, hidden 64, 4 query and 2 KV heads of 16,
FFN 128, vocabulary 256 (docs/ml-spec.md §10).

It is generated, never committed: :func:`tiny_llama` draws float weights from a seed and stores them as
GGUF would (``q4_1`` matrices with a ``q8_0`` embedding, as SmolLM2's file does, or ``q8_0`` everywhere:
the int8 form), so every test builds the same model from its seed alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opml.ml import blocks
from opml.ml.format import DType
from opml.ml.gguf_quant import quantize_q4_1, quantize_q8_0
from opml.ml.llama import BlockMatrix, LlamaConfig, LlamaLayer, LlamaWeights, NormWeight

TINY = LlamaConfig(
    layers=2,
    hidden=64,
    heads=4,
    kv_heads=2,
    head_dim=16,
    ffn=128,
    vocab=256,
    context=64,
    rope_base=10_000.0,
    eps=1e-5,
)

NORM_FRAC = 12
"""Fractional bits of the tiny model's int16 norm weights (values near 1)."""


def block_matrix(w: npt.NDArray[np.float64], wtype: DType) -> BlockMatrix:
    """Float ``[rows, cols]`` weights as GGUF blocks, with the smallest exact scale exponent."""
    is_q4_1 = wtype is DType.Q4_1
    data = quantize_q4_1(w) if is_q4_1 else quantize_q8_0(w)
    f = blocks.smallest_f(data, is_q4_1)
    blocks.check_scales(data, is_q4_1, f, "tiny llama")
    rows, cols = w.shape
    return BlockMatrix(data, wtype, f, rows, cols)


def _norm(rng: np.random.Generator, n: int) -> NormWeight:
    g = np.rint((1 + 0.1 * rng.standard_normal(n)) * (1 << NORM_FRAC)).astype(np.int16)
    return NormWeight(g, NORM_FRAC)


def tiny_llama(seed: int = 0, wtype: DType = DType.Q4_1, config: LlamaConfig = TINY) -> LlamaWeights:
    """The tiny model of ``seed``: its matrices in ``wtype`` (``Q4_1`` or ``Q8_0``), the tied embedding in
    ``Q8_0``. Weights are ``gain·N(0, 1/fan_in)``: with gain 1 everywhere the tied embedding makes every
    step repeat the last token (a row's own embedding dominates its logits), so the layers' outputs
    (``wo``, ``down``: 4) and the attention logits (``wq``, ``wk``: 2) are made larger until the tokens
    vary, which is what tests need to see a wrong cache or position change the result."""
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int, gain: float = 1.0) -> BlockMatrix:
        return block_matrix(gain * rng.standard_normal((rows, cols)) / np.sqrt(cols), wtype)

    c = config
    layers = tuple(
        LlamaLayer(
            attn_norm=_norm(rng, c.hidden),
            wq=matrix(c.q_width, c.hidden, 2),
            wk=matrix(c.kv_width, c.hidden, 2),
            wv=matrix(c.kv_width, c.hidden),
            wo=matrix(c.hidden, c.q_width, 4),
            ffn_norm=_norm(rng, c.hidden),
            gate=matrix(c.ffn, c.hidden),
            up=matrix(c.ffn, c.hidden),
            down=matrix(c.hidden, c.ffn, 4),
        )
        for _ in range(c.layers)
    )
    embedding = block_matrix(rng.standard_normal((c.vocab, c.hidden)), DType.Q8_0)
    return LlamaWeights(c, embedding, layers, _norm(rng, c.hidden))
