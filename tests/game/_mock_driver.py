"""A move-by-move driver of ``OpmlGame`` disputes against ``AlphabetVM`` (no MIPS), and a Python
reference of the same rules, for the adversarial matrix of ``test_game_mock.py``.

The world of a task (docs/protocol.md):

- **Phase 1.** A task's graph has ``N`` nodes; value ``v_0`` is the input, node ``j`` writes ``v_{j+1}``.
  ``keys[j]`` is the chunk-Merkle key of ``v_j`` (``keys[0]`` the input key, ``keys[N]`` the output
  key; the values in between are random bytes). Position ``p`` (``0 … N``) is
  ``S_{p−1} = chunkMerkleKey(keys[0] ‖ … ‖ keys[p])``; position 0 is computed on-chain
  (``initialGraphState``), position ``N`` is the result's ``finalState``. A server that lies from node
  ``i`` on uses other values ``v_{i+1} … v_N`` (and another output): its positions ``0 … i`` are the
  truth, ``i+1 … N`` are not. A "garbage" liar bisects with random hashes past its lie.
- **Phase 2.** ``AlphabetVM(haltAt = T, haltStatus)`` stands in for the node (or whole-model)
  program; it ignores the local values, so the test picks the VM whose exit status is the program's
  verdict on the disputed node: valid (0) when the server's ``S_k`` is the true successor of the agreed
  ``S_{k−1}``, invalid (1) otherwise (:func:`node_verdict`). Position ``t`` is the state after
  ``min(t, T)`` steps. A phase-2 liar claims a valid exit after ``steps`` steps, with states that differ
  from the truth from step ``L`` on: real VM states ("vm": ``(t + OFFSET, running)``, whose preimages it
  holds, so it can step from them) or hashes nobody can open ("garbage").

Parties are plans (:class:`ServerPlan`, :class:`ChallengerPlan`); :func:`predict` plays them in Python
by the protocol's rules, :meth:`Table.play` plays them on-chain and records what happened, and
:meth:`Table.settle` ends everything (finalize or close, withdraw) and checks that the game holds no
wei.
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

RUNNING, VALID, INVALID = 3, 0, 1
OFFSET = 1000
"""A "vm" liar's states past its lie are at ``t + OFFSET``, far from ``haltAt``."""


class TaskStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ANSWERED = 2
    FINALIZED = 3
    REJECTED = 4


def max_rounds(n: int) -> int:
    """``⌈log2 n⌉`` (protocol §4.1): the most rounds a bisection over ``n`` positions takes."""
    return (n - 1).bit_length() if n > 1 else 0


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


# --- parties --------------------------------------------------------------------------------------


@dataclass
class ServerPlan:
    """What a server claims and when it stops moving.

    ``quit_at``: ``"graph"`` / ``"execution"`` (its first bisection in that phase), ``"claim"``
    (``claimExecution``), ``"step"`` (it does not step) or None."""

    account: object
    graph: Graph
    trace: Trace
    garbage_from: int | None = None  # phase-1 bisection claims at positions ≥ this are random
    quit_at: str | None = None
    seed: int = 0

    def graph_claim(self, p: int) -> bytes:
        if self.garbage_from is not None and self.garbage_from <= p < self.graph.n:
            return rand_hash(random.Random(f"g1-{self.seed}-{p}"), 3)
        return self.graph.positions[p]


@dataclass
class ChallengerPlan:
    """A challenger who knows the truth and answers by it, except: ``flip`` (round numbers, counted
    over both phases from 0) where it answers the opposite, ``always`` (it answers that every round),
    ``quit_round`` (it does not respond in that round), ``steps=False`` (it never steps)."""

    account: object
    graph: Graph  # the true graph
    trace: Trace  # the true VM run
    flip: frozenset = frozenset()
    always: bool | None = None
    quit_round: int | None = None
    steps: bool = True

    @property
    def honest(self) -> bool:
        return not self.flip and self.always is None

    def answer(self, rnd: int, phase: Phase, mid: int, claim: bytes) -> bool:
        if self.always is not None:
            return self.always
        truth = self.graph.positions[mid] if phase == Phase.GRAPH else self.trace.hash(mid)
        return (bytes(claim) == truth) != (rnd in self.flip)


def node_verdict(truth: Graph, hi_hash: bytes) -> int:
    """The node program's exit status on the disputed node k: valid iff the server's ``S_k`` is the
    true successor of the agreed ``S_{k−1}``. Past a liar's first wrong value every node is wrong (its
    values are random), so that is: ``S_k`` is the truth (``S_{k−1}``, before it, then is too)."""
    return VALID if bytes(hi_hash) in truth.positions else INVALID


