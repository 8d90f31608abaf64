"""Fidelity of the integer LLaMA pipeline against the float reference (tests and bench; docs/ml-spec.md
§10, design §5).

- :class:`IntegerLlama` gives the integer pipeline's logits at every position of a token sequence,
  exactly as a committed graph computes them: a prefill graph built from the same pieces as
  :func:`~opml.ml.llama.generation_graph` (embedding, every layer, in chunks of at most
  :data:`MAX_CHUNK` rows) ending at the final ``rmsnorm`` of every row, run node by node by the native
  runner; then the lm_head's exact int64 accumulators ``acc`` of ``qdense`` over the tied embedding. The
  logit is ``acc·2^(e_t − F)``, the value ``qdense_argmax`` compares (every op is row-local, so row
  ``t`` is the row a generation graph would compute for the prompt ``ids[: t + 1]``).
- :func:`perplexity_report`: teacher forced in independent windows (the context restarts at each),
  the perplexity of the integer pipeline and of the float references and their top-1 agreement.
- :func:`greedy_report`: greedy answers of the real generation graph (its argmax records) against the
  float reference's; per prompt, identical or the first divergence with the reference's top-1/top-2
  margin there (below :data:`NEAR_TIE` a "near tie").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml import ops
from opml.ml.float_llama import FloatLlama
from opml.ml.format import DType, GraphBuilder, Model, int32
from opml.ml.llama import Generation, LlamaWeights, _forward, _norm, _Tables, generation_graph, tokens_of
from opml.ml.runner import apply_node

Array = npt.NDArray[Any]

MAX_CHUNK = 200
"""Rows of one prefill chunk: SmolLM2's ``ffn_gate`` over 256 rows is above the node step cap (§9)."""
NEAR_TIE = 0.1
"""A divergence where the float reference's top two logits are closer than this is a near tie."""


