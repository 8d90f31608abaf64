"""A server told to lie, in a chosen way (docs/protocol.md; for demos and tests).

- ``Lie.output()``: the model's output value is altered (one byte), so only ``S_{N−1}`` is wrong;
- ``Lie.at_node(k)``: node ``k``'s output is altered and every later node computed from it, so the
  claims are wrong from ``S_k`` on;
- ``Lie.at_step(k, s)``: as ``at_node(k)``, and in phase 2 the server's VM claims leave the true run
  at step ``s`` (instead of only at the final, exited state).

In phase 2 a liar runs the node program honestly on its own claim (which exits *invalid*) and claims a
*valid* exit at the same step, or fabricates states from step ``s``: its trace leaves the truth at the
step where the dispute will end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from opml.game.traces import ExecutionTrace, StepProof
from opml.hashing import keccak256
from opml.ml.format import Model
from opml.ml.runner import RunResult, run_from, run_model

STATUS_UNFINISHED = 3
STATUS_VALID = 0


@dataclass(frozen=True)
class Lie:
    """Where a server lies: at node ``node`` (``None``: the output, i.e. the last node) and, in
    phase 2, from VM step ``step`` (``None``: only the final state)."""

    node: int | None = None
    step: int | None = None

    @classmethod
    def output(cls) -> Lie:
        return cls()

    @classmethod
    def at_node(cls, k: int) -> Lie:
        return cls(node=k)

    @classmethod
    def at_step(cls, k: int, s: int) -> Lie:
        if s < 1:
            raise ValueError("a lie at step s needs s ≥ 1: step 0 is the registered initial state")
        return cls(node=k, step=s)

    def run(self, model: Model, x: Any) -> RunResult:
        """The run the liar claims: node ``k``'s output with its first byte flipped, later nodes
        computed from it."""
        honest = run_model(model, x)
        k = len(model.nodes) - 1 if self.node is None else self.node
        values = list(honest.values[: k + 2])
        altered = np.array(values[k + 1], copy=True)
        altered.reshape(-1).view(np.uint8)[0] ^= 0x01
        values[k + 1] = altered
        return run_from(model, values, k + 1)


def _with_status(h: bytes, status: int) -> bytes:
    return bytes([status]) + bytes(h[1:])


class LyingExecutionTrace:
    """A liar's phase-2 claims: the honest run of its program up to the lie, then fabricated states,
    ending in a valid exit at the honest run's final step."""

    def __init__(self, honest: ExecutionTrace, from_step: int | None):
        self.honest = honest
        self.from_step = honest.size if from_step is None else min(from_step, honest.size)

    @property
    def size(self) -> int:
        return self.honest.size

    def hash_at(self, position: int) -> bytes:
        if position < self.from_step:
            return self.honest.hash_at(position)
        if position >= self.size:
            return _with_status(self.honest.hash_at(self.size), STATUS_VALID)
        fake = keccak256(b"opml lie" + self.honest.hash_at(position))
        return _with_status(fake, STATUS_UNFINISHED)

    def step_proof(self, position: int, oracle: Any = None) -> StepProof:
        """The liar plays the disputed step too (from the agreed, honest pre-state): it loses by it."""
        return self.honest.step_proof(position, oracle)
