"""The next move of a party, from the dispute as the chain shows it and the party's own traces
(docs/protocol.md §4). Pure: no chain access, no clock; the agents feed it and carry out its moves.

The solver plays by the rules of the protocol, whoever it plays for: a liar is a party whose traces
lie (:mod:`opml.game.lies`), not a different solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from opml.game.traces import PositionTrace


class Phase(IntEnum):
    """``IOpmlGame.Phase``."""

    NONE = 0
    DEFENSE = 1
    GRAPH = 2
    EXECUTION_CLAIM = 3
    EXECUTION = 4
    STEP = 5
    RESOLVED = 6


class Party(IntEnum):
    """``IOpmlGame.Party``."""

    NONE = 0
    SERVER = 1
    CHALLENGER = 2


@dataclass(frozen=True)
class DisputeView:
    """``IOpmlGame.Dispute`` as read from the chain."""

    dispute_id: int
    task_id: int
    challenger: str
    phase: Phase
    turn: Party
    winner: Party
    deadline: int
    lo: int
    hi: int
    node: int
    lo_hash: bytes
    hi_hash: bytes
    hi_party: Party
    mid_hash: bytes
    claimed_state: bytes
    share_claimed: bool = False

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2

    @property
    def pending(self) -> bool:
        """Whether a claim at ``mid`` awaits the verdict of the party to move."""
        return self.mid_hash != NO_CLAIM


NO_CLAIM = bytes(32)


def other(party: Party) -> Party:
    return Party.CHALLENGER if party is Party.SERVER else Party.SERVER


@dataclass(frozen=True)
class Defend:
    """The server stakes its side of a new dispute."""


@dataclass(frozen=True)
class Bisect:
    """The opening claim of a bisection."""

    claim: bytes


@dataclass(frozen=True)
class Respond:
    """A verdict on the pending claim and the mover's next claim (``NO_CLAIM`` when it ends the phase)."""

    agree: bool
    claim: bytes


@dataclass(frozen=True)
class ClaimExecution:
    steps: int
    final_state: bytes
    claimed_state: bytes


@dataclass(frozen=True)
class PlayStep:
    """Execute the step from ``position`` (the agent proves it from its execution trace)."""

    position: int


@dataclass(frozen=True)
class Timeout:
    pass


Move = Defend | Bisect | Respond | ClaimExecution | PlayStep | Timeout


@dataclass(frozen=True)
class Traces:
    """A party's traces: phase 1 (multi-phase only) and phase 2 (once its program is known)."""

    graph: PositionTrace | None
    execution: PositionTrace | None


def _bisection_trace(view: DisputeView, traces: Traces) -> PositionTrace:
    trace = traces.graph if view.phase is Phase.GRAPH else traces.execution
    if trace is None:
        raise ValueError(f"dispute {view.dispute_id}: no trace for phase {view.phase.name}")
    return trace


def timeout_move(view: DisputeView, me: Party, now: int) -> Timeout | None:
    """``Timeout`` when the other side missed its deadline; needs no trace."""
    live = view.phase not in (Phase.NONE, Phase.RESOLVED)
    return Timeout() if live and now > view.deadline and view.turn is not me else None


def next_move(view: DisputeView, me: Party, traces: Traces, now: int) -> Move | None:
    """The move ``me`` should make now, or ``None`` to wait (the other side's turn, or over)."""
    if view.phase in (Phase.NONE, Phase.RESOLVED):
        return None
    if now > view.deadline:
        return timeout_move(view, me, now)
    if view.phase is Phase.DEFENSE:
        return Defend() if view.turn is me and me is Party.SERVER else None
    if view.phase is Phase.STEP:
        return _step_move(view, me, traces)
    if view.turn is not me:
        return None
    if view.phase is Phase.EXECUTION_CLAIM:
        execution = traces.execution
        if execution is None:
            raise ValueError(f"dispute {view.dispute_id}: the execution trace is needed")
        claimed = execution_claimed_state(view, traces)
        return ClaimExecution(execution.size, execution.hash_at(execution.size), claimed)
    trace = _bisection_trace(view, traces)
    if not view.pending:
        return Bisect(trace.hash_at(view.mid))
    agree = trace.hash_at(view.mid) == view.mid_hash
    lo, hi = (view.mid, view.hi) if agree else (view.lo, view.mid)
    return Respond(agree, trace.hash_at((lo + hi) // 2) if hi - lo > 1 else NO_CLAIM)


def execution_claimed_state(view: DisputeView, traces: Traces) -> bytes:
    """The state the server's program checks (protocol §4.3): ``hiHash`` when it is the server's claim
    (always so in the single-phase mode), else the server's own ``S_k`` at ``hi``."""
    if view.hi_party is Party.SERVER:
        return view.hi_hash
    if traces.graph is None:
        raise ValueError(f"dispute {view.dispute_id}: the graph trace is needed")
    return traces.graph.hash_at(view.hi)


def _step_move(view: DisputeView, me: Party, traces: Traces) -> Move | None:
    """The step is the server's burden, but anyone may execute it: each side executes it when its own
    trace agrees with the pre-state and the outcome (``hiHash`` reached: ``hiParty`` wins) favours it."""
    execution = traces.execution
    if execution is None or execution.hash_at(view.lo) != view.lo_hash:
        return None
    hi_right = execution.hash_at(view.hi) == view.hi_hash
    winner = view.hi_party if hi_right else other(view.hi_party)
    return PlayStep(view.lo) if winner is me else None
