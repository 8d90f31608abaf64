"""A move-by-move driver of ``OpmlGame`` disputes against ``AlphabetVM`` (no MIPS), and a Python
reference of the same rules (the moves of a dispute, and the money of tasks, results and disputes),
for the adversarial matrix of ``test_game_mock.py``.

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

**Defense** (protocol §4, §5). ``challenge`` opens a dispute in phase ``Defense`` with the server to
move: its ``defend`` stakes ``challengerBond`` as the challenger did (the dispute's winner takes both
stakes), and only then does the bisection start. A server that does not defend loses by timeout (the
challenger gets its own stake back, and a share of the server's bond).

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
replica after every move) and records what happened. :class:`Books` is the Python reference of the
money (protocol §3, §5): the errors of the task-level calls, what each call credits, and what the game
still holds for each task; every call the :class:`Table` makes is predicted by it (a predicted error must
be the chain's revert) and checked against the chain after it (credits, balance, task, result and
dispute fields), and the reference itself must conserve wei (held = credits + locked).
:meth:`Table.settle` ends a task (finalize, or claim the bond shares of a rejected one), lets everybody
withdraw, and checks that nothing stays locked and the game holds no wei.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

import ape
from eth_abi import encode

from opml.game.solver import Party, Phase  # the ABI's enums (IOpmlGame.Phase, IOpmlGame.Party)
from opml.hashing import keccak256
from opml.oracle import ChunkTree, localize_ident

# --- parameters -----------------------------------------------------------------------------------

SERVER_BOND = 10**17 + 5  # odd, and its challengers' half is 1 mod 2, 2 mod 3: shares leave a remainder
CHALLENGER_BOND = 6 * 10**16 + 3  # above SERVER_BOND / 2: see test_socks_dilute_the_honest_share
REWARD = 3 * 10**16 + 7
CHALLENGERS_HALF = SERVER_BOND - SERVER_BOND // 2
"""What the winning challengers share of a rejected server's bond; the requester takes the rest."""
MAX_STEPS = 16
"""Every mock model's step bound (``maxSteps``): the matrix claims at most 11 steps."""
MOVE_WINDOW = 600
MIN_WINDOW = 3600
WINDOW = 2 * 3600
COMMITMENT = bytes([3]) + keccak256(b"mock model manifest")[1:]
ZERO = bytes(32)

RUNNING, VALID, INVALID = 3, 0, 1
OFFSET = 1000
"""A "vm" liar's states past its lie are at ``t + OFFSET``, far from ``haltAt``."""


class TaskStatus(IntEnum):
    """``IOpmlGame.TaskStatus``."""

    NONE = 0
    OPEN = 1
    ANSWERED = 2
    FINALIZED = 3
    REJECTED = 4
    CANCELLED = 5


