"""A move-by-move driver of ``OpmlGame`` disputes against ``AlphabetVM`` (no MIPS), and a Python
reference of the same rules, for the adversarial matrix of ``test_game_mock.py``.

The world of a task (docs/protocol.md):

- **Phase 1.** A task's graph has ``N`` nodes; value ``v_0`` is the input, node ``j`` writes ``v_{j+1}``.
  ``keys[j]`` is the chunk-Merkle key of ``v_j`` (``keys[0]`` the input key, ``keys[N]`` the output
  key; the values in between are random bytes). Position ``p`` (``0 … N``) is
  ``S_{p−1} = chunkMerkleKey(keys[0] ‖ … ‖ keys[p])``; position 0 is computed on-chain
  (``initialGraphState``), position ``N`` is the result's ``finalState``. A server that lies from node
  ``i`` on uses other values ``v_{i+1} … v_N`` (and another output): its positions ``0 … i`` are the
  truth, ``i+1 … N`` are not. A "garbage" liar claims random hashes past its lie.
- **Phase 2.** ``AlphabetVM(haltAt = T, haltStatus)`` stands in for the node (or whole-model)
  program; it ignores the local values, so the test picks the VM whose exit status is the program's
  verdict on the disputed node: valid (0) when the server's ``S_k`` is the true successor of the agreed
  ``S_{k−1}``, invalid (1) otherwise (:func:`node_verdict`). Position ``t`` is the state after
  ``min(t, T)`` steps. A phase-2 liar claims a valid exit after ``steps`` steps, with states that differ
  from the truth from step ``L`` on: real VM states ("vm": ``(t + OFFSET, running)``, whose preimages it
  holds, so it can step from them) or hashes nobody can open ("garbage").

**Rounds and moves** (protocol §4.1). A bisection over ``n ≥ 2`` positions is played in rounds, one per
halving. In a phase's round ``j`` one party (the *claimant*: the challenger for even ``j``, the server
for odd ``j``) claims the state at the midpoint and the other (the *judge*) gives its verdict on it.
Transactions: the challenger's ``bisect`` carries its claim of round 0; the judge of round ``j`` then
sends ``respond``, which carries its verdict of round ``j`` and its claim of round ``j + 1`` (none in
the phase's last round). Rounds are numbered over the whole dispute from 0 (phase 1's first): this
``rnd`` is what ``flip`` names. A party's *moves* are its own ``bisect``/``respond`` transactions,
numbered from 0 within each phase: this is what ``quit_at = (phase, i)`` names.

Parties are plans (:class:`ServerPlan`, :class:`ChallengerPlan`) and :func:`next_move` is their
strategy. :class:`Rules` is the Python reference of the contract's rules; :func:`predict` plays the
plans on it, :meth:`Table.play` plays them on-chain (checking the contract against a :class:`Rules`
replica after every move) and records what happened, and :meth:`Table.settle` ends everything (finalize
or close, withdraw) and checks that the game holds no wei.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

import ape
from eth_abi import encode

from opml.game.solver import Party, Phase
from opml.oracle import ChunkTree, localize_ident
from opml.vm.hashing import keccak256

# --- parameters -----------------------------------------------------------------------------------

SERVER_BOND = 10**17 + 1  # odd: the requester's half (bond − bond/2) is the larger one
CHALLENGER_BOND = 6 * 10**16 + 3
REWARD = 3 * 10**16 + 7
MOVE_WINDOW = 600
MIN_WINDOW = 3600
WINDOW = 2 * 3600
COMMITMENT = bytes([3]) + keccak256(b"mock model manifest")[1:]
ZERO = bytes(32)

RUNNING, VALID, INVALID = 3, 0, 1
OFFSET = 1000
"""A "vm" liar's states past its lie are at ``t + OFFSET``, far from ``haltAt``."""

BISECTION = (Phase.GRAPH, Phase.EXECUTION)


class TaskStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ANSWERED = 2
    FINALIZED = 3
    REJECTED = 4


def other(party: Party) -> Party:
    return Party.CHALLENGER if party == Party.SERVER else Party.SERVER


def max_rounds(n: int) -> int:
    """``⌈log2 n⌉`` (protocol §4.1): the most rounds (halvings) a bisection over ``n`` positions takes."""
    return (n - 1).bit_length() if n > 1 else 0


def min_rounds(n: int) -> int:
    """``⌊log2 n⌋``: the fewest rounds a bisection over ``n`` positions takes."""
    return n.bit_length() - 1


def path_rounds(n: int, k: int) -> int:
    """Rounds of the bisection of ``0 … n`` (``mid = ⌊(lo + hi)/2⌋``) that ends at ``[k, k + 1]``."""
    lo, hi, rounds = 0, n, 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if k >= mid else (lo, mid)
        rounds += 1
    assert (lo, hi) == (k, k + 1)
    return rounds


def rand_hash(rng: random.Random, type_byte: int) -> bytes:
    return bytes([type_byte]) + rng.randbytes(31)


# --- AlphabetVM in Python -------------------------------------------------------------------------


def vm_state(position: int, status: int) -> bytes:
    return encode(["uint64", "uint8"], [position, status])


def vm_hash(state: bytes) -> bytes:
    """``AlphabetVM.stateHash``: keccak256 with the top byte replaced by the status."""
    return bytes([state[63]]) + keccak256(state)[1:]


