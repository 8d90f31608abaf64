"""What a party claims at each bisection position (docs/protocol.md §4).

A trace answers ``hash_at(position)`` for positions ``0 … size``. :class:`GraphTrace` is phase 1 (the
graph states ``S_{p−1}`` of a native run), :class:`ExecutionTrace` phase 2 (the VM states of a program
run, an exited state standing for every later step). Only an execution trace can prove a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from opml.ml.phase import ProgramSetup
from opml.ml.runner import RunResult
from opml.vm.fast import Trace
from opml.vm.preimage import OracleRead, OracleView, RecordingOracle
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

STATUS_VALID = 0


class PositionTrace(Protocol):
    """Claims at bisection positions ``0 … size``."""

    @property
    def size(self) -> int: ...

    def hash_at(self, position: int) -> bytes: ...


def program_state_hash(state: VMState) -> bytes:
    """The status-tagged hash (vm-spec §2.2) of ``state``: what the game stores for a program."""
    return state_hash(encode_state(state))


@dataclass(frozen=True)
class GraphTrace:
    """Phase 1 of an honest native run: position ``p`` is ``S_{p−1}``, ``p = 0 … N``."""

    run: RunResult

    @property
    def size(self) -> int:
        return len(self.run.states) - 1

    def hash_at(self, position: int) -> bytes:
        return self.run.states[position]


@dataclass(frozen=True)
class StepProof:
    """Everything the contract's one-step move needs: the pre-state, the memory proof, and the oracle
    questions whose answers must be on-chain first."""

    position: int
    state_data: bytes
    proof: bytes
    reads: tuple[OracleRead, ...]
    post_hash: bytes


class ExecutionTrace:
    """Phase 2: a program run in the fast executor with checkpoints, from its setup's initial state.

    ``size`` is the number of steps to the exit (``ProgramRunError``-free: a run that has not exited
    within ``max_steps`` is cut there, and such a trace cannot claim a valid exit).
    """

    def __init__(
        self, setup: ProgramSetup, *, max_steps: int | None = None, checkpoint_interval: int = 250_000
    ) -> None:
        self.setup = setup
        self.trace = Trace(setup.state, checkpoint_interval, max_steps, oracle=setup.oracle)
        self.initial_hash = program_state_hash(setup.state)

    @property
    def size(self) -> int:
        return int(self.trace.final_step)

    def state_at(self, position: int) -> VMState:
        return self.trace.state_at(position)

    def hash_at(self, position: int) -> bytes:
        if position == 0:
            return self.initial_hash
        return program_state_hash(self.trace.state_at(position, copy=False))

    def step_proof(self, position: int, oracle: OracleView | None = None) -> StepProof:
        """The witness of the step from ``position`` and the oracle questions it asks, as ``oracle``
        answers them (default: the setup's). A trace shared between disputes is proven with each
        dispute's own view: local values are keyed by the dispute's context."""
        pre = self.trace.state_at(position)
        witness = step_witness(pre)
        recorder = RecordingOracle(self.setup.oracle if oracle is None else oracle)
        post = pre.copy()
        post.stdout = post.stderr = None
        step(post, recorder)
        reads = tuple(recorder.reads)
        return StepProof(position, witness.state_data, witness.proof, reads, program_state_hash(post))