BISECTION = (Phase.GRAPH, Phase.EXECUTION)


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

    def reveal_args(self) -> tuple:
        """``(output, stateRoot, siblings)`` of ``revealOutput`` (``submitResult`` commits to
        ``final_state`` alone)."""
        return (self.output, self.tree.root, list(self.tree.siblings(self.n)))


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

    ``quit_at``: ``"defend"`` (it does not defend), ``(phase, i)`` (it does not make its ``i``-th move
    of that phase), ``"claim"`` (no ``claimExecution``), ``"step"`` (it does not step) or None."""

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
    """The fields of ``IOpmlGame.Dispute`` the game's moves change (all but the fixed ones, the
    deadline, ``localsLoaded`` and ``shareClaimed``, which :class:`Books` follows)."""

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
    defended: bool

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
            bool(d.defended),
        )

    @property
    def mid(self) -> int:
        return self.lo + (self.hi - self.lo) // 2


class RuleError(Exception):
    """A call the rules refuse: the contract's (or the VM's) error name and its arguments."""

    def __init__(self, name: str, **args):
        super().__init__(name, args)
        self.name, self.args_ = name, args


@dataclass
class Rules:
    """The Python reference of one dispute under protocol §4 (what ``OpmlGame`` does from
    ``challenge`` on, bonds apart: :class:`Books`). ``events`` are the game's events about the dispute,
    as tuples: ``("DisputeDefended",)``, ``("Bisected", phase, party, position, claim)``,
    ``("Responded", phase, party, position, agree)``, ``("PhaseOneEnded", node)``,
    ``("ExecutionClaimed", steps, finalState, claimedState)``, ``("StepPlayed", position, postState)``,
    ``("DisputeResolved", winner, byTimeout)``. A refused move raises :class:`RuleError` before it
    changes anything (the checks of the contract, in its order, from the phase on: the caller's turn is
    :meth:`_mover`'s, time and third parties are :class:`Table`'s)."""

    multi: bool
    vm: Trace  # the VM the step runs on (haltAt, haltStatus)
    input_key: bytes
    n: int = 0
    final_state: bytes = ZERO  # the result's S_{N−1}
    max_steps: int = MAX_STEPS
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
    defended: bool = False
    events: list = field(default_factory=list)

    @classmethod
    def open(
        cls, multi: bool, n: int, input_key: bytes, final_state: bytes, vm: Trace, max_steps: int = MAX_STEPS
    ) -> Rules:
        """The dispute as ``challenge`` leaves it: the server must defend."""
        r = cls(multi, vm, bytes(input_key), n, bytes(final_state), max_steps)
        r.phase, r.turn = Phase.DEFENSE, Party.SERVER
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
            self.defended,
        )

    @property
    def mid(self) -> int:
        return self.lo + (self.hi - self.lo) // 2

    def _mover(self, party: Party):
        if self.phase == Phase.RESOLVED:
            raise RuleError("WrongPhase", phase=self.phase)
        if party != self.turn:
            raise RuleError("NotYourTurn")

    def _claim(self, claim: bytes):
        if bytes(claim) == ZERO:
            raise RuleError("InvalidClaim")
        self.mid_hash = bytes(claim)
        self.events.append(("Bisected", self.phase, self.turn, self.mid, self.mid_hash))
        self.turn = other(self.turn)

    def defend(self, party: Party, value: int = CHALLENGER_BOND):
        """The server's stake; then phase 1 (multi-phase, N > 1) or the execution claim."""
        self._mover(party)
        if self.phase != Phase.DEFENSE:
            raise RuleError("WrongPhase", phase=self.phase)
        if value != CHALLENGER_BOND:
            raise RuleError("WrongBond", expected=CHALLENGER_BOND)
        self.defended = True
        self.events.append(("DisputeDefended",))
        self.hi_party, self.hi_hash = Party.SERVER, self.final_state
        if self.multi:
            self.phase, self.hi = Phase.GRAPH, self.n
            self.lo_hash = ChunkTree.from_bytes(self.input_key).key  # S_{−1}
            if self.n == 1:
                self._enter_execution()
            else:
                self.turn = Party.CHALLENGER
        else:
            self._enter_execution()

    def bisect(self, party: Party, claim: bytes):
        self._mover(party)
        if self.phase not in BISECTION:
            raise RuleError("WrongPhase", phase=self.phase)
        if self.mid_hash != ZERO:
            raise RuleError("WrongMove")
        self._claim(claim)

    def respond(self, party: Party, agree: bool, claim: bytes):
        self._mover(party)
        if self.phase not in BISECTION:
            raise RuleError("WrongPhase", phase=self.phase)
        if self.mid_hash == ZERO:
            raise RuleError("WrongMove")
        mid, phase = self.mid, self.phase
        lo, hi = (mid, self.hi) if agree else (self.lo, mid)
        if (hi - lo > 1) != (bytes(claim) != ZERO):
            raise RuleError("InvalidClaim")
        if agree:
            self.lo, self.lo_hash = mid, self.mid_hash
        else:
            self.hi, self.hi_hash, self.hi_party = mid, self.mid_hash, other(party)
        self.mid_hash = ZERO
        self.events.append(("Responded", phase, party, mid, agree))
        if self.hi - self.lo > 1:
            self._claim(claim)
            return
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
            raise RuleError("WrongPhase", phase=self.phase)
        if steps == 0 or bytes(final_state)[0] != VALID:
            raise RuleError("NotAValidExit")
        if (bytes(claimed) == self.hi_hash) != (self.hi_party == Party.SERVER) or bytes(claimed) == ZERO:
            raise RuleError("InconsistentClaim")
        if steps > self.max_steps:
            raise RuleError("StepsOverBound", maxSteps=self.max_steps)
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

    def step(self, state: bytes, proof: bytes = b""):
        """Anyone's step: ``AlphabetVM`` reverts ``BadWitness`` on a malformed state or a forged proof."""
        if self.phase != Phase.STEP:
            raise RuleError("WrongPhase", phase=self.phase)
        if len(state) != 64:
            raise RuleError("BadWitness")
        if vm_hash(state) != self.lo_hash:
            raise RuleError("WrongPreState")
        if proof[:1] == b"\xff":
            raise RuleError("BadWitness")
        post = vm_hash(vm_step(state, self.vm.halt_at, self.vm.halt_status))
        self.events.append(("StepPlayed", self.lo, post))
        self._resolve(self.hi_party if post == self.hi_hash else other(self.hi_party), False)

    def timeout(self):
        if self.phase == Phase.RESOLVED:
            raise RuleError("WrongPhase", phase=self.phase)
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


# --- the money in Python --------------------------------------------------------------------------


@dataclass
class TaskBook:
    """A task and its result as far as money goes."""

    requester: str
    reward: int
    window: int
    created: int
    status: TaskStatus = TaskStatus.OPEN
    server: str | None = None
    submitted: int = 0
    final_state: bytes = ZERO
    revealed: bool = False
    open: int = 0  # open disputes
    wins: int = 0  # disputes won by their challenger
    shares: int = 0  # bond shares claimed
    bond_out: int = 0  # what of the server's bond has been credited
    challengers: set = field(default_factory=set)


@dataclass
class DisputeBook:
    task: int
    challenger: str
    defended: bool = False
    winner: Party = Party.NONE
    share_claimed: bool = False