def vm_step(state: bytes, halt_at: int, halt_status: int) -> bytes:
    """``AlphabetVM.step``: the post-state (bytes)."""
    position, status = int.from_bytes(state[:32], "big"), state[63]
    if status != RUNNING:
        return state
    position += 1
    return vm_state(position, halt_status if position == halt_at else RUNNING)


PROGRAM = vm_hash(vm_state(0, RUNNING))
"""``AlphabetVM.stateHash(initialState())``: both registered programs of every mock model."""


@dataclass(frozen=True)
class Trace:
    """A party's phase-2 claims: ``steps``, and the state at each position ``0 … steps``.

    The truth is the VM's run (``lie_from=None``); a liar's states differ from step ``lie_from`` on
    and end in a valid exit."""

    halt_at: int
    halt_status: int
    steps: int | None = None
    lie_from: int | None = None
    style: str = "vm"  # "vm": states it can open; "garbage": hashes nobody can open
    seed: int = 0

    @property
    def claimed_steps(self) -> int:
        return self.halt_at if self.steps is None else self.steps

    def truth(self, t: int) -> bytes:
        if t < self.halt_at:
            return vm_state(t, RUNNING)
        return vm_state(self.halt_at, self.halt_status)

    def state(self, t: int) -> bytes | None:
        """The state data behind position ``t``, or None where the party cannot open it."""
        if self.lie_from is None or t < self.lie_from:
            return self.truth(t)
        if self.style == "garbage":
            return None
        if t == self.claimed_steps:
            return vm_state(t, VALID)
        return vm_state(t + OFFSET, RUNNING)

    def hash(self, t: int) -> bytes:
        state = self.state(t)
        if state is not None:
            return vm_hash(state)
        rng = random.Random(f"garbage-{self.seed}-{t}")
        return rand_hash(rng, VALID if t == self.claimed_steps else RUNNING)

    def opens(self, h: bytes) -> bytes | None:
        """The state data this party holds whose hash is ``h`` (None if none)."""
        for t in range(self.claimed_steps + 1):
            state = self.state(t)
            if state is not None and vm_hash(state) == bytes(h):
                return state
        return None


# --- phase 1: the graph ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """The values' keys of one run of the graph (``keys[0]`` input, ``keys[N]`` output)."""

    keys: tuple[bytes, ...]
    output: bytes

    @property
    def n(self) -> int:
        return len(self.keys) - 1

    @cached_property
    def positions(self) -> tuple[bytes, ...]:
        """Position ``p`` = ``S_{p−1}`` = chunk-Merkle key of ``keys[0 … p]``."""
        return tuple(ChunkTree.from_bytes(b"".join(self.keys[: p + 1])).key for p in range(self.n + 1))

    @cached_property
    def tree(self):
        return ChunkTree.from_bytes(b"".join(self.keys))

    @property
    def final_state(self) -> bytes:
        return self.tree.key

    def submit_args(self) -> tuple:
        """``(output, finalState, stateRoot, siblings)`` of ``submitResult``."""
        return (self.output, self.final_state, self.tree.root, list(self.tree.siblings(self.n)))


def _value_key(rng: random.Random) -> bytes:
    return ChunkTree.from_bytes(rng.randbytes(rng.randint(1, 100))).key


def honest_graph(input_bytes: bytes, n: int, seed: int) -> Graph:
    rng = random.Random(f"graph-{seed}")
    keys = [ChunkTree.from_bytes(input_bytes).key] + [_value_key(rng) for _ in range(n - 1)]
    output = rng.randbytes(rng.randint(1, 80))
    return Graph((*keys, ChunkTree.from_bytes(output).key), output)


def lying_graph(truth: Graph, from_node: int, seed: int) -> Graph:
    """The truth up to value ``v_{from_node}``; other values ``v_{from_node+1} … v_N`` and output."""
    assert 0 <= from_node < truth.n
    rng = random.Random(f"lie-{seed}-{from_node}")
    keys = list(truth.keys[: from_node + 1]) + [_value_key(rng) for _ in range(truth.n - from_node - 1)]
    output = truth.output + rng.randbytes(rng.randint(1, 40))
    graph = Graph((*keys, ChunkTree.from_bytes(output).key), output)
    assert all(
        a != b
        for a, b in zip(graph.positions[from_node + 1 :], truth.positions[from_node + 1 :], strict=True)
    )
    return graph


def node_verdict(truth: Graph, k: int, agreed: bytes, claimed: bytes) -> int:
    """The node program's exit status on node ``k``: valid iff the server's ``S_k`` (``claimed``) is the
    true successor of the agreed ``S_{k−1}`` (``agreed``). A state commits to every value before it and
    a liar's values past its first wrong one are random, so that is: both are the truth (positions
    ``k`` and ``k + 1``)."""
    ok = bytes(agreed) == truth.positions[k] and bytes(claimed) == truth.positions[k + 1]
    return VALID if ok else INVALID


# --- parties --------------------------------------------------------------------------------------


def _lie(role: str, seed: int, phase: Phase, rnd: int) -> bytes:
    """A claim nobody can open: what a party posts in a round it lies in (``flip``)."""
    return rand_hash(random.Random(f"flip-{role}-{seed}-{int(phase)}-{rnd}"), 3)


