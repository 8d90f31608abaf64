"""A registered LLM: its model file (one ``task_graph``, ml-spec §10.5) and its card, a JSON file beside
it (``<model>.llm.json``) that the protocol never reads: where the tokenizer is (none for a synthetic
model, ml-spec §10.7), the task sizes, the stop token and each node's label (step, layer, role) for
reports and ``opml model inspect``.

``import_gguf`` writes both from a GGUF; ``LlmModel.load`` reads them back; ``LlmModel.task`` turns a
text prompt into a task input, with a one-line ``ValueError`` for whatever the registration cannot run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from opml.ml.format import Model, Op, read_model, write_model
from opml.ml.gguf_import import read_gguf
from opml.ml.llama import NodeLabel, TaskGraph, generated_ids, task_graph, task_input
from opml.ml.runner import Array, RunResult, run_model
from opml.ml.tokenizer import Tokenizer

CARD_FORMAT = "opml-llm-1"


def card_path(model_path: str | Path) -> Path:
    """Where the card of the model file ``model_path`` is."""
    path = Path(model_path)
    return path.with_name(path.stem + ".llm.json")


@dataclass(frozen=True)
class LlmCard:
    """What a model file of a generation graph does not say: the tokenizer's GGUF, the task sizes, the
    stop token, and each node's label."""

    gguf: Path | None
    """The GGUF whose tokenizer the model uses; ``None``: none (a synthetic model takes token ids)."""
    max_prompt: int
    max_new: int
    stop_id: int
    layers: int
    labels: tuple[NodeLabel, ...]

    def to_json(self) -> str:
        roles = sorted({label.role for label in self.labels})
        code = {role: i for i, role in enumerate(roles)}
        return json.dumps(
            {
                "format": CARD_FORMAT,
                "gguf": None if self.gguf is None else str(self.gguf),
                "max_prompt": self.max_prompt,
                "max_new": self.max_new,
                "stop_id": self.stop_id,
                "layers": self.layers,
                "roles": roles,
                # per node: step, layer (−1 outside the layers), role index
                "labels": [
                    [lb.step, -1 if lb.layer is None else lb.layer, code[lb.role]] for lb in self.labels
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> LlmCard:
        try:
            raw = json.loads(text)
            if raw.get("format") != CARD_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            roles = raw["roles"]
            labels = tuple(
                NodeLabel(s, None if layer < 0 else layer, roles[r]) for s, layer, r in raw["labels"]
            )
            gguf = None if raw["gguf"] is None else Path(raw["gguf"])
            return cls(gguf, raw["max_prompt"], raw["max_new"], raw["stop_id"], raw["layers"], labels)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{where} is not an LLM card of opML ({exc}): import the GGUF again") from None


@dataclass(frozen=True)
class LlmModel:
    """A generation model file (at ``path``) with its card and tokenizer."""

    path: Path
    model: Model
    card: LlmCard
    tokenizer: Tokenizer | None

    @classmethod
    def load(cls, model_path: str | Path) -> LlmModel:
        path = card_path(model_path)
        if not path.is_file():
            raise ValueError(
                f"{model_path} has no LLM card {path.name}: it is not a model from `opml model import`"
            )
        card = LlmCard.from_json(path.read_text(), path.name)
        model = read_model(model_path)
        if len(card.labels) != len(model.nodes):
            raise ValueError(
                f"{path.name} labels {len(card.labels)} nodes, {model_path} has {len(model.nodes)}"
            )
        tokenizer = None if card.gguf is None else _tokenizer(card.gguf)
        return cls(Path(model_path), model, card, tokenizer)

    @property
    def vocab(self) -> int:
        """The rows of the embedding (the token ids the model takes)."""
        node = next(n for n in self.model.nodes if n.op is Op.EMBEDDING)
        return node.params[2]

    def prompt_ids(self, text: str, *, chat: bool = True) -> list[int]:
        """The prompt's token ids: the chat template around ``text`` (``chat``), or ``text`` as it is."""
        if self.tokenizer is None:
            raise ValueError(f"{self.path} has no tokenizer (a synthetic model): give the prompt's token ids")
        return self.tokenizer.encode(self.tokenizer.chat_prompt(text) if chat else text)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; without a tokenizer, the ids themselves (``⟨7⟩⟨42⟩``)."""
        if self.tokenizer is None:
            return "".join(f"⟨{i}⟩" for i in ids)
        return self.tokenizer.decode(ids)

    def token_bytes(self, token: int) -> bytes:
        """The UTF-8 bytes ``token`` stands for (a piece of a character, possibly)."""
        if self.tokenizer is None:
            return f"⟨{token}⟩".encode()
        return self.tokenizer.token_bytes(token)

    def task(self, prompt: list[int], new_tokens: int) -> npt.NDArray[np.int32]:
        """The task input for ``prompt`` (ids) and ``new_tokens``; a one-line ``ValueError`` for a size
        the registration does not serve or an id outside the vocabulary."""
        vocab = self.vocab
        bad = [t for t in prompt if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary 0 … {vocab - 1}")
        return task_input(prompt, new_tokens, self.card.max_prompt, self.card.max_new)

    def answer(self, output: Array) -> list[int]:
        """The generated ids of a task's output, up to and including the stop token."""
        return generated_ids(np.asarray(output), self.card.stop_id)

    def generate(self, x: npt.NDArray[np.int32], on_token: Callable[[int], None] | None = None) -> RunResult:
        """Run the task ``x``, calling ``on_token`` with each generated id as its step ends."""
        prompt_len, count = int(x[0]), int(x[1])
        emits = {k: label.step for k, label in enumerate(self.card.labels) if label.role == "emit"}

        def streamed(k: int, value: Array) -> None:
            step = emits.get(k)
            if on_token is not None and step is not None and prompt_len <= step + 1 < prompt_len + count:
                on_token(int(np.asarray(value)[2 + step + 1]))

        return run_model(self.model, x, streamed)


@lru_cache(maxsize=4)
def _tokenizer(gguf: Path) -> Tokenizer:
    """The tokenizer of a GGUF, parsed once per process (gguf's reader takes seconds over 49k tokens)."""
    return Tokenizer.from_gguf(gguf)


def import_gguf(gguf: str | Path, out: str | Path, max_prompt: int, max_new: int) -> TaskGraph:
    """Write the model file ``out`` (the task graph of the GGUF's weights) and its card beside it."""
    gguf = Path(gguf).resolve()
    weights = read_gguf(gguf)  # first: its errors name what is wrong with the file
    tokenizer = _tokenizer(gguf)
    if tokenizer.vocab_size != weights.config.vocab:
        raise ValueError(
            f"{gguf.name}: {tokenizer.vocab_size} tokens but an embedding of {weights.config.vocab}"
        )
    graph = task_graph(weights, max_prompt, max_new)
    write_model(graph.model, out)
    card = LlmCard(gguf, max_prompt, max_new, tokenizer.eos_id, weights.config.layers, graph.labels)
    card_path(out).write_text(card.to_json())
    return graph