def chunk_sizes(n: int, limit: int = MAX_CHUNK) -> list[int]:
    """``n`` rows as the fewest chunks of at most ``limit``, as even as possible (the larger first)."""
    count = max(1, -(-n // limit))
    return [n // count + (i < n % count) for i in range(count)]


def prefill_graph(weights: LlamaWeights, length: int, chunks: Sequence[int] | None = None) -> Model:
    """The version-2 graph of a prefill of ``length`` token ids (int32 ``[T]``) in ``chunks``, ending at
    the final ``rmsnorm`` of every row (``r16`` ``[T, H]``): a generation graph's prompt without its
    ``slice`` of the last row and ``qdense_argmax``."""
    chunks = chunk_sizes(length) if chunks is None else list(chunks)
    if length < 1 or sum(chunks) != length or min(chunks) < 1:
        raise ValueError(f"chunks {chunks} must be positive and add up to the length {length}")
    if length > weights.config.context:
        raise ValueError(f"{length} tokens do not fit a context of {weights.config.context}")
    tables = _Tables(weights.config)
    g = GraphBuilder(int32(length), version=2)
    caches: list[int | None] = [None] * weights.config.layers
    pos = 0
    out: int | None = None
    for n in chunks:
        ids = 0 if n == length else g.slice(0, pos, n)
        x = _forward(g, ids, weights, caches, pos, tables)
        normed = _norm(g, x, weights.output_norm, tables)
        out = normed if out is None else g.concat(out, normed, axis=0)
        pos += n
    return g.build()


def run_values(
    model: Model,
    x: Any,
    keep: Collection[int] = (),
    stop: Callable[[int, Array], bool] | None = None,
) -> dict[int, Array]:
    """The output and the values ``keep`` of a run of ``model`` on ``x``, node by node with the native
    runner's ops (no keys: fidelity needs values only), each other value dropped after its last use;
    with ``stop``, only up to the first value ``v`` (number ``k``) with ``stop(k, v)`` (the nodes after
    it cannot change it)."""
    last_use = {r: i for i, node in enumerate(model.nodes) for r in node.inputs}
    values: dict[int, Array] = {0: model.check_input(x)}
    for i, node in enumerate(model.nodes):
        value = values[i + 1] = apply_node(model, i, [values[r] for r in node.inputs])
        for r in node.inputs:
            if last_use[r] == i and r not in keep:
                values.pop(r, None)
        if stop is not None and stop(i + 1, value):
            break
    return values


class IntegerLlama:
    """The integer pipeline of ``weights``: its logits at every position, and greedy generations."""

    def __init__(self, weights: LlamaWeights) -> None:
        self.weights = weights
        emb = weights.embedding
        self.f = emb.f
        self._head = ops.QWeights.read(
            emb.raw, emb.wtype is DType.Q4_1, emb.cols, slice(None), emb.f, "lm_head"
        )
        self._graphs: dict[int, Model] = {}
        self._generations: dict[tuple[int, int], Generation] = {}

    def accumulators(self, ids: Sequence[int] | Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(acc, e)``: the lm_head's int64 accumulators ``[T, V]`` after every position of ``ids`` and
        each row's exponent ``e_t`` (the logit is ``acc·2^(e_t − F)``)."""
        x = np.asarray(ids, dtype=np.int32)
        model = self._graphs.get(len(x))
        if model is None:
            model = self._graphs[len(x)] = prefill_graph(self.weights, len(x))
        normed = run_values(model, x)[len(model.nodes)]
        e = np.asarray(normed["e"]).astype(np.int64)
        return ops.qdense_acc(normed["q"], self._head), e

    def logits(self, ids: Sequence[int] | Array) -> npt.NDArray[np.float64]:
        """The logits ``acc·2^(e_t − F)`` (float64) ``[T, V]`` after every position of ``ids``."""
        acc, e = self.accumulators(ids)
        out: npt.NDArray[np.float64] = np.ldexp(acc.astype(np.float64), (e - self.f)[:, None])
        return out

    def generate(self, prompt_ids: Sequence[int], n: int, stop_id: int | None = None) -> list[int]:
        """Up to ``n`` greedy tokens of the real generation graph (its argmax records), the prompt
        prefilled in chunks of at most :data:`MAX_CHUNK` rows; the run stops after the record of the
        first ``stop_id`` (the nodes after it cannot change it)."""
        p = len(prompt_ids)
        gen = self._generations.get((p, n))
        if gen is None:
            gen = self._generations[(p, n)] = generation_graph(self.weights, p, n, chunk_sizes(p))
        records = set(gen.records)

        def stopped(k: int, value: Array) -> bool:
            return k in records and stop_id is not None and int(value[0, 0]) == stop_id

        values = run_values(gen.model, np.asarray(prompt_ids, dtype=np.int32), records, stopped)
        return [tokens_of(values[r])[0] for r in gen.records if r in values]


# --- perplexity -----------------------------------------------------------------------------------


def _nll(logits: npt.NDArray[np.float64], targets: Array) -> npt.NDArray[np.float64]:
    """``−log softmax(logits)[target]`` per row, in float64."""
    z = logits.astype(np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    out: npt.NDArray[np.float64] = lse - z[np.arange(len(z)), targets]
    return out


@dataclass(frozen=True)
class PerplexityReport:
    """Teacher-forced figures over ``positions`` predicted tokens in ``windows`` independent windows."""

    positions: int
    windows: int
    integer: float
    """The integer pipeline's perplexity."""
    reference: dict[str, float]
    """Each float reference's perplexity, by dtype (``float32``, ``float64``)."""
    agreement: dict[str, float]
    """The fraction of positions where the integer argmax is the reference's, by dtype."""

    def __str__(self) -> str:
        refs = ", ".join(
            f"{k} {v:.4f} (top-1 agreement {self.agreement[k]:.2%})" for k, v in self.reference.items()
        )
        return f"{self.positions} positions in {self.windows} windows: integer {self.integer:.4f}; {refs}"


def _windows(ids: Sequence[int] | Array, window: int) -> list[npt.NDArray[np.int32]]:
    x = np.asarray(ids, dtype=np.int32)
    return [x[i : i + window] for i in range(0, len(x), window) if len(x[i : i + window]) >= 2]


def perplexity_report(
    weights: LlamaWeights,
    ids: Sequence[int] | Array,
    window: int = 256,
    dtypes: Sequence[npt.DTypeLike] = (np.float32, np.float64),
) -> PerplexityReport:
    """Teacher forced in windows of ``window`` tokens, each independent (its context restarts): the
    perplexity ``exp(mean NLL)`` of every predicted position (each window's tokens after its first), of
    the integer pipeline and of the float reference in each of ``dtypes``, and the top-1 agreement
    (integer argmax, the lowest index of the largest ``acc``, equal to the reference's argmax)."""
    if window < 2:
        raise ValueError(f"a window of {window} tokens predicts nothing: take ≥ 2")
    chunks = _windows(ids, window)
    if not chunks:
        raise ValueError("fewer than 2 tokens: nothing to predict")
    integer = IntegerLlama(weights)
    nll: list[Array] = []
    top: list[Array] = []
    for w in chunks:
        acc, e = integer.accumulators(w)
        top.append(np.argmax(acc[:-1], axis=1))
        nll.append(_nll(np.ldexp(acc[:-1].astype(np.float64), (e[:-1] - integer.f)[:, None]), w[1:]))
        del acc
    del integer  # its decoded weights, before a float reference takes their place
    int_top = np.concatenate(top)
    reference: dict[str, float] = {}
    agreement: dict[str, float] = {}
    for dtype in dtypes:
        ref = FloatLlama(weights, dtype)
        ref_nll: list[Array] = []
        ref_top: list[Array] = []
        for w in chunks:
            z = ref.logits(w)[:-1].astype(np.float64)
            ref_top.append(np.argmax(z, axis=1))
            ref_nll.append(_nll(z, w[1:]))
        del ref
        name = np.dtype(dtype).name
        reference[name] = math.exp(float(np.concatenate(ref_nll).mean()))
        agreement[name] = float((np.concatenate(ref_top) == int_top).mean())
    ppl = math.exp(float(np.concatenate(nll).mean()))
    return PerplexityReport(len(int_top), len(chunks), ppl, reference, agreement)


# --- greedy ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GreedyResult:
    """One prompt's greedy answers (each up to and including the first stop token)."""

    integer: tuple[int, ...]
    reference: tuple[int, ...]
    divergence: int | None
    """The first position where the answers differ; ``None`` when identical."""
    margin: float | None
    """The reference's top-1 minus top-2 logit at the divergence."""
    gap: float | None
    """The reference's logit of its token minus its logit of the integer pipeline's token there."""

    @property
    def identical(self) -> bool:
        return self.divergence is None

    @property
    def near_tie(self) -> bool:
        return self.margin is not None and self.margin < NEAR_TIE

    def __str__(self) -> str:
        if self.divergence is None or self.margin is None or self.gap is None:
            return f"identical ({len(self.integer)} tokens)"
        i = self.divergence
        kind = "near tie" if self.near_tie else "divergence"
        return (
            f"{kind} at token {i}: integer {self.integer[i]} vs float {self.reference[i]}, "
            f"float margin {self.margin:.4f}, gap {self.gap:.4f}"
        )


@dataclass(frozen=True)
class GreedyReport:
    results: tuple[GreedyResult, ...]

    @property
    def identical(self) -> int:
        return sum(r.identical for r in self.results)

    @property
    def near_ties(self) -> int:
        return sum(r.near_tie for r in self.results)


def _until_stop(tokens: Sequence[int], stop_id: int | None) -> tuple[int, ...]:
    out = list(tokens)
    if stop_id is not None and stop_id in out:
        out = out[: out.index(stop_id) + 1]
    return tuple(out)


def greedy_report(
    weights: LlamaWeights,
    prompts: Sequence[Sequence[int]],
    n: int = 32,
    stop_id: int | None = None,
    dtype: npt.DTypeLike = np.float64,
) -> GreedyReport:
    """``n`` greedy tokens after each prompt from the real generation graph and from the float reference
    in ``dtype``, compared up to the first ``stop_id``."""
    integer = IntegerLlama(weights)
    ints = [_until_stop(integer.generate(p, n, stop_id), stop_id) for p in prompts]
    del integer
    ref = FloatLlama(weights, dtype)
    results = []
    for prompt, mine in zip(prompts, ints, strict=True):
        theirs = tuple(ref.generate(prompt, n, stop_id))
        diff = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
        if diff is None:  # equal up to the shorter, so equal: both stop at the same stop token
            results.append(GreedyResult(mine, theirs, None, None, None))
            continue
        z = ref.logits([*prompt, *theirs[:diff]])[-1].astype(np.float64)
        first, second = np.sort(z)[-2:][::-1]
        gap = float(z[theirs[diff]] - z[mine[diff]])
        results.append(GreedyResult(mine, theirs, diff, float(first - second), gap))
    return GreedyReport(tuple(results))