@dataclass
class ServerPlan:
    """A server: it claims its own states (``graph_claim`` in phase 1, ``trace`` in phase 2) and agrees
    with a challenger's claim iff it equals its own claim there, except in the rounds of ``flip``
    (numbered over the dispute from 0), where its part of the round is a lie: as claimant it posts a
    random hash, as judge it gives the opposite verdict.

    ``claimExecution``: ``steps`` and ``finalState`` from ``trace``; ``claimedState`` is ``hiHash``
    where that is the server's claim (it must be), else the server's own position at ``hi``, or a random
    hash where that equals the challenger's ``hiHash`` (it must differ; only after a flipped verdict).

    ``quit_at``: ``(phase, i)`` (it does not make its ``i``-th move of that phase), ``"claim"`` (no
    ``claimExecution``), ``"step"`` (it does not step) or None."""

    account: object
    graph: Graph
    trace: Trace
    garbage_from: int | None = None  # phase-1 claims at positions ≥ this (below N) are random
    quit_at: object = None
    seed: int = 0
    flip: frozenset = frozenset()

    def graph_claim(self, p: int) -> bytes:
        if self.garbage_from is not None and self.garbage_from <= p < self.graph.n:
            return rand_hash(random.Random(f"g1-{self.seed}-{p}"), 3)
        return self.graph.positions[p]

    def own(self, phase: Phase, p: int) -> bytes:
        return self.graph_claim(p) if phase == Phase.GRAPH else self.trace.hash(p)

    def claim(self, phase: Phase, p: int, rnd: int) -> bytes:
        return _lie("server", self.seed, phase, rnd) if rnd in self.flip else self.own(phase, p)

    def verdict(self, phase: Phase, p: int, claim: bytes, rnd: int) -> bool:
        return (bytes(claim) == self.own(phase, p)) != (rnd in self.flip)

    def claimed_state(self, view: View) -> bytes:
        if view.hi_party == Party.SERVER:
            return view.hi_hash
        own = self.graph_claim(view.hi)
        return own if own != view.hi_hash else rand_hash(random.Random(f"claimed-{self.seed}"), 3)

    @property
    def honest_play(self) -> bool:
        return not self.flip and self.garbage_from is None


@dataclass
class ChallengerPlan:
    """A challenger who knows the truth (``graph``, ``trace``): it claims true states and judges the
    server's claims by the truth, except: ``flip`` (rounds, numbered over the dispute from 0) where its
    part of the round is a lie (as claimant a random hash, as judge the opposite verdict), ``always``
    (every verdict is that), ``quit_at = (phase, i)`` (it does not make its ``i``-th move of that
    phase: ``(phase, 0)`` is its ``bisect``), ``steps=False`` (it never steps)."""

    account: object
    graph: Graph  # the true graph
    trace: Trace  # the true VM run
    flip: frozenset = frozenset()
    always: bool | None = None
    quit_at: object = None
    steps: bool = True
    seed: int = 0

    @property
    def honest(self) -> bool:
        return not self.flip and self.always is None

    def own(self, phase: Phase, p: int) -> bytes:
        return self.graph.positions[p] if phase == Phase.GRAPH else self.trace.hash(p)

    def claim(self, phase: Phase, p: int, rnd: int) -> bytes:
        return _lie("challenger", self.seed, phase, rnd) if rnd in self.flip else self.own(phase, p)

    def verdict(self, phase: Phase, p: int, claim: bytes, rnd: int) -> bool:
        if self.always is not None:
            return self.always
        return (bytes(claim) == self.own(phase, p)) != (rnd in self.flip)