class Books:
    """The Python reference of the game's money (protocol §3, §5) for the tasks of one :class:`Table`:
    each method checks what the contract checks (raising :class:`RuleError` before any change) and then
    does what it does, returning the task-level events it emits as tuples. ``credit`` is what this
    table's calls credited and nobody withdrew yet; ``held`` what they sent in, less withdrawals.

    Rules (issue 17): a dispute's stakes (``challengerBond``, and the server's as much once it defended)
    go to its winner; each challenger win counts in ``challengerWins``, and the first one rejects the
    task and pays the requester its reward and ``serverBond / 2``; once a rejected result has no open
    dispute, each won dispute claims ``(serverBond − serverBond / 2) / challengerWins``, the last claim
    the remainder. A result whose window
    passed with no dispute open is finalized (revealed: the server takes reward + bond) or rejected
    (never revealed: the requester takes both)."""

    def __init__(self):
        self.tasks: dict[int, TaskBook] = {}
        self.disputes: dict[int, DisputeBook] = {}
        self.credit: Counter = Counter()
        self.held = 0
        self.dirty: set = set()  # accounts credited since the last check

    def _pay(self, account: str, amount: int):
        self.credit[account] += amount
        self.dirty.add(account)

    def locked(self, task_id: int | None = None) -> int:
        """What the game holds for a task (default: all of them) beyond the credits: an unsettled
        reward, what is left of the server's bond, the stakes of open disputes."""
        total = 0
        for tid, t in self.tasks.items():
            if task_id is not None and tid != task_id:
                continue
            if t.status in (TaskStatus.OPEN, TaskStatus.ANSWERED):
                total += t.reward
            if t.server is not None:
                total += SERVER_BOND - t.bond_out
        for d in self.disputes.values():
            if (task_id is None or d.task == task_id) and d.winner == Party.NONE:
                total += CHALLENGER_BOND * (2 if d.defended else 1)
        return total

    def conserved(self) -> bool:
        return self.held == sum(self.credit.values()) + self.locked()

    # --- tasks and results ----------------------------------------------------------------------

    def create(self, task_id: int, requester: str, reward: int, window: int, now: int) -> list:
        assert task_id not in self.tasks
        self.tasks[task_id] = TaskBook(requester, reward, window, now)
        self.held += reward
        return []

    def cancel(self, task_id: int, sender: str, now: int) -> list:
        t = self.tasks[task_id]
        if sender != t.requester:
            raise RuleError("NotRequester")
        if t.status != TaskStatus.OPEN:
            raise RuleError("WrongTaskStatus", status=t.status)
        if now <= t.created + MOVE_WINDOW:
            raise RuleError("AnswerWindowOpen")
        t.status = TaskStatus.CANCELLED
        self._pay(t.requester, t.reward)
        return [("TaskCancelled", task_id)]

    def commit(self, task_id: int, server: str, final_state: bytes, value: int, now: int) -> list:
        t = self.tasks[task_id]
        if t.status != TaskStatus.OPEN:
            raise RuleError("WrongTaskStatus", status=t.status)
        if value != SERVER_BOND:
            raise RuleError("WrongBond", expected=SERVER_BOND)
        t.status, t.server, t.submitted, t.final_state = TaskStatus.ANSWERED, server, now, bytes(final_state)
        self.held += value
        return [("ResultSubmitted", task_id, server, bytes(final_state))]

    def reveal(self, task_id: int, sender: str, graph: Graph) -> list:
        """``graph``: the values the reveal's output and proof come from; they open the committed
        ``S_{N−1}`` iff it is ``graph``'s."""
        t = self.tasks[task_id]
        if t.status != TaskStatus.ANSWERED:
            raise RuleError("WrongTaskStatus", status=t.status)
        if sender != t.server:
            raise RuleError("NotServer")
        if t.revealed:
            raise RuleError("AlreadyRevealed")
        if graph.final_state != t.final_state:
            raise RuleError("OutputNotInState")
        t.revealed = True
        return [("OutputRevealed", task_id, graph.keys[-1], graph.output)]

    def finalize(self, task_id: int, now: int) -> list:
        t = self.tasks[task_id]
        if t.status != TaskStatus.ANSWERED:
            raise RuleError("WrongTaskStatus", status=t.status)
        if now <= t.submitted + t.window:
            raise RuleError("WindowOpen")
        if t.open:
            raise RuleError("DisputesOpen")
        t.bond_out = SERVER_BOND
        if not t.revealed:
            t.status = TaskStatus.REJECTED
            self._pay(t.requester, t.reward + SERVER_BOND)
            return [("ResultRejected", task_id, True)]
        t.status = TaskStatus.FINALIZED
        self._pay(t.server, t.reward + SERVER_BOND)
        return [("ResultFinalized", task_id, t.server)]

    # --- disputes -------------------------------------------------------------------------------

    def challenge(self, task_id: int, dispute_id: int, challenger: str, value: int, now: int) -> list:
        t = self.tasks[task_id]
        if t.status != TaskStatus.ANSWERED:
            raise RuleError("WrongTaskStatus", status=t.status)
        if now > t.submitted + t.window:
            raise RuleError("WindowClosed")
        if challenger == t.server or challenger in t.challengers:
            raise RuleError("ChallengeNotAllowed")
        if value != CHALLENGER_BOND:
            raise RuleError("WrongBond", expected=CHALLENGER_BOND)
        t.challengers.add(challenger)
        t.open += 1
        self.disputes[dispute_id] = DisputeBook(task_id, challenger)
        self.held += value
        return []

    def defend(self, dispute_id: int) -> list:
        """The server's stake (the move itself is :meth:`Rules.defend`'s)."""
        d = self.disputes[dispute_id]
        assert not d.defended
        d.defended = True
        self.held += CHALLENGER_BOND
        return []

    def resolve(self, dispute_id: int, winner: Party) -> list:
        d = self.disputes[dispute_id]
        t = self.tasks[d.task]
        assert d.winner == Party.NONE != winner
        d.winner = winner
        t.open -= 1
        stakes = CHALLENGER_BOND * (2 if d.defended else 1)
        if winner == Party.SERVER:
            self._pay(t.server, stakes)
            return []
        self._pay(d.challenger, stakes)
        t.wins += 1
        if t.status == TaskStatus.ANSWERED:
            t.status = TaskStatus.REJECTED
            self._pay(t.requester, t.reward + SERVER_BOND // 2)
            t.bond_out += SERVER_BOND // 2
            return [("ResultRejected", d.task, False)]
        return []

    def share(self, dispute_id: int) -> int:
        """The share ``claimBondShare`` would credit now (no check)."""
        t = self.tasks[self.disputes[dispute_id].task]
        share = CHALLENGERS_HALF // t.wins
        return CHALLENGERS_HALF - share * (t.wins - 1) if t.shares + 1 == t.wins else share

    def claim_share(self, dispute_id: int) -> list:
        d = self.disputes[dispute_id]
        if d.winner != Party.CHALLENGER or d.share_claimed:
            raise RuleError("NoBondShare")
        t = self.tasks[d.task]
        if t.open:
            raise RuleError("DisputesOpen")
        amount = self.share(dispute_id)
        d.share_claimed = True
        t.shares += 1
        t.bond_out += amount
        self._pay(d.challenger, amount)
        return [("BondShareClaimed", dispute_id, d.challenger, amount)]

    def withdraw(self, account: str, credit: int) -> list:
        """``credit``: the account's whole credit on the chain (earlier tables' included)."""
        if credit == 0:
            raise RuleError("NothingToWithdraw")
        self.held -= self.credit[account]
        self.credit[account] = 0
        self.dirty.add(account)
        return [("Withdrawn", account, credit)]


# --- the parties' strategy ------------------------------------------------------------------------


@dataclass
class Transcript:
    """A dispute as played (:meth:`Table.play`) or predicted (:func:`predict`).

    ``txs``: ``(kind, phase, party)`` per transaction that moved the dispute, ``kind`` one of ``defend``,
    ``bisect``, ``respond``, ``claim``, ``step`` (party: who stepped), ``timeout`` (party: whose turn it
    was);
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
    """What the party whose turn it is does: ``("timeout",)`` (it does not move), ``("defend",)``,
    ``("bisect", claim)``, ``("respond", agree, claim)``, ``("claim", steps, finalState, claimedState)``
    or ``("step", party, stateData)``."""
    if view.phase == Phase.DEFENSE:
        return ("timeout",) if server.quit_at == "defend" else ("defend",)
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
    elif kind == "defend":
        rules.defend(party)
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
    """The defense and phase 1 in Python, up to ``claimExecution`` included (it does not depend on the
    VM); None if the dispute ends before."""
    rules = Rules.open(True, server.graph.n, server.graph.keys[0], server.graph.final_state, server.trace)
    tr = Transcript()
    while rules.phase in (Phase.DEFENSE, Phase.GRAPH, Phase.EXECUTION_CLAIM):
        view = rules.view()
        move = next_move(view, server, challenger, tr, server.trace)
        tr.txs.append(tx_of(move, view))
        apply_move(rules, view.turn, move)
    return None if rules.phase == Phase.RESOLVED else rules


# --- on-chain -------------------------------------------------------------------------------------

DISPUTE_EVENTS = (
    "DisputeDefended",
    "Bisected",
    "Responded",
    "PhaseOneEnded",
    "ExecutionClaimed",
    "StepPlayed",
    "DisputeResolved",
)
TASK_EVENTS = (
    "TaskCancelled",
    "ResultSubmitted",
    "OutputRevealed",
    "ResultFinalized",
    "ResultRejected",
    "BondShareClaimed",
    "Withdrawn",
)


def _addr(account) -> str:
    return getattr(account, "address", account)


class Ledger:
    """Wei each account sent to the game and withdrew from it."""

    def __init__(self):
        self.paid: Counter = Counter()
        self.got: Counter = Counter()

    def net(self, account) -> int:
        a = _addr(account)
        return self.got[a] - self.paid[a]


@dataclass
class Table:
    """A deployed ``OpmlGame`` with its ``AlphabetVM``, a keeper (a third party that calls
    ``timeout``/``finalize``/``claimBondShare``/``loadLocalValues``), a ledger and the :class:`Books`.

    Every call made through the table is first played on the references (:class:`Rules` for a
    dispute's moves, :class:`Books` for the money and the task-level rules): a call they refuse must
    revert on the chain with the same error and change nothing; a call they accept must succeed with
    their events, after which the chain must show their dispute (:class:`View`), their credits, their
    task and result fields and the game's balance (checked after every call, a dispute's balance after
    every move). Tests send their refused calls raw (``ape.reverts``) and their accepted ones through
    the table."""

    game: object
    vm: object
    oracle: object
    keeper: object
    chain: object
    ledger: Ledger = field(default_factory=Ledger)
    books: Books = field(default_factory=Books)

    disputes: dict = field(default_factory=dict)  # task id → dispute ids opened through `challenge`
    transcripts: dict = field(default_factory=dict)  # dispute id → Transcript
    replicas: dict = field(default_factory=dict)  # dispute id → Rules, kept in step with the chain
    deadlines: dict = field(default_factory=dict)  # dispute id → its deadline, by the rules
    _modes: dict = field(default_factory=dict)  # task id → multiPhase
    base_credit: dict = field(default_factory=dict)  # account → its credit before this table
    base_balance: int | None = None

    def __post_init__(self):
        # The decks are shared by a module's tests: whatever an earlier (failed) test left is the base.
        self.base_balance = self.game.balance

    @cached_property
    def halt_at(self) -> int:
        return self.vm.haltAt()

    @cached_property
    def halt_status(self) -> int:
        return self.vm.haltStatus()

    def truth_trace(self) -> Trace:
        return Trace(self.halt_at, self.halt_status)

    # --- the references against the chain --------------------------------------------------------

    def _watch(self, *accounts):
        """Records the credit of accounts this table may credit, before it does."""
        for account in accounts:
            a = _addr(account)
            if a not in self.base_credit:
                self.base_credit[a] = self.game.credit(a)

    def reverts(self, error: RuleError):
        """``ape.reverts`` for a :class:`RuleError` (the game's error, else the VM's)."""
        names = {e.name for e in self.game.contract_type.errors}
        source = self.game if error.name in names else self.vm
        return ape.reverts(getattr(source, error.name), **error.args_)

    def _call(self, apply, send, task_id: int | None, expect: str | None):
        """Plays ``apply(now)`` on the books, then ``send()`` on the chain: a refusal must be the
        chain's revert; an accepted call must emit the books' task-level events. ``expect``: the error
        the call must be refused with (None: it must be accepted). Returns the receipt (None when
        refused)."""
        now = self.chain.pending_timestamp
        try:
            effects = apply(now)
        except RuleError as error:
            assert error.name == expect, f"refused with {error.name}{error.args_}, not {expect}"
            with self.reverts(error):
                send()
            self.check(task_id)
            return None
        assert expect is None, f"accepted, not refused with {expect}"
        rc = send()
        assert rc.timestamp == now
        assert self._task_events(rc) == effects, (self._task_events(rc), effects)
        self.check(task_id)
        return rc

    def check(self, task_id: int | None = None):
        """The chain against the books: the game's balance and the credits of the accounts credited
        since the last check; the task, its result and its disputes (default: every task)."""
        b, game = self.books, self.game
        assert b.conserved(), "the reference does not conserve wei"
        assert game.balance - self.base_balance == b.held
        for a in sorted(b.dirty):
            assert game.credit(a) == self.base_credit[a] + b.credit[a], a
        b.dirty.clear()
        for tid, t in b.tasks.items():
            if task_id is not None and tid != task_id:
                continue
            task = game.task(tid)
            got = (TaskStatus(task.status), task.challengerWins, task.sharesClaimed)
            assert got == (t.status, t.wins, t.shares)
            if t.server is None:
                continue
            r = game.result(tid)
            got = (r.server, r.openDisputes, bytes(r.outputKey) != ZERO)
            assert got == (t.server, t.open, t.revealed)
            assert bytes(r.finalState) == t.final_state and r.submittedAt == t.submitted
            for did, d in b.disputes.items():
                if d.task == tid:
                    c = game.dispute(did)
                    got = (c.challenger, c.taskId, bool(c.defended), bool(c.shareClaimed), Party(c.winner))
                    assert got == (d.challenger, tid, d.defended, d.share_claimed, d.winner)

    def _task_events(self, rc) -> list:
        out = []
        for e in rc.events:
            if e.contract_address != self.game.address or e.event_name not in TASK_EVENTS:
                continue
            name = e.event_name
            if name == "TaskCancelled":
                out.append((name, e.taskId))
            elif name == "ResultSubmitted":
                out.append((name, e.taskId, e.server, bytes(e.finalState)))
            elif name == "OutputRevealed":
                out.append((name, e.taskId, bytes(e.outputKey), bytes(e.output)))
            elif name == "ResultFinalized":
                out.append((name, e.taskId, e.server))
            elif name == "ResultRejected":
                out.append((name, e.taskId, e.expired))
            elif name == "BondShareClaimed":
                out.append((name, e.disputeId, e.challenger, e.amount))
            else:
                out.append((name, e.account, e.amount))
        return out

    # --- tasks and results ----------------------------------------------------------------------

    def register(self, n: int, sender, input_bytes: int = 1, max_steps: int = MAX_STEPS) -> int:
        program = self.vm.stateHash(self.vm.initialState())
        rc = self.game.registerModel(
            COMMITMENT, n, input_bytes, max_steps, program, program, "ipfs://mock", sender=sender
        )
        return rc.events[0].modelId

    def create_task(self, requester, model_id, input_bytes, multi_phase=True, window=WINDOW) -> int:
        self._watch(requester)
        rc = self.game.createTask(model_id, input_bytes, window, multi_phase, sender=requester, value=REWARD)
        self.ledger.paid[requester.address] += REWARD
        [ev] = rc.events
        assert bytes(ev.inputKey) == ChunkTree.from_bytes(input_bytes).key and bytes(ev.input) == input_bytes
        self._modes[ev.taskId] = multi_phase
        self.books.create(ev.taskId, requester.address, REWARD, window, rc.timestamp)
        t = self.game.task(ev.taskId)
        assert (t.requester, t.modelId, t.window, t.createdAt, t.multiPhase, t.reward) == (
            requester.address,
            model_id,
            window,
            rc.timestamp,
            multi_phase,
            REWARD,
        )
        self.check(ev.taskId)
        return ev.taskId

    def cancel(self, task_id, requester, *, expect=None):
        return self._call(
            lambda now: self.books.cancel(task_id, requester.address, now),
            lambda: self.game.cancelTask(task_id, sender=requester),
            task_id,
            expect,
        )

    def commit(self, task_id, server, final_state: bytes, value: int = SERVER_BOND, *, expect=None):
        """``submitResult``: the server's commitment (its S_{N−1}) and bond."""
        self._watch(server)
        rc = self._call(
            lambda now: self.books.commit(task_id, server.address, final_state, value, now),
            lambda: self.game.submitResult(task_id, final_state, sender=server, value=value),
            task_id,
            expect,
        )
        if rc is not None:
            self.ledger.paid[server.address] += value
        return rc

    def reveal(self, task_id, sender, graph: Graph, *, expect=None):
        """``revealOutput`` with ``graph``'s output and its proof."""
        return self._call(
            lambda now: self.books.reveal(task_id, sender.address, graph),
            lambda: self.game.revealOutput(task_id, *graph.reveal_args(), sender=sender),
            task_id,
            expect,
        )

    def submit(self, task_id, server, graph: Graph):
        """The whole answer: the commitment, then the output's reveal. Returns the commitment's receipt
        (its time is ``submittedAt``)."""
        rc = self.commit(task_id, server, graph.final_state)
        assert rc is not None and self.reveal(task_id, server, graph) is not None
        return rc

    def finalize(self, task_id, sender=None, *, expect=None):
        return self._call(
            lambda now: self.books.finalize(task_id, now),
            lambda: self.game.finalize(task_id, sender=sender or self.keeper),
            task_id,
            expect,
        )

    def claim_share(self, dispute_id, sender=None, *, expect=None):
        task_id = self.books.disputes[dispute_id].task
        return self._call(
            lambda now: self.books.claim_share(dispute_id),
            lambda: self.game.claimBondShare(dispute_id, sender=sender or self.keeper),
            task_id,
            expect,
        )

    def withdraw(self, account, *, expect=None):
        credit = self.game.credit(account)
        rc = self._call(
            lambda now: self.books.withdraw(account.address, credit),
            lambda: self.game.withdraw(sender=account),
            None,
            expect,
        )
        if rc is not None:
            self.ledger.got[account.address] += credit
            # Whatever an earlier table left to this account went out too.
            self.base_balance -= self.base_credit.get(account.address, 0)
            self.base_credit[account.address] = 0
        return rc

    # --- disputes -------------------------------------------------------------------------------

    def challenge(self, task_id, challenger, value: int = CHALLENGER_BOND, *, expect=None) -> int | None:
        """Opens a dispute, and its :class:`Rules` replica and transcript; None if the books refuse
        the challenge (then it reverted with their error)."""
        game = self.game
        self._watch(challenger)
        dispute_id = game.disputeCount()
        rc = self._call(
            lambda now: self.books.challenge(task_id, dispute_id, challenger.address, value, now),
            lambda: game.challenge(task_id, sender=challenger, value=value),
            task_id,
            expect,
        )
        if rc is None:
            return None
        self.ledger.paid[challenger.address] += value
        [opened] = [e for e in rc.events if e.event_name == "DisputeOpened"]
        assert (opened.disputeId, opened.taskId) == (dispute_id, task_id)
        assert opened.challenger == challenger.address
        self.disputes.setdefault(task_id, []).append(dispute_id)
        t, r = game.task(task_id), game.result(task_id)
        model = game.model(t.modelId)
        inputs = (model.nodeCount, bytes(t.inputKey), bytes(r.finalState), self.truth_trace())
        replica = Rules.open(t.multiPhase, *inputs, model.maxSteps)
        self.replicas[dispute_id] = replica
        tr = Transcript(dispute_id=dispute_id)
        tr.events = self._events(rc, dispute_id, None)
        assert tr.events == replica.events == []
        self.transcripts[dispute_id] = tr
        self.deadlines[dispute_id] = rc.timestamp + MOVE_WINDOW
        d = game.dispute(dispute_id)
        assert View.of(d) == replica.view() and d.challenger == challenger.address
        assert d.deadline == self.deadlines[dispute_id] and not d.localsLoaded
        return dispute_id

    def move(
        self, dispute_id: int, by, kind: str, *args, value: int | None = None, expect: str | None = None
    ):
        """One call on a dispute from ``by``: ``defend`` (``value``: the stake, default
        ``challengerBond``), ``bisect`` (claim), ``respond`` (agree, claim), ``claim`` (steps,
        finalState, claimedState), ``step`` (stateData[, proof]; anyone) or ``timeout`` (anyone).

        The replica (a copy) plays it first, with the contract's checks before the phase's: a resolved
        dispute, the deadline, a caller who is not a party, not its turn. Refused: the chain must revert
        with the same error and the dispute stay as it was; returns None. Accepted: the chain must show
        the replica's dispute, events and deadline, and the books' money; returns the receipt.
        ``expect``: the error the move must be refused with (None: it must be accepted)."""
        game, books = self.game, self.books
        replica, book = self.replicas[dispute_id], books.disputes[dispute_id]
        server = books.tasks[book.task].server
        who = _addr(by)
        party = {server: Party.SERVER, book.challenger: Party.CHALLENGER}.get(who, Party.NONE)
        stake = CHALLENGER_BOND if value is None else value
        now, deadline = self.chain.pending_timestamp, self.deadlines[dispute_id]
        trial = copy.deepcopy(replica)
        before = replica.view()
        try:
            if trial.phase == Phase.RESOLVED:
                raise RuleError("WrongPhase", phase=Phase.RESOLVED)
            if kind == "timeout":
                if now <= deadline:
                    raise RuleError("DeadlineNotPassed")
                trial.timeout()
            elif now > deadline:
                raise RuleError("DeadlinePassed")
            elif kind == "step":
                trial.step(*args)
            elif party == Party.NONE:
                raise RuleError("NotParty")
            elif kind == "defend":
                trial.defend(party, stake)
            elif kind == "bisect":
                trial.bisect(party, *args)
            elif kind == "respond":
                trial.respond(party, *args)
            else:
                assert kind == "claim", kind
                trial.claim_execution(party, *args)
        except RuleError as error:
            assert error.name == expect, f"refused with {error.name}{error.args_}, not {expect}"
            chain_before = game.dispute(dispute_id)
            with self.reverts(error):
                self._send(dispute_id, by, kind, args, stake)
            assert game.dispute(dispute_id) == chain_before
            return None
        assert expect is None, f"accepted, not refused with {expect}"
        rc = self._send(dispute_id, by, kind, args, stake)
        assert rc.timestamp == now
        self.replicas[dispute_id] = replica = trial
        view = View.of(game.dispute(dispute_id))
        assert view == replica.view(), f"contract {view} != rules {replica.view()}"
        tr = self.transcripts[dispute_id]
        new = self._events(rc, dispute_id, before.phase)
        assert new == replica.events[len(tr.events) :], (new, replica.events[len(tr.events) :])
        tr.events += new
        mover = party if kind == "step" else before.turn
        tr.txs.append((kind, before.phase, mover))
        if replica.phase != Phase.RESOLVED:
            self.deadlines[dispute_id] = rc.timestamp + MOVE_WINDOW
        assert game.dispute(dispute_id).deadline == self.deadlines[dispute_id]
        effects = []
        if kind == "defend":
            self.ledger.paid[who] += stake
            effects += books.defend(dispute_id)
        if replica.phase == Phase.RESOLVED:
            effects += books.resolve(dispute_id, replica.winner)
        assert self._task_events(rc) == effects, (self._task_events(rc), effects)
        if effects or kind == "defend" or replica.phase == Phase.RESOLVED:
            self.check(book.task)
        else:
            assert game.balance - self.base_balance == books.held
        return rc

    def _send(self, dispute_id, by, kind, args, stake):
        game = self.game
        if kind == "defend":
            return game.defend(dispute_id, sender=by, value=stake)
        if kind == "bisect":
            return game.bisect(dispute_id, *args, sender=by)
        if kind == "respond":
            return game.respond(dispute_id, *args, sender=by)
        if kind == "claim":
            return game.claimExecution(dispute_id, *args, sender=by)
        if kind == "step":
            state, proof = (args[0], args[1]) if len(args) > 1 else (args[0], b"")
            return game.step(dispute_id, state, proof, sender=by)
        assert kind == "timeout", kind
        return game.timeout(dispute_id, sender=by)

    # --- time -----------------------------------------------------------------------------------

    def at(self, timestamp: int):
        """The next transaction's block has ``timestamp``."""
        self.chain.pending_timestamp = timestamp

    def past_deadline(self, dispute_id: int, check: bool = True):
        """Checks that ``timeout`` reverts at the deadline (if the clock is not past it already), then
        moves the clock past it."""
        deadline = self.deadlines[dispute_id]
        if self.chain.pending_timestamp > deadline:
            return
        if check:
            self.at(deadline)
            assert self.move(dispute_id, self.keeper, "timeout", expect="DeadlineNotPassed") is None
        self.at(deadline + 1)

    def timeout(self, dispute_id: int):
        """The clock past the dispute's deadline, then ``timeout`` by the keeper."""
        self.past_deadline(dispute_id)
        rc = self.move(dispute_id, self.keeper, "timeout")
        assert rc is not None
        return rc

    # --- the dispute ----------------------------------------------------------------------------

    def play(
        self,
        dispute_id: int,
        server: ServerPlan,
        challenger: ChallengerPlan,
        *,
        until=None,
        moves: int | None = None,
        load_locals: bool = False,
        max_moves: int = 400,
    ) -> Transcript | None:
        """Plays the dispute by the plans to its end, or returns None on reaching phase ``until`` or
        after ``moves`` transactions. Every move goes through :meth:`move` (the replica and the books
        against the chain).

        ``load_locals``: the keeper checks that ``loadLocalValues`` reverts in phases ``Defense``,
        ``Graph`` and ``ExecutionClaim``, calls it once phase ``Execution`` or ``Step`` is reached
        (checking the values of protocol §4.3, the event, and that a second call reverts), and that it
        reverts once the dispute is resolved."""
        game = self.game
        tr, vm = self.transcripts[dispute_id], self.truth_trace()
        for sent in range(max_moves):
            view = self.replicas[dispute_id].view()
            if view.phase == Phase.RESOLVED:
                break
            if view.phase == until or sent == moves:
                return None
            if view.phase == Phase.STEP:
                tr.step_lo = view.lo
            if load_locals:
                self._locals_gate(dispute_id, view.phase, tr)
            move = next_move(view, server, challenger, tr, vm)
            kind = move[0]
            if kind == "timeout":
                self.past_deadline(dispute_id)
                rc = self.move(dispute_id, self.keeper, "timeout")
            elif kind == "step":
                by = server.account if move[1] == Party.SERVER else challenger.account
                rc = self.move(dispute_id, by, "step", move[2])
            else:
                by = server.account if view.turn == Party.SERVER else challenger.account
                rc = self.move(dispute_id, by, kind, *move[1:])
            assert rc is not None, f"the plan's move {move} was refused"
        else:
            raise AssertionError("the dispute did not end")
        tr.finish(View.of(game.dispute(dispute_id)), self._multi(game.dispute(dispute_id).taskId))
        if load_locals:
            with ape.reverts(game.LocalValuesNotLoadable):
                game.loadLocalValues(dispute_id, sender=self.keeper)
        return tr

    def _events(self, rc, dispute_id: int, phase) -> list:
        """The game's events of ``rc`` about the dispute, as :class:`Rules` tuples (``phase``: the phase
        the move was made in)."""
        out = []
        for e in rc.events:
            if e.contract_address != self.game.address:
                continue
            name = e.event_name
            if name not in DISPUTE_EVENTS:
                assert name in (*TASK_EVENTS, "DisputeOpened"), e
                continue
            assert e.disputeId == dispute_id, e
            if name == "DisputeDefended":
                out.append((name,))
            elif name == "Bisected":
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
            else:
                out.append((name, Party(e.winner), e.byTimeout))
        return out

    def _multi(self, task_id: int) -> bool:
        if task_id not in self._modes:
            self._modes[task_id] = self.game.task(task_id).multiPhase
        return self._modes[task_id]

    # --- local values ---------------------------------------------------------------------------

    def _locals_gate(self, dispute_id: int, phase: Phase, tr: Transcript):
        if phase in (Phase.DEFENSE, Phase.GRAPH, Phase.EXECUTION_CLAIM) and phase not in tr.gates:
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
        """Ends a task whose disputes are all resolved: finalizes it after the window (``check_window``:
        checking ``WindowOpen`` at the window's last second), or claims the bond share of each dispute
        its challenger won, in the order of their ids (the last takes the remainder). Then checks that
        the game holds nothing for the task, lets ``accounts`` withdraw, and (``empty``) that the game
        holds no wei."""
        game, book = self.game, self.books.tasks[task_id]
        assert book.open == 0 == game.result(task_id).openDisputes, "a dispute is still open"
        if book.status == TaskStatus.ANSWERED:
            end = book.submitted + book.window
            if self.chain.pending_timestamp <= end:
                if check_window:
                    self.at(end)
                    assert self.finalize(task_id, expect="WindowOpen") is None
                self.at(end + 1)
            assert self.finalize(task_id) is not None
        for i in self.disputes_of(task_id):
            d = self.books.disputes[i]
            if d.winner == Party.CHALLENGER and not d.share_claimed:
                assert self.claim_share(i) is not None
        assert self.books.locked(task_id) == 0, "wei stays locked"
        self.check(task_id)
        assert book.status in (TaskStatus.FINALIZED, TaskStatus.REJECTED, TaskStatus.CANCELLED)
        self.withdraw_all(accounts, empty=empty)
        return book.status

    def withdraw_all(self, accounts, *, empty: bool = True):
        for account in {a.address: a for a in accounts}.values():
            if self.game.credit(account):
                assert self.withdraw(account) is not None
        if empty:
            assert self.books.held == 0 and not any(self.books.credit.values())
            assert self.game.balance == self.base_balance == 0, "wei left in the game"


def expected_nets(server, requester, disputes: dict, *, revealed: bool = True) -> Counter:
    """Net wei per address of one task by protocol §5, in closed form. ``disputes``: challenger →
    ``(winner, defended)``, in the order of the disputes' ids (:meth:`Table.settle` claims the bond
    shares in that order: the last claim takes the remainder).

    Each dispute: the challenger's stake, and the server's if it defended, to the winner (an undefended
    dispute only the challenger can win). Any challenger win: the requester gets the reward back and half
    the server's bond, the winners share the other half. None: the server takes reward and bond if it
    revealed its output, else the requester does."""
    net: Counter = Counter()
    server, requester = _addr(server), _addr(requester)
    net[requester] -= REWARD
    net[server] -= SERVER_BOND
    winners = []
    for challenger, (winner, defended) in disputes.items():
        challenger = _addr(challenger)
        assert winner in (Party.SERVER, Party.CHALLENGER) and (defended or winner == Party.CHALLENGER)
        net[challenger] -= CHALLENGER_BOND
        if defended:
            net[server] -= CHALLENGER_BOND
        stakes = CHALLENGER_BOND * (2 if defended else 1)
        net[challenger if winner == Party.CHALLENGER else server] += stakes
        if winner == Party.CHALLENGER:
            winners.append(challenger)
    if winners:
        net[requester] += REWARD + SERVER_BOND // 2
        share = CHALLENGERS_HALF // len(winners)
        for w in winners:
            net[w] += share
        net[winners[-1]] += CHALLENGERS_HALF - share * len(winners)
    elif revealed:
        net[server] += REWARD + SERVER_BOND
    else:
        net[requester] += REWARD + SERVER_BOND
    return net