# --- the Python reference -------------------------------------------------------------------------


@dataclass
class Prediction:
    winner: Party
    by_timeout: bool
    node: int | None
    rounds: dict  # Phase.GRAPH / Phase.EXECUTION → bisection rounds played
    lo_hash: bytes | None = None  # phase 1's end (multi-phase)
    hi_hash: bytes | None = None


def _bisect_py(n, lo_hash, hi_hash, claim, answer, phase, rnd0, quit_server, quit_round):
    """One bisection in Python; returns (lo, lo_hash, hi_hash, rounds, timed-out party or None)."""
    lo, hi, rnd = 0, n, rnd0
    while hi - lo > 1:
        if quit_server:
            return lo, lo_hash, hi_hash, rnd - rnd0, Party.SERVER
        mid = (lo + hi) // 2
        c = claim(mid)
        if rnd == quit_round:  # the server has bisected; the challenger does not respond
            return lo, lo_hash, hi_hash, rnd - rnd0 + 1, Party.CHALLENGER
        if answer(rnd, phase, mid, c):
            lo, lo_hash = mid, c
        else:
            hi, hi_hash = mid, c
        rnd += 1
    return lo, lo_hash, hi_hash, rnd - rnd0, None


def predict(server: ServerPlan, challenger: ChallengerPlan, multi_phase: bool, vm_status: int) -> Prediction:
    """The dispute played by the protocol's rules, with the VM exiting with ``vm_status``."""
    rounds = {Phase.GRAPH: 0, Phase.EXECUTION: 0}
    node = lo1 = hi1 = None
    rnd = 0
    if multi_phase:
        g = server.graph
        k, lo1, hi1, rounds[Phase.GRAPH], quitter = _bisect_py(
            g.n,
            challenger.graph.positions[0],
            g.final_state,
            server.graph_claim,
            challenger.answer,
            Phase.GRAPH,
            0,
            server.quit_at == "graph",
            challenger.quit_round,
        )
        rnd = rounds[Phase.GRAPH]
        if quitter is not None:
            return Prediction(
                Party.CHALLENGER if quitter == Party.SERVER else Party.SERVER, True, None, rounds
            )
        node = k
    if server.quit_at == "claim":
        return Prediction(Party.CHALLENGER, True, node, rounds, lo1, hi1)
    tr = server.trace
    truth = Trace(tr.halt_at, vm_status)
    _lo, lo_hash, hi_hash, rounds[Phase.EXECUTION], quitter = _bisect_py(
        tr.claimed_steps,
        truth.hash(0),
        tr.hash(tr.claimed_steps),
        tr.hash,
        challenger.answer,
        Phase.EXECUTION,
        rnd,
        server.quit_at == "execution",
        challenger.quit_round,
    )
    if quitter is not None:
        winner = Party.CHALLENGER if quitter == Party.SERVER else Party.SERVER
        return Prediction(winner, True, node, rounds, lo1, hi1)
    winner, by_timeout, _, _ = step_choice(server, challenger, lo_hash, hi_hash, truth)
    return Prediction(winner, by_timeout, node, rounds, lo1, hi1)


def step_choice(server: ServerPlan, challenger: ChallengerPlan, lo_hash, hi_hash, truth: Trace):
    """Who steps and who wins. A party steps when it holds the state data of ``lo_hash`` and the step
    (run by the VM ``truth``) favours it; if neither does, the step times out against the server.
    Returns ``(winner, by_timeout, stepping account or None, state data or None)``."""
    for party, plan, trace in (
        (Party.SERVER, server, server.trace),
        (Party.CHALLENGER, challenger, challenger.trace),
    ):
        if party == Party.SERVER and server.quit_at == "step":
            continue
        if party == Party.CHALLENGER and not challenger.steps:
            continue
        state = trace.opens(lo_hash)
        if state is None:
            continue
        post = vm_hash(vm_step(state, truth.halt_at, truth.halt_status))
        if (post == bytes(hi_hash)) == (party == Party.SERVER):
            return party, False, plan.account, state
    return Party.CHALLENGER, True, None, None


# --- on-chain -------------------------------------------------------------------------------------