# --- the rules in Python --------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The fields of ``IOpmlGame.Dispute`` the game's rules change (all but the fixed ones, the deadline
    and ``localsLoaded``)."""

    phase: Phase
    turn: Party
    winner: Party
    hi_party: Party
    lo: int
    hi: int
    node: int
    lo_hash: bytes
    hi_hash: bytes
    mid_hash: bytes
    agreed: bytes
    claimed: bytes

    @classmethod
    def of(cls, d) -> View:
        """The view of a dispute read from the chain (``game.dispute(id)``)."""
        return cls(
            Phase(d.phase),
            Party(d.turn),
            Party(d.winner),
            Party(d.hiParty),
            d.lo,
            d.hi,
            d.node,
            bytes(d.loHash),
            bytes(d.hiHash),
            bytes(d.midHash),
            bytes(d.agreedState),
            bytes(d.claimedState),
        )

    @property
    def mid(self) -> int:
        return self.lo + (self.hi - self.lo) // 2


class RuleError(Exception):
    """A move the rules refuse (the contract's error name)."""


@dataclass
class Rules:
    """The Python reference of one dispute under protocol §4 (what ``OpmlGame`` does from
    ``challenge`` on). ``events`` are the game's events about the dispute, as tuples:
    ``("Bisected", phase, party, position, claim)``, ``("Responded", phase, party, position, agree)``,
    ``("PhaseOneEnded", node)``, ``("ExecutionClaimed", steps, finalState, claimedState)``,
    ``("StepPlayed", position, postState)``, ``("DisputeResolved", winner, byTimeout)``."""

    multi: bool
    vm: Trace  # the VM the step runs on (haltAt, haltStatus)
    input_key: bytes
    program: bytes = PROGRAM
    commitment: bytes = COMMITMENT
    phase: Phase = Phase.NONE
    turn: Party = Party.NONE
    winner: Party = Party.NONE
    hi_party: Party = Party.NONE
    lo: int = 0
    hi: int = 0
    node: int = 0
    lo_hash: bytes = ZERO
    hi_hash: bytes = ZERO
    mid_hash: bytes = ZERO
    agreed: bytes = ZERO
    claimed: bytes = ZERO
    events: list = field(default_factory=list)

    @classmethod
    def open(cls, multi: bool, n: int, input_key: bytes, final_state: bytes, vm: Trace) -> Rules:
        """The dispute as ``challenge`` leaves it."""
        r = cls(multi, vm, bytes(input_key))
        r.hi_party, r.hi_hash = Party.SERVER, bytes(final_state)
        if multi:
            r.phase, r.hi = Phase.GRAPH, n
            r.lo_hash = ChunkTree.from_bytes(bytes(input_key)).key  # S_{−1}
            if n == 1:
                r._enter_execution()
            else:
                r.turn = Party.CHALLENGER
        else:
            r._enter_execution()
        return r

    def view(self) -> View:
        return View(
            self.phase,
            self.turn,
            self.winner,
            self.hi_party,
            self.lo,
            self.hi,
            self.node,
            self.lo_hash,
            self.hi_hash,
            self.mid_hash,
            self.agreed,
            self.claimed,
        )

    @property
    def mid(self) -> int:
        return self.lo + (self.hi - self.lo) // 2

    def _mover(self, party: Party):
        if self.phase == Phase.RESOLVED:
            raise RuleError("WrongPhase")
        if party != self.turn:
            raise RuleError("NotYourTurn")

    def _claim(self, claim: bytes):
        if bytes(claim) == ZERO:
            raise RuleError("InvalidClaim")
        self.mid_hash = bytes(claim)
        self.events.append(("Bisected", self.phase, self.turn, self.mid, self.mid_hash))
        self.turn = other(self.turn)

    def bisect(self, party: Party, claim: bytes):
        self._mover(party)
        if self.phase not in BISECTION:
            raise RuleError("WrongPhase")
        if self.mid_hash != ZERO:
            raise RuleError("WrongMove")
        self._claim(claim)

    def respond(self, party: Party, agree: bool, claim: bytes):
        self._mover(party)
        if self.phase not in BISECTION:
            raise RuleError("WrongPhase")
        if self.mid_hash == ZERO:
            raise RuleError("WrongMove")
        mid, phase = self.mid, self.phase
        if agree:
            self.lo, self.lo_hash = mid, self.mid_hash
        else:
            self.hi, self.hi_hash, self.hi_party = mid, self.mid_hash, other(party)
        self.mid_hash = ZERO
        self.events.append(("Responded", phase, party, mid, agree))
        if self.hi - self.lo > 1:
            self._claim(claim)
            return
        if bytes(claim) != ZERO:
            raise RuleError("InvalidClaim")
        if phase == Phase.GRAPH:
            self._enter_execution()
        else:
            self.phase, self.turn = Phase.STEP, Party.SERVER

    def _enter_execution(self):
        if self.multi:
            self.node = self.lo
            self.events.append(("PhaseOneEnded", self.node))
        self.phase, self.turn = Phase.EXECUTION_CLAIM, Party.SERVER

    def claim_execution(self, party: Party, steps: int, final_state: bytes, claimed: bytes):
        self._mover(party)
        if self.phase != Phase.EXECUTION_CLAIM:
            raise RuleError("WrongPhase")
        if steps == 0 or bytes(final_state)[0] != VALID:
            raise RuleError("NotAValidExit")
        if (bytes(claimed) == self.hi_hash) != (self.hi_party == Party.SERVER) or bytes(claimed) == ZERO:
            raise RuleError("InconsistentClaim")
        if self.multi:
            self.agreed = self.lo_hash
        self.claimed = bytes(claimed)
        self.lo, self.hi, self.lo_hash, self.hi_hash = 0, steps, self.program, bytes(final_state)
        self.hi_party = Party.SERVER
        self.events.append(("ExecutionClaimed", steps, bytes(final_state), self.claimed))
        if steps == 1:
            self.phase, self.turn = Phase.STEP, Party.SERVER
        else:
            self.phase, self.turn = Phase.EXECUTION, Party.CHALLENGER

    def step(self, state: bytes):
        if self.phase != Phase.STEP:
            raise RuleError("WrongPhase")
        if vm_hash(state) != self.lo_hash:
            raise RuleError("WrongPreState")
        post = vm_hash(vm_step(state, self.vm.halt_at, self.vm.halt_status))
        self.events.append(("StepPlayed", self.lo, post))
        self._resolve(self.hi_party if post == self.hi_hash else other(self.hi_party), False)

    def timeout(self):
        if self.phase == Phase.RESOLVED:
            raise RuleError("WrongPhase")
        self._resolve(other(self.turn), True)

    def _resolve(self, winner: Party, by_timeout: bool):
        self.phase, self.winner = Phase.RESOLVED, winner
        self.events.append(("DisputeResolved", winner, by_timeout))

    def local_values(self) -> dict:
        """``ident → (value, size)`` that ``loadLocalValues`` writes (protocol §4.3); None: not written."""
        if self.multi:
            k = self.node.to_bytes(4, "little") + bytes(28)
            return {
                1: (self.commitment, 32),
                2: (k, 4),
                3: (self.agreed, 32),
                4: (self.claimed, 32),
            }
        return {1: (self.commitment, 32), 2: (self.input_key, 32), 3: (self.claimed, 32), 4: None}


# --- the parties' strategy ------------------------------------------------------------------------


@dataclass
class Transcript:
    """A dispute as played (:meth:`Table.play`) or predicted (:func:`predict`).

    ``txs``: ``(kind, phase, party)`` per transaction that moved the dispute, ``kind`` one of ``bisect``,
    ``respond``, ``claim``, ``step`` (party: who stepped), ``timeout`` (party: whose turn it was);
    ``events``: the game's events about it, as in :class:`Rules`."""

    txs: list = field(default_factory=list)
    events: list = field(default_factory=list)
    winner: Party = Party.NONE
    by_timeout: bool | None = None
    node: int | None = None  # k, once phase 1 has ended (multi-phase)
    agreed: bytes | None = None  # agreedState, once claimed (multi-phase)
    claimed: bytes | None = None  # claimedState, once claimed
    step_lo: int | None = None  # the phase-2 position of the one step, once reached
    dispute_id: int | None = None
    gates: set = field(default_factory=set)  # phases where loadLocalValues was checked to revert
    loaded: Phase | None = None  # the phase where loadLocalValues was called

    def count(self, name: str, phase: Phase) -> int:
        return sum(1 for e in self.events if e[0] == name and e[1] == phase)

    @property
    def rounds(self) -> dict:
        """Halvings (``Responded`` events) per bisection phase."""
        return {p: self.count("Responded", p) for p in BISECTION}

    @property
    def claims(self) -> dict:
        """Claims (``Bisected`` events) per bisection phase."""
        return {p: self.count("Bisected", p) for p in BISECTION}

    @property
    def rnd(self) -> int:
        """Rounds played so far, over the dispute."""
        return sum(1 for kind, _, _ in self.txs if kind == "respond")

    def moves(self, phase: Phase, party: Party | None = None) -> int:
        """``bisect``/``respond`` transactions in ``phase`` (by ``party``)."""
        return sum(
            1
            for kind, ph, p in self.txs
            if kind in ("bisect", "respond") and ph == phase and (party is None or p == party)
        )

    def kinds(self) -> list:
        return [kind for kind, _, _ in self.txs]

    @property
    def outcome(self) -> tuple:
        return (self.winner, self.by_timeout, self.node, self.agreed, self.claimed, self.step_lo)

    def finish(self, view: View, multi: bool):
        """Fills the outcome from the resolved dispute's ``view``."""
        [resolved] = [e for e in self.events if e[0] == "DisputeResolved"]
        assert view.phase == Phase.RESOLVED and view.winner == resolved[1] != Party.NONE
        self.winner, self.by_timeout = resolved[1], resolved[2]
        names = {e[0] for e in self.events}
        self.node = view.node if "PhaseOneEnded" in names else None
        if "ExecutionClaimed" in names:
            self.claimed = view.claimed
            self.agreed = view.agreed if multi else None


def next_move(view: View, server: ServerPlan, challenger: ChallengerPlan, tr: Transcript, vm: Trace):
    """What the party whose turn it is does: ``("timeout",)`` (it does not move), ``("bisect", claim)``,
    ``("respond", agree, claim)``, ``("claim", steps, finalState, claimedState)`` or
    ``("step", party, stateData)``."""
    if view.phase in BISECTION:
        party = view.turn
        plan = server if party == Party.SERVER else challenger
        if plan.quit_at == (view.phase, tr.moves(view.phase, party)):
            return ("timeout",)
        rnd = tr.rnd
        if view.mid_hash == ZERO:
            return ("bisect", plan.claim(view.phase, view.mid, rnd))
        agree = plan.verdict(view.phase, view.mid, view.mid_hash, rnd)
        lo, hi = (view.mid, view.hi) if agree else (view.lo, view.mid)
        claim = plan.claim(view.phase, lo + (hi - lo) // 2, rnd + 1) if hi - lo > 1 else ZERO
        return ("respond", agree, claim)
    if view.phase == Phase.EXECUTION_CLAIM:
        if server.quit_at == "claim":
            return ("timeout",)
        steps = server.trace.claimed_steps
        return ("claim", steps, server.trace.hash(steps), server.claimed_state(view))
    if view.phase == Phase.STEP:
        party, state = step_choice(server, challenger, view, vm)
        return ("timeout",) if party is None else ("step", party, state)
    raise AssertionError(f"no move in phase {view.phase!r}")


def step_choice(server: ServerPlan, challenger: ChallengerPlan, view: View, vm: Trace):
    """Who steps: a party that holds the state data of ``loHash`` and for which the step (run by the VM
    ``vm``: post-state ``hiHash`` → ``hiParty`` wins, else the other) is a win; ``(party, stateData)``,
    or ``(None, None)`` if nobody will (the step then times out against the server)."""
    for party, plan in ((Party.SERVER, server), (Party.CHALLENGER, challenger)):
        if party == Party.SERVER and server.quit_at == "step":
            continue
        if party == Party.CHALLENGER and not challenger.steps:
            continue
        state = plan.trace.opens(view.lo_hash)
        if state is None:
            continue
        post = vm_hash(vm_step(state, vm.halt_at, vm.halt_status))
        winner = view.hi_party if post == view.hi_hash else other(view.hi_party)
        if winner == party:
            return party, state
    return None, None


def tx_of(move: tuple, view: View) -> tuple:
    kind = move[0]
    return (kind, view.phase, move[1] if kind == "step" else view.turn)


def apply_move(rules: Rules, party: Party, move: tuple):
    kind = move[0]
    if kind == "timeout":
        rules.timeout()
    elif kind == "bisect":
        rules.bisect(party, move[1])
    elif kind == "respond":
        rules.respond(party, move[1], move[2])
    elif kind == "claim":
        rules.claim_execution(party, *move[1:])
    else:
        assert kind == "step"
        rules.step(move[2])


def predict(server: ServerPlan, challenger: ChallengerPlan, multi_phase: bool, vm_status: int) -> Transcript:
    """The dispute played by the rules in Python (:class:`Rules`), with the VM exiting with
    ``vm_status``."""
    vm = Trace(server.trace.halt_at, vm_status)
    g = server.graph
    rules = Rules.open(multi_phase, g.n, g.keys[0], g.final_state, vm)
    tr = Transcript()
    for _ in range(1000):
        view = rules.view()
        if view.phase == Phase.RESOLVED:
            break
        if view.phase == Phase.STEP:
            tr.step_lo = view.lo
        move = next_move(view, server, challenger, tr, vm)
        tr.txs.append(tx_of(move, view))
        apply_move(rules, view.turn, move)
    else:
        raise AssertionError("the predicted dispute did not end")
    tr.events = list(rules.events)
    tr.finish(rules.view(), multi_phase)
    return tr


def phase_one(server: ServerPlan, challenger: ChallengerPlan) -> Rules | None:
    """Phase 1 in Python up to ``claimExecution`` included (it does not depend on the VM); None if the
    dispute ends before."""
    rules = Rules.open(True, server.graph.n, server.graph.keys[0], server.graph.final_state, server.trace)
    tr = Transcript()
    while rules.phase in (Phase.GRAPH, Phase.EXECUTION_CLAIM):
        view = rules.view()
        move = next_move(view, server, challenger, tr, server.trace)
        tr.txs.append(tx_of(move, view))
        apply_move(rules, view.turn, move)
    return None if rules.phase == Phase.RESOLVED else rules


# --- on-chain -------------------------------------------------------------------------------------


class Ledger:
    """Wei each account sent to the game and withdrew from it."""

    def __init__(self):
        self.paid: Counter = Counter()
        self.got: Counter = Counter()

    def net(self, account) -> int:
        a = getattr(account, "address", account)
        return self.got[a] - self.paid[a]


@dataclass
class Table:
    """A deployed ``OpmlGame`` with its ``AlphabetVM``, a keeper (a third party that calls
    ``timeout``/``finalize``/``closeDispute``/``loadLocalValues``) and a ledger."""

    game: object
    vm: object
    oracle: object
    keeper: object
    chain: object
    ledger: Ledger = field(default_factory=Ledger)

    disputes: dict = field(default_factory=dict)  # task id → dispute ids opened through `challenge`
    transcripts: dict = field(default_factory=dict)  # dispute id → Transcript
    replicas: dict = field(default_factory=dict)  # dispute id → Rules, kept in step with the chain
    _modes: dict = field(default_factory=dict)  # task id → multiPhase

    @cached_property
    def halt_at(self) -> int:
        return self.vm.haltAt()

    @cached_property
    def halt_status(self) -> int:
        return self.vm.haltStatus()

    def truth_trace(self) -> Trace:
        return Trace(self.halt_at, self.halt_status)

    # --- task and result ------------------------------------------------------------------------

    def register(self, n: int, sender) -> int:
        program = self.vm.stateHash(self.vm.initialState())
        rc = self.game.registerModel(COMMITMENT, n, program, program, "ipfs://mock", sender=sender)
        return rc.events[0].modelId

    def create_task(self, requester, model_id, input_bytes, multi_phase=True, window=WINDOW) -> int:
        rc = self.game.createTask(model_id, input_bytes, window, multi_phase, sender=requester, value=REWARD)
        self.ledger.paid[requester.address] += REWARD
        [ev] = rc.events
        assert bytes(ev.inputKey) == ChunkTree.from_bytes(input_bytes).key and bytes(ev.input) == input_bytes
        self._modes[ev.taskId] = multi_phase
        return ev.taskId

    def submit(self, task_id, server, graph: Graph):
        rc = self.game.submitResult(task_id, *graph.submit_args(), sender=server, value=SERVER_BOND)
        self.ledger.paid[server.address] += SERVER_BOND
        return rc

    def challenge(self, task_id, challenger) -> int:
        """Opens a dispute, and its :class:`Rules` replica and transcript (the challenge's own events:
        ``PhaseOneEnded`` when phase 1 has no move)."""
        game = self.game
        rc = game.challenge(task_id, sender=challenger, value=CHALLENGER_BOND)
        self.ledger.paid[challenger.address] += CHALLENGER_BOND
        [opened] = [e for e in rc.events if e.event_name == "DisputeOpened"]
        dispute_id = opened.disputeId
        assert (opened.taskId, opened.challenger) == (task_id, challenger.address)
        self.disputes.setdefault(task_id, []).append(dispute_id)
        t, r = game.task(task_id), game.result(task_id)
        n = game.model(t.modelId).nodeCount
        replica = Rules.open(t.multiPhase, n, bytes(t.inputKey), bytes(r.finalState), self.truth_trace())
        self.replicas[dispute_id] = replica
        tr = Transcript(dispute_id=dispute_id)
        tr.events = self._events(rc, dispute_id, None)
        assert tr.events == replica.events
        self.transcripts[dispute_id] = tr
        d = game.dispute(dispute_id)
        assert View.of(d) == replica.view() and d.challenger == challenger.address
        assert d.deadline == rc.timestamp + MOVE_WINDOW and not d.localsLoaded
        return dispute_id

    # --- time -----------------------------------------------------------------------------------

    def at(self, timestamp: int):
        """The next transaction's block has ``timestamp``."""
        self.chain.pending_timestamp = timestamp

    def past_deadline(self, dispute_id: int, check: bool = True):
        """Checks that ``timeout`` reverts at the deadline, then moves the clock past it."""
        deadline = self.game.dispute(dispute_id).deadline
        if check:
            self.at(deadline)
            with ape.reverts(self.game.DeadlineNotPassed):
                self.game.timeout(dispute_id, sender=self.keeper)
        self.at(deadline + 1)

    # --- the dispute ----------------------------------------------------------------------------

    def play(
        self,
        dispute_id: int,
        server: ServerPlan,
        challenger: ChallengerPlan,
        *,
        until=None,
        load_locals: bool = False,
        max_moves: int = 400,
    ) -> Transcript | None:
        """Plays the dispute to its end (or returns None on reaching phase ``until``), checking after
        every move that the contract's dispute is the :class:`Rules` replica's, that it emitted the
        replica's events and that the deadline moved to the move's time + ``moveWindow``.

        ``load_locals``: the keeper checks that ``loadLocalValues`` reverts in phases ``Graph`` and
        ``ExecutionClaim``, calls it once phase ``Execution`` or ``Step`` is reached (checking the values
        of protocol §4.3, the event, and that a second call reverts), and that it reverts once the
        dispute is resolved."""
        game = self.game
        tr, replica = self.transcripts[dispute_id], self.replicas[dispute_id]
        vm = self.truth_trace()
        deadline = None
        for _ in range(max_moves):
            d = game.dispute(dispute_id)
            view = View.of(d)
            assert view == replica.view(), f"contract {view} != rules {replica.view()}"
            if view.phase == Phase.RESOLVED:
                break
            if deadline is not None:
                assert d.deadline == deadline
            if view.phase == until:
                return None
            if view.phase == Phase.STEP:
                tr.step_lo = view.lo
            if load_locals:
                self._locals_gate(dispute_id, view.phase, tr)
            move = next_move(view, server, challenger, tr, vm)
            rc = self._send(dispute_id, view, move, server, challenger)
            apply_move(replica, view.turn, move)
            tr.txs.append(tx_of(move, view))
            new = self._events(rc, dispute_id, view.phase)
            assert new == replica.events[len(tr.events) :], (new, replica.events[len(tr.events) :])
            tr.events += new
            deadline = rc.timestamp + MOVE_WINDOW
        else:
            raise AssertionError("the dispute did not end")
        tr.finish(View.of(game.dispute(dispute_id)), self._multi(game.dispute(dispute_id).taskId))
        if load_locals:
            with ape.reverts(game.LocalValuesNotLoadable):
                game.loadLocalValues(dispute_id, sender=self.keeper)
        return tr

    def _send(self, dispute_id, view: View, move: tuple, server: ServerPlan, challenger: ChallengerPlan):
        game, kind = self.game, move[0]
        account = server.account if view.turn == Party.SERVER else challenger.account
        if kind == "timeout":
            return self._timeout(dispute_id)
        if kind == "bisect":
            return game.bisect(dispute_id, move[1], sender=account)
        if kind == "respond":
            return game.respond(dispute_id, move[1], move[2], sender=account)
        if kind == "claim":
            return game.claimExecution(dispute_id, *move[1:], sender=server.account)
        assert kind == "step"
        stepper = server.account if move[1] == Party.SERVER else challenger.account
        return game.step(dispute_id, move[2], b"", sender=stepper)

    def _events(self, rc, dispute_id: int, phase) -> list:
        """The game's events of ``rc`` about the dispute, as :class:`Rules` tuples (``phase``: the phase
        the move was made in)."""
        out = []
        for e in rc.events:
            if e.contract_address != self.game.address or e.event_name in ("DisputeOpened", "Withdrawn"):
                continue
            assert e.disputeId == dispute_id, e
            name = e.event_name
            if name == "Bisected":
                out.append((name, phase, Party(e.party), e.position, bytes(e.claim)))
            elif name == "Responded":
                out.append((name, phase, Party(e.party), e.position, e.agree))
            elif name == "PhaseOneEnded":
                assert bytes(e.localContext) == self.local_context(dispute_id)
                out.append((name, e.node))
            elif name == "ExecutionClaimed":
                out.append((name, e.steps, bytes(e.finalState), bytes(e.claimedState)))
            elif name == "StepPlayed":
                out.append((name, e.position, bytes(e.postState)))
            elif name == "DisputeResolved":
                out.append((name, Party(e.winner), e.byTimeout))
            else:
                raise AssertionError(f"unexpected event {e}")
        return out

    def _timeout(self, dispute_id):
        self.past_deadline(dispute_id)
        return self.game.timeout(dispute_id, sender=self.keeper)

    def _multi(self, task_id: int) -> bool:
        if task_id not in self._modes:
            self._modes[task_id] = self.game.task(task_id).multiPhase
        return self._modes[task_id]

    # --- local values ---------------------------------------------------------------------------

    def _locals_gate(self, dispute_id: int, phase: Phase, tr: Transcript):
        if phase in (Phase.GRAPH, Phase.EXECUTION_CLAIM) and phase not in tr.gates:
            with ape.reverts(self.game.LocalValuesNotLoadable):
                self.game.loadLocalValues(dispute_id, sender=self.keeper)
            tr.gates.add(phase)
        elif phase in (Phase.EXECUTION, Phase.STEP) and tr.loaded is None:
            self.load_local_values(dispute_id)
            tr.loaded = phase

    def load_local_values(self, dispute_id: int, sender=None) -> dict:
        """``loadLocalValues`` (by the keeper): nothing written before, the replica's values after (the
        table of protocol §4.3), its event, and a second call reverts. Returns the values."""
        game, sender = self.game, sender or self.keeper
        assert self.local_values(dispute_id) == {i: None for i in range(1, 5)}
        assert not game.dispute(dispute_id).localsLoaded
        rc = game.loadLocalValues(dispute_id, sender=sender)
        [ev] = [e for e in rc.events if e.contract_address == game.address]
        assert ev.event_name == "LocalValuesLoaded" and ev.disputeId == dispute_id
        assert bytes(ev.localContext) == self.local_context(dispute_id)
        assert game.dispute(dispute_id).localsLoaded
        want = self.replicas[dispute_id].local_values()
        written = [i for i, v in want.items() if v is not None]
        got = self.local_values(dispute_id, written=written)
        assert got == want, (got, want)
        with ape.reverts(game.LocalValuesNotLoadable):
            game.loadLocalValues(dispute_id, sender=sender)
        return got

    def local_context(self, dispute_id: int) -> bytes:
        """``keccak256(abi.encode(game, disputeId))`` (``OpmlGame.localContext``), computed here."""
        return keccak256(encode(["address", "uint256"], [self.game.address, dispute_id]))

    def local_values(self, dispute_id: int, caller=None, idents=(1, 2, 3, 4), written=None) -> dict:
        """``ident → (value, size)`` of the local values ``caller`` (default: the game) wrote for the
        dispute's context; None where none was written. ``written``: the idents known to be there
        (read without asking first)."""
        caller = self.game if caller is None else caller
        context = self.local_context(dispute_id)
        out = {}
        for ident in idents:
            key = localize_ident(ident, caller, context)
            if (written is not None and ident in written) or self.oracle.preimagePartOk(key, 0):
                value, size = self.oracle.readPreimage(key, 0)
                out[ident] = (bytes(value), size)
            else:
                out[ident] = None
        return out

    # --- settling -------------------------------------------------------------------------------

    def disputes_of(self, task_id: int) -> list[int]:
        return self.disputes.get(task_id, [])

    def settle(self, task_id: int, accounts, *, empty: bool = True, check_window: bool = False) -> TaskStatus:
        """Finalizes (after the window) or closes what is left, lets ``accounts`` withdraw, and checks
        that nothing stays locked and (``empty``) that the game holds no wei."""
        game = self.game
        t, r = game.task(task_id), game.result(task_id)
        status = TaskStatus(t.status)
        if status == TaskStatus.ANSWERED:
            assert r.openDisputes == 0
            end = r.submittedAt + t.window
            if self.chain.pending_timestamp <= end:
                if check_window:
                    self.at(end)
                    with ape.reverts(game.WindowOpen):
                        game.finalize(task_id, sender=self.keeper)
                self.at(end + 1)
            game.finalize(task_id, sender=self.keeper)
            status = TaskStatus.FINALIZED
        elif status == TaskStatus.REJECTED:
            for i in self.disputes_of(task_id):
                if Phase(game.dispute(i).phase) != Phase.RESOLVED:
                    rc = game.closeDispute(i, sender=self.keeper)
                    assert [e.event_name for e in rc.events] == ["DisputeClosed"]
                    assert Phase(game.dispute(i).phase) == Phase.RESOLVED
        t, r = game.task(task_id), game.result(task_id)
        assert TaskStatus(t.status) == status in (TaskStatus.FINALIZED, TaskStatus.REJECTED)
        assert r.openDisputes == 0
        self.withdraw_all(accounts, empty=empty)
        return status

    def withdraw_all(self, accounts, *, empty: bool = True):
        for account in {a.address: a for a in accounts}.values():
            amount = self.game.credit(account)
            if amount:
                rc = self.game.withdraw(sender=account)
                [ev] = [e for e in rc.events if e.event_name == "Withdrawn"]
                assert ev.amount == amount
                self.ledger.got[account.address] += amount
        if empty:
            assert self.game.balance == 0, "wei left in the game"


def expected_nets(server, requester, outcomes: dict, finalized: bool) -> Counter:
    """Net wei per address by protocol §5. ``outcomes``: challenger address → ``"won"``, ``"lost"`` or
    ``"closed"``."""
    net: Counter = Counter()
    net[requester.address] -= REWARD
    net[server.address] -= SERVER_BOND
    half = SERVER_BOND // 2
    assert list(outcomes.values()).count("won") <= 1
    for addr, outcome in outcomes.items():
        if outcome == "won":
            net[addr] += half
            net[requester.address] += REWARD + SERVER_BOND - half
        elif outcome == "lost":
            net[addr] -= CHALLENGER_BOND
            net[server.address] += CHALLENGER_BOND
        else:
            assert outcome == "closed"
    if finalized:
        assert "won" not in outcomes.values()
        net[server.address] += REWARD + SERVER_BOND
    return net