@dataclass
class Played:
    """What :meth:`Table.play` saw."""

    dispute_id: int
    winner: Party
    by_timeout: bool
    node: int | None
    rounds: dict  # Phase.GRAPH / Phase.EXECUTION → Bisected events
    responded: dict  # the same for Responded events
    step_lo: int | None  # the phase-2 position of the one step, once reached
    moves: list = field(default_factory=list)  # (kind, phase) in order


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
    ``timeout``/``finalize``/``closeDispute``) and a ledger."""

    game: object
    vm: object
    oracle: object
    keeper: object
    chain: object
    ledger: Ledger = field(default_factory=Ledger)

    disputes: dict = field(default_factory=dict)  # task id → dispute ids opened through `challenge`
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
        rc = self.game.challenge(task_id, sender=challenger, value=CHALLENGER_BOND)
        self.ledger.paid[challenger.address] += CHALLENGER_BOND
        dispute_id = next(e for e in rc.events if e.event_name == "DisputeOpened").disputeId
        self.disputes.setdefault(task_id, []).append(dispute_id)
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
        self, dispute_id: int, server: ServerPlan, challenger: ChallengerPlan, *, until=None, max_moves=400
    ) -> Played | None:
        """Plays the dispute to its end (or returns None on reaching phase ``until``)."""
        game = self.game
        rounds = {Phase.GRAPH: 0, Phase.EXECUTION: 0}
        responded = {Phase.GRAPH: 0, Phase.EXECUTION: 0}
        moves: list = []
        rnd = 0
        winner = by_timeout = step_lo = None
        entered = False  # phase 2 reached (node k fixed)
        for _ in range(max_moves):
            d = game.dispute(dispute_id)
            phase, turn = Phase(d.phase), Party(d.turn)
            if phase == Phase.RESOLVED:
                break
            if phase == until:
                return None
            entered = entered or phase in (Phase.EXECUTION_CLAIM, Phase.EXECUTION, Phase.STEP)
            rc = None
            if phase in (Phase.GRAPH, Phase.EXECUTION) and turn == Party.SERVER:
                kind = "graph" if phase == Phase.GRAPH else "execution"
                if server.quit_at == kind and rounds[phase] == 0:
                    rc = self._timeout(dispute_id)
                else:
                    mid = (d.lo + d.hi) // 2
                    claim = server.graph_claim(mid) if phase == Phase.GRAPH else server.trace.hash(mid)
                    rc = game.bisect(dispute_id, claim, sender=server.account)
                    ev = [e for e in rc.events if e.event_name == "Bisected"]
                    assert len(ev) == 1 and ev[0].position == mid and bytes(ev[0].claim) == claim
                    rounds[phase] += 1
                    moves.append(("bisect", phase))
            elif turn == Party.CHALLENGER:
                if rnd == challenger.quit_round:
                    rc = self._timeout(dispute_id)
                else:
                    mid = (d.lo + d.hi) // 2
                    agree = challenger.answer(rnd, phase, mid, d.midHash)
                    rc = game.respond(dispute_id, agree, sender=challenger.account)
                    ev = [e for e in rc.events if e.event_name == "Responded"]
                    assert len(ev) == 1 and ev[0].position == mid and ev[0].agree == agree
                    responded[phase] += 1
                    moves.append(("respond", phase))
                    rnd += 1
            elif phase == Phase.EXECUTION_CLAIM:
                if server.quit_at == "claim":
                    rc = self._timeout(dispute_id)
                else:
                    steps = server.trace.claimed_steps
                    rc = game.claimExecution(
                        dispute_id, steps, server.trace.hash(steps), sender=server.account
                    )
                    moves.append(("claim", phase))
            elif phase == Phase.STEP:
                truth = self.truth_trace()
                step_lo = d.lo
                _, _, account, state = step_choice(server, challenger, d.loHash, d.hiHash, truth)
                if account is None:
                    rc = self._timeout(dispute_id)
                else:
                    rc = game.step(dispute_id, state, b"", sender=account)
                    [ev] = [e for e in rc.events if e.event_name == "StepPlayed"]
                    assert bytes(ev.postState) == vm_hash(vm_step(state, truth.halt_at, truth.halt_status))
                    moves.append(("step", phase))
            else:
                raise AssertionError(f"unexpected phase {phase!r}, turn {turn!r}")
            for ev in rc.events:
                if ev.event_name == "DisputeResolved" and ev.disputeId == dispute_id:
                    winner, by_timeout = Party(ev.winner), ev.byTimeout
        else:
            raise AssertionError("the dispute did not end")
        d = game.dispute(dispute_id)
        assert Phase(d.phase) == Phase.RESOLVED and Party(d.winner) == winner and winner != Party.NONE
        node = d.node if entered and self._multi(d.taskId) else None
        return Played(dispute_id, winner, by_timeout, node, rounds, responded, step_lo, moves)

    def _timeout(self, dispute_id):
        self.past_deadline(dispute_id)
        return self.game.timeout(dispute_id, sender=self.keeper)

    def _multi(self, task_id: int) -> bool:
        if task_id not in self._modes:
            self._modes[task_id] = self.game.task(task_id).multiPhase
        return self._modes[task_id]

    # --- local values ---------------------------------------------------------------------------

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
