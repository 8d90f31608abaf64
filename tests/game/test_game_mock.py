"""The verification game against ``AlphabetVM``: an adversarial matrix of honest and lying servers and
challengers (docs/protocol.md §3–§5), played move by move by ``_mock_driver``.

A dispute opens in phase ``Defense``: the server stakes ``challengerBond`` (``defend``) or loses by
timeout. A bisection round is one halving and one transaction (protocol §4.1): the challenger opens each phase
with ``bisect`` (its claim at the midpoint); every later move is a ``respond`` by whoever's turn it is,
the verdict on the other side's pending claim and its own claim at the next midpoint. Rounds are
numbered over the dispute from 0; in a phase's round ``j`` the challenger claims for even ``j`` and the
server for odd ``j``, and the other side judges. A party's part in a round (its claim or its verdict) is
what ``flip`` makes a lie; ``quit_at = (phase, i)`` is a party's ``i``-th transaction of that phase.

Every played case checks, after every move, that the contract's dispute is the Python reference's
(``_mock_driver.Rules``) and that its events are the reference's, and after every call that moves
money that the credits, the balance and the task, result and dispute fields are those of the money
reference (``_mock_driver.Books``, which must conserve wei); that the whole transcript (moves and
events: every claim with its author and position, every verdict) is the one ``predict`` gives; who
wins (and, where one side is honest, that it is the honest side); the rounds and transactions per phase
(protocol §4.1, §6); ``loadLocalValues`` (it reverts before phase 2's bisection and after the end,
writes the values of protocol §4.3 once); each account's net wei against protocol §5 in closed form
(``expected_nets``); that the task ends Finalized or Rejected with every dispute Resolved and every
bond share claimed, that nothing stays locked, and that the game holds no wei once everybody has
withdrawn. Randomness (graph values, lies) is seeded.

``AlphabetVM`` ignores local values, so each case runs on the game whose VM exits with the node
program's verdict on the node the dispute reaches (``plans``, ``node_verdict``).
"""

import random
from collections import Counter

import ape
import pytest
from _ci import slow_except
from _mock_driver import (
    CHALLENGER_BOND,
    CHALLENGERS_HALF,
    COMMITMENT,
    INVALID,
    MAX_STEPS,
    MIN_WINDOW,
    MOVE_WINDOW,
    REWARD,
    SERVER_BOND,
    VALID,
    WINDOW,
    ZERO,
    Books,
    ChallengerPlan,
    Party,
    Phase,
    RuleError,
    ServerPlan,
    Table,
    TaskStatus,
    Trace,
    expected_nets,
    honest_graph,
    lying_graph,
    max_rounds,
    min_rounds,
    node_verdict,
    other,
    path_rounds,
    phase_one,
    predict,
    vm_hash,
    vm_state,
)

from opml.oracle import ChunkTree, localize_ident

INPUT = b"an input of more than one chunk: " + bytes(range(40))
NODE_COUNTS = (1, 4, 5)
HALTS = (1, 4, 6)
DEFENSE, GRAPH, CLAIM, EXECUTION, STEP, RESOLVED = (
    Phase.DEFENSE,
    Phase.GRAPH,
    Phase.EXECUTION_CLAIM,
    Phase.EXECUTION,
    Phase.STEP,
    Phase.RESOLVED,
)
SERVER, CHALLENGER = Party.SERVER, Party.CHALLENGER


@pytest.fixture(scope="module")
def decks(project, deployer, oracle):
    """One ``OpmlGame`` per ``AlphabetVM(haltAt, haltStatus)``, each with a model per node count (input
    ``INPUT``, step bound ``MAX_STEPS``)."""
    out = {}
    for halt_at in HALTS:
        for status in (VALID, INVALID):
            vm = deployer.deploy(project.AlphabetVM, oracle, halt_at, status)
            game = deployer.deploy(
                project.OpmlGame, vm, SERVER_BOND, CHALLENGER_BOND, MOVE_WINDOW, MIN_WINDOW
            )
            program = vm.stateHash(vm.initialState())
            models = {}
            for n in NODE_COUNTS:
                rc = game.registerModel(
                    COMMITMENT, n, len(INPUT), MAX_STEPS, program, program, "ipfs://mock", sender=deployer
                )
                models[n] = rc.events[0].modelId
            out[(halt_at, status)] = (vm, game, models)
    return out


@pytest.fixture
def keeper(accounts):
    return accounts[5]


@pytest.fixture
def challenger2(accounts):
    return accounts[4]


@pytest.fixture
def server2(accounts):
    return accounts[6]


@pytest.fixture
def sock(accounts):
    """An account of the server's own, challenging its result."""
    return accounts[7]


@pytest.fixture
def challenger3(accounts):
    return accounts[8]


@pytest.fixture
def table(decks, oracle, keeper, chain):
    """``table(haltAt, haltStatus)`` → (a :class:`Table` with a fresh ledger, model ids by N)."""

    def make(halt_at, status):
        vm, game, models = decks[(halt_at, status)]
        return Table(game, vm, oracle, keeper, chain), models

    return make


# --- one dispute, end to end ----------------------------------------------------------------------


def plans(
    server,
    challenger,
    *,
    n,
    t,
    multi=True,
    lie_node=None,
    lie_step=None,
    style="vm",
    steps=None,
    garbage=False,
    flip=(),
    server_flip=(),
    always=None,
    quit_server=None,
    quit_challenger=None,
    challenger_steps=True,
    seed=0,
):
    """The truth, a server plan, a challenger plan and the VM verdict for one case.

    The server lies in phase 1 from ``lie_node`` (None: honest result) and in the rounds of
    ``server_flip``; the challenger in the rounds of ``flip`` or with ``always``. The VM verdict is the
    node program's on what phase 1 ends with (single-phase: on the result). The server's phase-2 trace
    is the truth where that verdict is valid, and otherwise a lie from ``lie_step`` (default: only the
    final state, step ``t``)."""
    truth = honest_graph(INPUT, n, seed)
    graph = truth if lie_node is None else lying_graph(truth, lie_node, seed)
    garbage_from = lie_node + 1 if garbage else None
    sp = ServerPlan(
        server, graph, Trace(t, VALID), garbage_from, quit_server, seed=seed, flip=frozenset(server_flip)
    )
    cp = ChallengerPlan(
        challenger,
        truth,
        Trace(t, VALID),
        frozenset(flip),
        always,
        quit_challenger,
        challenger_steps,
        seed=seed,
    )
    if multi:
        first = phase_one(sp, cp)  # phase 1 and the execution claim do not depend on the VM
        verdict = VALID if first is None else node_verdict(truth, first.node, first.agreed, first.claimed)
    else:
        verdict = VALID if lie_node is None else INVALID
    cp.trace = Trace(t, verdict)
    if verdict == VALID:
        sp.trace = Trace(t, VALID, steps=steps)
    else:
        lie_from = t if lie_step is None else lie_step
        sp.trace = Trace(t, INVALID, steps=steps, lie_from=lie_from, style=style, seed=seed)
    return truth, sp, cp, verdict


def run(table, requester, sp, cp, truth, verdict, *, n, multi=True, honest_online=True):
    """Creates, answers, challenges, plays and settles one task; checks everything a case shares.
    ``honest_online=False``: the honest side (if any) may miss a move, so it may lose."""
    t = sp.trace.halt_at
    tb, models = table(t, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[n], INPUT, multi)
    input_key = truth.keys[0]
    assert bytes(game.initialGraphState(input_key)) == truth.positions[0]
    tb.submit(task_id, sp.account, sp.graph)
    dispute_id = tb.challenge(task_id, cp.account)

    want = predict(sp, cp, multi, verdict)
    got = tb.play(dispute_id, sp, cp, load_locals=True)
    assert got.events == want.events
    assert got.txs == want.txs
    assert got.outcome == want.outcome
    defended = sp.quit_at != "defend"
    assert got.txs[0] == (("defend" if defended else "timeout"), DEFENSE, SERVER)
    assert got.events[0] == (("DisputeDefended",) if defended else ("DisputeResolved", CHALLENGER, True))
    check_rounds(got, n if multi else None, sp.trace.claimed_steps)
    check_claims(got, sp, cp, truth, multi)

    # Local values (protocol §4.3): loadable once phase 2's bisection (or the step) is reached.
    if got.claimed is not None:
        assert got.loaded in (EXECUTION, STEP)
        check_local_values(tb, dispute_id, got, multi, input_key)
    else:
        assert got.loaded is None
        assert tb.local_values(dispute_id) == {i: None for i in range(1, 5)}

    everyone = [requester, sp.account, cp.account, tb.keeper]
    status = tb.settle(task_id, everyone, check_window=True)
    assert status == (TaskStatus.REJECTED if got.winner == CHALLENGER else TaskStatus.FINALIZED)
    nets = expected_nets(sp.account, requester, {cp.account: (got.winner, defended)})
    for account in everyone:
        assert tb.ledger.net(account) == nets[account.address], account
    if status == TaskStatus.REJECTED:
        assert tb.ledger.net(requester) == SERVER_BOND // 2  # the reward back and half the bond
    if honest_online:
        honest_wins(got, sp, cp, tb, truth)
    return tb, got


def check_rounds(got, n, steps):
    """Per bisection phase (protocol §4.1, §6): the challenger opens with ``bisect``, then the parties
    alternate ``respond``s; a finished phase over ``m ≥ 2`` positions took ``h`` rounds with
    ``⌊log2 m⌋ ≤ h ≤ ⌈log2 m⌉`` (the path to its end), ``h`` claims and ``1 + h`` transactions (none for
    ``m = 1``); an unfinished one, as many claims as transactions."""
    sizes = {GRAPH: (n, got.node), EXECUTION: (steps if got.claimed is not None else None, got.step_lo)}
    for phase, (size, end) in sizes.items():
        h, claims, moves = got.rounds[phase], got.claims[phase], got.moves(phase)
        if size is None:
            assert h == claims == moves == 0
            continue
        assert h <= max_rounds(size)
        if end is not None:
            assert min_rounds(size) <= h == path_rounds(size, end)
            assert claims == h and moves == (1 + h if size >= 2 else 0)
        else:
            assert claims == moves == (h + 1 if moves else 0)
        bisection = [(kind, p) for kind, ph, p in got.txs if ph == phase and kind in ("bisect", "respond")]
        for i, (kind, party) in enumerate(bisection):
            assert kind == ("bisect" if i == 0 else "respond")
            assert party == (CHALLENGER if i % 2 == 0 else SERVER)
        authors = [e[2] for e in got.events if e[0] == "Bisected" and e[1] == phase]
        judges = [e[2] for e in got.events if e[0] == "Responded" and e[1] == phase]
        assert authors == [CHALLENGER if i % 2 == 0 else SERVER for i in range(claims)]
        assert judges == [SERVER if i % 2 == 0 else CHALLENGER for i in range(h)]


def check_claims(got, sp, cp, truth, multi):
    """What phase 1 ends with, against the truth (protocol §4.1 soundness, §4.3)."""
    if got.claimed is None:
        return
    if not multi:
        assert got.claimed == sp.graph.final_state and got.agreed is None and got.node is None
        return
    k = got.node
    server_honest = sp.graph == truth and sp.honest_play
    if cp.honest or server_honest:  # an honest party agrees only with true states
        assert got.agreed == truth.positions[k]
    if server_honest:
        assert got.claimed == truth.positions[k + 1]
    elif cp.honest:
        assert got.claimed != truth.positions[k + 1]


def check_local_values(tb, dispute_id, got, multi, input_key):
    """The local values of protocol §4.3 under the game's localized keys for the dispute's context."""
    values = tb.local_values(dispute_id, written=(1, 2, 3, 4) if multi else (1, 2, 3))
    if multi:
        assert values == {
            1: (COMMITMENT, 32),
            2: (got.node.to_bytes(4, "little") + bytes(28), 4),
            3: (got.agreed, 32),  # S_{k−1}
            4: (got.claimed, 32),  # the server's S_k
        }
    else:
        assert values == {1: (COMMITMENT, 32), 2: (bytes(input_key), 32), 3: (got.claimed, 32), 4: None}


def honest_wins(got, sp, cp, tb, truth):
    """The protocol's promise: the honest side wins, and takes the other side's stake (an honest
    server, also the reward; an honest challenger, the liar's whole bond, as the only winner)."""
    server_honest = sp.graph == truth and sp.trace.lie_from is None and sp.honest_play
    defended = sp.quit_at != "defend"
    if server_honest:  # a challenger of an honest result lies, however it plays
        assert got.winner == SERVER and defended
        assert tb.ledger.net(sp.account) == REWARD + CHALLENGER_BOND
    elif cp.honest:
        assert got.winner == CHALLENGER
        assert tb.ledger.net(cp.account) == CHALLENGERS_HALF + (CHALLENGER_BOND if defended else 0)


# --- a lying server against an honest challenger --------------------------------------------------


# Nodes 0 and 4 take 2 and 3 rounds; the others are the slow tier (tests/_ci.py).
@pytest.mark.parametrize("lie_node", slow_except({0, 4}, range(5)))
def test_server_lies_from_each_node(table, requester, server, challenger, lie_node):
    """N = 5: the server's values are wrong from node ``lie_node`` on (and its phase-2 claim only in
    its final state); the honest challenger finds that node and wins by the step."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=lie_node, seed=11)
    assert verdict == INVALID
    tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    assert got.node == lie_node and got.winner == CHALLENGER and not got.by_timeout
    assert got.kinds()[-1] == "step"
    assert got.claimed == sp.graph.positions[lie_node + 1]
    assert tb.ledger.net(server) == -SERVER_BOND - CHALLENGER_BOND
    # Rounds: ⌈log2 5⌉ = 3 is the most; the paths to nodes 0, 1 and 2 take ⌊log2 5⌋ = 2.
    assert got.rounds[GRAPH] == (2 if lie_node < 3 else 3) == path_rounds(5, lie_node)
    assert got.rounds[EXECUTION] == 3 == path_rounds(6, 5)


@pytest.mark.parametrize("lie_step", slow_except({0, 3}, [1, 2, 4, 6]))
def test_server_lies_from_each_step(table, requester, server, challenger, lie_step):
    """T = 6: the server's phase-2 states are wrong from step ``lie_step`` on (1 … T)."""
    lie_node = random.Random(lie_step).randrange(5)
    truth, sp, cp, verdict = plans(
        server, challenger, n=5, t=6, lie_node=lie_node, lie_step=lie_step, seed=12
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    # The disputed step is the first one the server lies about.
    assert got.step_lo == lie_step - 1 and got.winner == CHALLENGER and not got.by_timeout


@pytest.mark.parametrize(
    "lie_node, lie_step, steps, garbage",
    [(1, 3, None, True), (2, 8, 8, False), (4, 9, 11, False), (0, 3, 3, False)],
    ids=["garbage-from-step-3", "steps-past-halt", "lie-past-halt", "steps-before-halt"],
)
def test_server_other_lies(table, requester, server, challenger, lie_node, lie_step, steps, garbage):
    """Random hashes nobody can open (phase 1 past the lie, phase 2 from ``lie_step``), and execution
    claims of more or fewer steps than the program runs (positions past the halt repeat its state)."""
    style = "garbage" if garbage else "vm"
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        lie_node=lie_node,
        lie_step=lie_step,
        steps=steps,
        style=style,
        garbage=garbage,
        seed=13,
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    assert got.node == lie_node and got.winner == CHALLENGER
    assert got.step_lo == lie_step - 1


# N = T = 4: every path takes exactly 2 rounds per phase, rounds 0–1 in phase 1 and 2–3 in phase 2.
# In rounds 0 and 2 the challenger claims and the server judges; in rounds 1 and 3 the reverse.
ROUNDS = [(r,) for r in range(4)] + [tuple(range(4))]
ROUND_IDS = ["round-0-verdict", "round-1-claim", "round-2-verdict", "round-3-claim", "every-round"]


@pytest.mark.parametrize("lie_node", slow_except({0}, [0, 2]))
@pytest.mark.parametrize("server_flip", ROUNDS, ids=ROUND_IDS)
def test_server_lies_at_each_round(table, requester, server, challenger, server_flip, lie_node):
    """A lying result whose server also lies in its part of each round (a random claim, or the verdict
    its own claims do not give): the honest challenger still wins."""
    truth, sp, cp, verdict = plans(
        server, challenger, n=4, t=4, lie_node=lie_node, server_flip=server_flip, seed=14
    )
    assert verdict == INVALID
    tb, got = run(table, requester, sp, cp, truth, verdict, n=4)
    assert got.winner == CHALLENGER
    assert got.rounds == {GRAPH: 2, EXECUTION: 2}
    assert tb.ledger.net(server) == -SERVER_BOND - CHALLENGER_BOND
    assert tb.ledger.net(challenger) == CHALLENGERS_HALF + CHALLENGER_BOND


# --- an honest server against a lying challenger --------------------------------------------------


@pytest.mark.parametrize(
    "flip, always",
    slow_except(
        {1, 4, 5, 7}, [(r, None) for r in ROUNDS] + [((), False), ((), True), ((0, 2), True)], unpack=True
    ),
    ids=[*ROUND_IDS[:4], "every-round", "always-disagree", "always-agree", "agree-and-lying-claims"],
)
def test_challenger_lies_at_each_round(table, requester, server, challenger, flip, always):
    """N = T = 4: the challenger lies in its part of a round (rounds 0 and 2: its claim is a random
    hash; 1 and 3: its verdict is the opposite of the truth), in every round, or judges every claim the
    same way."""
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, flip=flip, always=always, seed=21)
    assert verdict == VALID
    tb, got = run(table, requester, sp, cp, truth, verdict, n=4)
    assert got.winner == SERVER and not got.by_timeout
    assert got.rounds == {GRAPH: 2, EXECUTION: 2}  # 4 positions: exactly ⌈log2 4⌉
    assert tb.ledger.net(server) == REWARD + CHALLENGER_BOND
    assert tb.ledger.net(challenger) == -CHALLENGER_BOND


def test_challenger_claim_defended_by_the_server():
    """When the last claim disputed in phase 1 is the challenger's (``hiParty`` = challenger), the server
    defends its own, different S_k; with a false challenger claim there, that is the truth."""
    truth, sp, cp, _ = plans("S", "C", n=4, t=4, flip=(0,), seed=21)
    first = phase_one(sp, cp)
    lie = cp.claim(GRAPH, 2, 0)
    assert lie != truth.positions[2]
    assert first.events[:4] == [
        ("DisputeDefended",),
        ("Bisected", GRAPH, CHALLENGER, 2, lie),
        ("Responded", GRAPH, SERVER, 2, False),
        ("Bisected", GRAPH, SERVER, 1, truth.positions[1]),
    ]
    assert first.node == 1 and first.claimed == truth.positions[2]


# --- single-phase mode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lie, lie_step, flip, server_flip, always",
    slow_except(
        {2, 3, 5},
        [
            (False, None, (), (), False),
            (False, None, (1,), (), None),
            (False, None, (0,), (), None),
            (True, 1, (), (), None),
            (True, 6, (), (), None),
            (True, 6, (), (0, 1, 2), None),
        ],
        unpack=True,
    ),
    ids=[
        "honest-vs-disagree",
        "honest-vs-flip-1",
        "honest-vs-lying-claim",
        "liar-step-1",
        "liar-step-T",
        "liar-flips",
    ],
)
def test_single_phase(table, requester, server, challenger, lie, lie_step, flip, server_flip, always):
    """``multiPhase = false``: phase 2 over the whole-model program, from ``challenge`` on; the server's
    ``claimedState`` is the result's ``S_{N−1}``."""
    lie_node = 2 if lie else None
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        multi=False,
        lie_node=lie_node,
        lie_step=lie_step,
        flip=flip,
        server_flip=server_flip,
        always=always,
        seed=31,
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5, multi=False)
    assert got.rounds[GRAPH] == 0 and got.node is None
    assert not any(p == GRAPH for _, p, _ in got.txs)
    assert got.winner == (CHALLENGER if lie else SERVER)
    if lie and not server_flip:
        assert got.step_lo == lie_step - 1


# --- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, t, lie",
    slow_except(
        {0, 4, 5},
        [(1, 1, True), (4, 1, True), (1, 1, False), (1, 4, True), (4, 4, False), (5, 6, True)],
        unpack=True,
    ),
)
def test_round_counts(table, requester, server, challenger, n, t, lie):
    """Rounds per phase (``Responded`` events; as many ``Bisected``) against ⌈log2 n⌉ (protocol §4.1, §6).
    With n = 1 a phase has no transaction; with n a power of two every path takes exactly ⌈log2 n⌉
    rounds (for other n see ``test_server_lies_from_each_node``); a phase of h rounds is 1 + h
    transactions."""
    lie_node = 0 if lie else None
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=n,
        t=t,
        lie_node=lie_node,
        lie_step=1 if lie else None,
        always=None if lie else False,
        seed=41,
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=n)
    want_graph = path_rounds(n, got.node)
    want_exec = path_rounds(t, got.step_lo)
    assert got.rounds == got.claims == {GRAPH: want_graph, EXECUTION: want_exec}
    if n & (n - 1) == 0:
        assert want_graph == max_rounds(n)
    if t & (t - 1) == 0:
        assert want_exec == max_rounds(t)
    # Transactions (protocol §6): challenge, defend, phase 1, claimExecution, phase 2, step.
    for phase, size, h in ((GRAPH, n, want_graph), (EXECUTION, t, want_exec)):
        assert got.moves(phase) == (1 + h if size > 1 else 0) <= 1 + max_rounds(size)
    kinds = got.kinds()
    assert len(kinds) + 1 == 1 + 1 + got.moves(GRAPH) + 1 + got.moves(EXECUTION) + 1
    assert kinds.count("defend") == kinds.count("claim") == kinds.count("step") == 1


def test_worst_paths_reach_ceil_log2():
    """Over all end points, the longest bisection path has ⌈log2 n⌉ rounds and the shortest ⌊log2 n⌋."""
    for n in range(1, 70):
        lengths = [path_rounds(n, k) for k in range(n)]
        assert max(lengths) == max_rounds(n)
        assert min(lengths) == min_rounds(n)


# --- the reference, exhaustively ------------------------------------------------------------------


def test_reference_is_sound():
    """The Python reference over many random cases (N, T ≤ 9, both modes): an honest challenger beats a
    lying server however it lies (phase 1, phase 2, garbage, its part of any rounds), and an honest
    server beats a challenger however it lies, without a timeout; every finished phase takes the
    rounds of its path. (The on-chain cases check the contract against this reference move by move.)"""
    rng = random.Random(7)
    seen = Counter()
    for i in range(400):
        n, t, multi = rng.randint(1, 9), rng.randint(1, 9), rng.random() < 0.75
        if i % 2 == 0:
            steps = rng.choice([None, None, rng.randint(1, 12)])
            lie_step = rng.randint(1, t if steps is None else min(steps, t))
            truth, sp, cp, verdict = plans(
                "S",
                "C",
                n=n,
                t=t,
                multi=multi,
                lie_node=rng.randrange(n),
                lie_step=lie_step,
                style=rng.choice(["vm", "garbage"]),
                steps=steps,
                garbage=rng.random() < 0.3,
                server_flip=rng.sample(range(12), rng.randint(0, 4)),
                seed=1000 + i,
            )
            want = CHALLENGER
        else:
            flip = rng.sample(range(12), rng.randint(0, 5))
            always = rng.choice([None, True, False])
            truth, sp, cp, verdict = plans(
                "S", "C", n=n, t=t, multi=multi, flip=flip, always=always if flip else bool(always), seed=i
            )
            assert verdict == VALID
            want = SERVER
        got = predict(sp, cp, multi, verdict)
        assert got.winner == want and not got.by_timeout, (i, sp, cp, got)
        check_rounds(got, n if multi else None, sp.trace.claimed_steps)
        check_claims(got, sp, cp, truth, multi)
        seen[want, got.txs[-1][2]] += 1
    # Either side's step wins: the honest side holds every state it needs.
    assert set(seen) == {(CHALLENGER, CHALLENGER), (SERVER, SERVER)}


def test_money_reference_is_conserved():
    """The money reference (``Books``) over many random tasks: any number of disputes, each defended
    or not, won by either side (an undefended one only by its challenger), resolved in any order,
    shares claimed in any order after refused early claims: it conserves wei at every step, ends with
    nothing locked, and each account's total is the closed form of ``expected_nets``."""
    rng = random.Random(17)
    for case in range(300):
        books, now = Books(), 1000
        requester, server = "R", "S"
        challengers = [f"C{i}" for i in range(rng.randint(0, 5))]
        revealed = rng.random() < 0.8
        graph = honest_graph(INPUT, 2, case)
        books.create(0, requester, REWARD, WINDOW, now)
        books.commit(0, server, graph.final_state, SERVER_BOND, now)
        if revealed:
            books.reveal(0, server, graph)
        outcomes = {}
        for i, c in enumerate(challengers):
            books.challenge(0, i, c, CHALLENGER_BOND, now)
            defended = rng.random() < 0.6
            if defended:
                books.defend(i)
            winner = rng.choice([SERVER, CHALLENGER]) if defended else CHALLENGER
            outcomes[c] = (winner, defended)
            assert books.conserved()
        order = list(range(len(challengers)))
        rng.shuffle(order)
        for n, i in enumerate(order):
            with pytest.raises(RuleError, match="NoBondShare"):  # not resolved yet
                books.claim_share(i)
            for j in order[:n]:  # resolved: no share while a dispute is open
                won = outcomes[challengers[j]][0] == CHALLENGER
                with pytest.raises(RuleError, match="DisputesOpen" if won else "NoBondShare"):
                    books.claim_share(j)
            books.resolve(i, outcomes[challengers[i]][0])
            assert books.conserved()
        if not any(w == CHALLENGER for w, _ in outcomes.values()):
            books.finalize(0, now + WINDOW + 1)
        claims = [i for i in order if outcomes[challengers[i]][0] == CHALLENGER]
        rng.shuffle(claims)
        for i in claims:
            books.claim_share(i)
            assert books.conserved()
        assert books.locked() == 0, case
        ordered = {challengers[i]: outcomes[challengers[i]] for i in claims}
        ordered.update({c: o for c, o in outcomes.items() if c not in ordered})
        nets = expected_nets(server, requester, ordered, revealed=revealed)
        paid = Counter({requester: REWARD, server: SERVER_BOND})
        for c, (_winner, defended) in outcomes.items():
            paid[c] += CHALLENGER_BOND
            paid[server] += CHALLENGER_BOND if defended else 0
        for a in {requester, server, *challengers}:
            assert books.credit[a] - paid[a] == nets[a], (case, a)
        assert sum(nets.values()) == 0


# --- honest result, no challenge ------------------------------------------------------------------


def test_unchallenged_result_finalizes(table, requester, server, challenger, keeper):
    """No challenge: ``finalize`` at the window's last second reverts, one second later it pays the
    server reward + bond. The output is revealed after the commitment, by the server only, once, and
    only the output its ``S_{N−1}`` holds as leaf N."""
    tb, models = table(6, VALID)
    game = tb.game
    graph = honest_graph(INPUT, 5, 51)
    wrong = lying_graph(graph, 4, 51)  # another output (and S_{N−1})
    task_id = tb.create_task(requester, models[5], INPUT)
    assert tb.finalize(task_id, expect="WrongTaskStatus") is None
    assert tb.reveal(task_id, server, graph, expect="WrongTaskStatus") is None
    rc = tb.commit(task_id, server, graph.final_state)
    [ev] = [e for e in rc.events if e.event_name == "ResultSubmitted"]
    assert (ev.server, bytes(ev.finalState)) == (server.address, graph.final_state)  # no output yet
    end = rc.timestamp + WINDOW
    assert bytes(game.result(task_id).outputKey) == ZERO
    assert tb.commit(task_id, server, graph.final_state, expect="WrongTaskStatus") is None
    assert tb.reveal(task_id, challenger, graph, expect="NotServer") is None  # even with the right output
    assert tb.reveal(task_id, server, wrong, expect="OutputNotInState") is None
    output, root, siblings = graph.reveal_args()
    for bad in (
        (output + b"!", root, siblings),
        (output, wrong.tree.root, siblings),
        (output, root, siblings[:-1]),
        (output, root, [*siblings, ZERO]),
    ):
        with ape.reverts(game.OutputNotInState):
            game.revealOutput(task_id, *bad, sender=server)
    for size in (0, 4097):
        with ape.reverts(game.InvalidDataSize):
            game.revealOutput(task_id, bytes(size), root, siblings, sender=server)
    rc = tb.reveal(task_id, server, graph)
    assert bytes(game.result(task_id).outputKey) == graph.keys[-1]
    assert tb.reveal(task_id, server, graph, expect="AlreadyRevealed") is None
    tb.at(end)
    assert tb.finalize(task_id, expect="WindowOpen") is None
    tb.at(end + 1)
    rc = tb.finalize(task_id)
    assert [e.event_name for e in rc.events] == ["ResultFinalized"]
    assert game.credit(server) == REWARD + SERVER_BOND
    assert tb.finalize(task_id, expect="WrongTaskStatus") is None
    assert tb.challenge(task_id, challenger, expect="WrongTaskStatus") is None
    assert tb.reveal(task_id, server, graph, expect="WrongTaskStatus") is None
    assert tb.settle(task_id, [requester, server, keeper]) == TaskStatus.FINALIZED
    assert tb.ledger.net(server) == REWARD and tb.ledger.net(requester) == -REWARD
    with ape.reverts(game.NothingToWithdraw):
        game.withdraw(sender=server)


def test_finalize_with_open_dispute(table, requester, server, challenger, keeper):
    """A dispute opened at the window's last second keeps the result from finalizing until it is
    resolved; challenging after the window is refused."""
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, always=False, seed=52)
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    end = tb.submit(task_id, server, sp.graph).timestamp + WINDOW
    tb.at(end)
    dispute_id = tb.challenge(task_id, challenger)  # at the window's end: still allowed
    tb.at(end + 1)
    with ape.reverts(game.DisputesOpen):
        game.finalize(task_id, sender=keeper)
    with ape.reverts(game.WindowClosed):
        game.challenge(task_id, sender=keeper, value=CHALLENGER_BOND)
    assert tb.finalize(task_id, expect="DisputesOpen") is None
    got = tb.play(dispute_id, sp, cp)
    assert got.winner == SERVER
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.FINALIZED
    assert tb.ledger.net(server) == REWARD + CHALLENGER_BOND


# --- deadlines ------------------------------------------------------------------------------------


TIMEOUTS = [
    # (who misses its move, which, multi-phase)
    ("server", "defend", True),
    ("server", "defend", False),
    ("server", (GRAPH, 0), True),  # its first respond of phase 1
    ("server", (GRAPH, 1), True),  # its second (the one that ends phase 1)
    ("server", "claim", True),
    ("server", "claim", False),
    ("server", (EXECUTION, 0), True),
    ("server", (EXECUTION, 1), True),
    ("server", (EXECUTION, 0), False),
    ("server", "step", True),
    ("challenger", (GRAPH, 0), True),  # its bisect
    ("challenger", (GRAPH, 1), True),  # its respond
    ("challenger", (EXECUTION, 0), True),
    ("challenger", (EXECUTION, 1), True),
    ("challenger", (EXECUTION, 0), False),
    ("challenger", (EXECUTION, 1), False),
]


# Every kind of move (defend, a graph move, claim, an execution move, step), both phases modes and
# both parties keep a fast case; the rest of the matrix is the slow tier.
TIMEOUT_FAST = {0, 3, 5, 7, 9, 10, 15}


def _timeout_id(case):
    who, at, multi = case
    what = at if isinstance(at, str) else f"{'graph' if at[0] == GRAPH else 'exec'}-{at[1]}"
    return f"{who}-{what}" + ("" if multi else "-single")


@pytest.mark.parametrize("honest_quits", [False, True], ids=["liar-quits", "honest-quits"])
@pytest.mark.parametrize("case", slow_except(TIMEOUT_FAST, TIMEOUTS), ids=[_timeout_id(c) for c in TIMEOUTS])
def test_timeouts(table, requester, server, challenger, case, honest_quits):
    """The side whose turn it is loses after the deadline, at every kind of move (the server's
    ``defend`` included); ``timeout`` at the deadline itself reverts ``DeadlineNotPassed`` (checked by
    the driver before every timeout). The side that quits is the liar (a lying server; an honest
    server's challenger, which agrees with everything), or the honest side, which then loses too
    (protocol §1: parties are online). An undefended dispute pays its challenger only its own stake
    back (and the server's bond)."""
    who, at, multi = case
    server_quits = who == "server"
    lying_server = server_quits != honest_quits
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        multi=multi,
        lie_node=3 if lying_server else None,
        quit_server=at if server_quits else None,
        quit_challenger=None if server_quits else at,
        challenger_steps=at != "step",
        always=None if lying_server else True,
        seed=61,
    )
    tb, got = run(table, requester, sp, cp, truth, verdict, n=5, multi=multi, honest_online=not honest_quits)
    quitter = SERVER if server_quits else CHALLENGER
    phase = {"defend": DEFENSE, "claim": CLAIM, "step": STEP}[at] if isinstance(at, str) else at[0]
    assert got.txs[-1] == ("timeout", phase, quitter)
    assert got.winner == other(quitter) and got.by_timeout
    if isinstance(at, tuple):
        assert got.moves(phase, quitter) == at[1]
    if at == "defend":
        assert got.txs == [("timeout", DEFENSE, SERVER)]
        assert tb.ledger.net(challenger) == CHALLENGERS_HALF
        assert tb.ledger.net(server) == -SERVER_BOND


def test_honest_server_offline_at_step_loses(table, requester, server, challenger):
    """The step is the server's burden (protocol §4.5): an honest server that does not step, against a
    challenger who will not, loses its bond by timeout."""
    truth, sp, cp, verdict = plans(
        server, challenger, n=5, t=6, always=False, quit_server="step", challenger_steps=False, seed=62
    )
    tb, got = run(table, requester, sp, cp, truth, verdict, n=5, honest_online=False)
    assert got.winner == CHALLENGER and got.by_timeout
    assert got.txs[-1] == ("timeout", STEP, SERVER)
    assert tb.ledger.net(server) == -SERVER_BOND - CHALLENGER_BOND


# --- both sides lying -----------------------------------------------------------------------------


# seed → (winner, by timeout): the challenger by the step, the server by the step, the challenger by
# timeout (nobody can step in the server's favour), and two where phase 1 ends on a true node.
BOTH_LIE = {
    0: (CHALLENGER, False),
    1: (SERVER, False),
    3: (CHALLENGER, True),
    8: (SERVER, False),
    9: (CHALLENGER, False),
}


@pytest.mark.parametrize(
    "seed", slow_except({0, len(BOTH_LIE) - 1}, list(BOTH_LIE)), ids=[f"seed-{s}" for s in BOTH_LIE]
)
def test_both_lie(table, requester, server, challenger, seed):
    """A lying server (a wrong result, and lies in some rounds) against a challenger who also lies: one
    of them wins (as the reference predicts) and all wei is accounted for."""
    rng = random.Random(f"both-{seed}")
    lie_node = rng.randrange(5)
    choice = rng.choice(["flip", "agree", "disagree"])
    flip = tuple(sorted(rng.sample(range(6), rng.randint(1, 3)))) if choice == "flip" else ()
    always = {"agree": True, "disagree": False}.get(choice)
    server_flip = tuple(sorted(rng.sample(range(6), rng.randint(0, 2))))
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        lie_node=lie_node,
        lie_step=rng.randint(1, 6),
        flip=flip,
        server_flip=server_flip,
        always=always,
        seed=70 + seed,
    )
    assert not cp.honest
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    assert (got.winner, got.by_timeout) == BOTH_LIE[seed]
    assert (verdict == VALID) == (seed >= 8)


# --- several challengers --------------------------------------------------------------------------


def test_two_challengers_honest_wins(table, requester, server, challenger, challenger2, keeper):
    """A lying result, an honest challenger and a sloppy one (who agrees with every claim): the honest
    one wins and the result is rejected, but that ends no other dispute. The sloppy one's is played on
    after the rejection (moves, the step), no new challenge is taken, the bond shares wait until it is
    over, and the rejection refunds the requester once. Agreeing with a lying server's every claim
    leaves the sloppy challenger the last step, which it wins too: the two share the challengers' half
    of the server's bond."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=2, seed=81)
    sloppy = ChallengerPlan(challenger2, truth, cp.trace, always=True, seed=81)
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_sloppy = tb.challenge(task_id, challenger2)
    d_honest = tb.challenge(task_id, cp.account)
    assert game.result(task_id).openDisputes == 2
    assert game.localContext(d_sloppy) != game.localContext(d_honest)
    # The sloppy dispute gets its defense and one round in (its claim at 2, the server's agreement and
    # claim at 3), then waits on its challenger.
    assert tb.play(d_sloppy, sp, sloppy, moves=3) is None
    d = game.dispute(d_sloppy)
    assert Phase(d.phase) == GRAPH and Party(d.turn) == CHALLENGER and (d.lo, d.hi) == (2, 5)
    assert tb.claim_share(d_sloppy, expect="NoBondShare") is None  # not won

    got = tb.play(d_honest, sp, cp)
    assert got.winner == CHALLENGER
    assert game.task(task_id).status == TaskStatus.REJECTED
    assert game.credit(requester) == REWARD + SERVER_BOND // 2
    assert tb.claim_share(d_honest, expect="DisputesOpen") is None  # the sloppy dispute is not over
    assert tb.challenge(task_id, keeper, expect="WrongTaskStatus") is None
    assert tb.finalize(task_id, expect="WrongTaskStatus") is None

    # The sloppy dispute goes on as the reference says.
    got_sloppy = tb.play(d_sloppy, sp, sloppy, load_locals=True)
    want = predict(sp, sloppy, True, verdict)
    assert (got_sloppy.events, got_sloppy.txs) == (want.events, want.txs)
    assert got_sloppy.winner == CHALLENGER and got_sloppy.txs[-1] == ("step", STEP, CHALLENGER)
    assert game.task(task_id).challengerWins == 2
    assert game.credit(requester) == REWARD + SERVER_BOND // 2  # refunded once

    everyone = [requester, server, challenger, challenger2, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    outcomes = {challenger2: (CHALLENGER, True), challenger: (CHALLENGER, True)}
    nets = expected_nets(server, requester, outcomes)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(challenger) == CHALLENGER_BOND + CHALLENGERS_HALF - CHALLENGERS_HALF // 2
    assert tb.ledger.net(challenger2) == CHALLENGER_BOND + CHALLENGERS_HALF // 2
    assert tb.ledger.net(server) == -SERVER_BOND - 2 * CHALLENGER_BOND


def test_two_challengers_liar_resolves_first(table, requester, server, challenger, challenger2):
    """The lying challenger loses first (the server is paid both stakes of that dispute at once, and
    keeps them); the honest one still rejects the result afterwards, and is the only one to share the
    server's bond."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=4, seed=82)
    # The liar finds node 4 as the honest one does (rounds 0–2), then lies in its part of every
    # phase-2 round: the step it is left with is one the server computed right. (With one toy VM per
    # game, a liar that ended phase 1 at another node would meet the same verdict.)
    liar = ChallengerPlan(challenger2, truth, cp.trace, flip=frozenset(range(3, 7)), seed=82)
    assert predict(sp, liar, True, verdict).winner == SERVER
    tb, models = table(6, verdict)
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_honest = tb.challenge(task_id, challenger)
    d_liar = tb.challenge(task_id, challenger2)
    got_liar = tb.play(d_liar, sp, liar, load_locals=True)
    assert got_liar.winner == SERVER and got_liar.node == 4
    assert tb.game.credit(server) == 2 * CHALLENGER_BOND
    assert tb.game.task(task_id).status == TaskStatus.ANSWERED
    got = tb.play(d_honest, sp, cp, load_locals=True)
    assert got.winner == CHALLENGER and got.events == predict(sp, cp, True, verdict).events
    assert tb.claim_share(d_liar, expect="NoBondShare") is None  # the server won it
    everyone = [requester, server, challenger, challenger2, tb.keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(server, requester, {challenger: (CHALLENGER, True), challenger2: (SERVER, True)})
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert (
        tb.ledger.net(challenger) == CHALLENGERS_HALF + CHALLENGER_BOND
        and tb.ledger.net(server) == -SERVER_BOND
    )


def test_two_lying_challengers_against_honest_server(table, requester, server, challenger, challenger2):
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, always=False, seed=83)
    other_liar = ChallengerPlan(challenger2, truth, cp.trace, flip=frozenset({0, 3}), seed=83)
    tb, models = table(4, verdict)
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    d1, d2 = tb.challenge(task_id, challenger), tb.challenge(task_id, challenger2)
    assert tb.play(d2, sp, other_liar).winner == SERVER
    assert tb.play(d1, sp, cp).winner == SERVER
    everyone = [requester, server, challenger, challenger2, tb.keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.FINALIZED
    nets = expected_nets(server, requester, {challenger: (SERVER, True), challenger2: (SERVER, True)})
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(server) == REWARD + 2 * CHALLENGER_BOND


# --- the step -------------------------------------------------------------------------------------


def reach_step(table, requester, sp, cp, verdict, n=5):
    tb, models = table(sp.trace.halt_at, verdict)
    task_id = tb.create_task(requester, models[n], INPUT)
    tb.submit(task_id, sp.account, sp.graph)
    dispute_id = tb.challenge(task_id, cp.account)
    assert tb.play(dispute_id, sp, cp, until=STEP) is None
    return tb, task_id, dispute_id


def test_forged_witness_and_wrong_pre_state(table, requester, server, challenger, keeper):
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=1, lie_step=4, seed=91)
    tb, task_id, dispute_id = reach_step(table, requester, sp, cp, verdict)
    game, vm = tb.game, tb.vm
    before = game.dispute(dispute_id)
    assert Phase(before.phase) == STEP and before.lo == 3 and before.hi == 4
    assert Party(before.turn) == SERVER and Party(before.hiParty) == SERVER
    pre = cp.trace.state(3)
    assert vm_hash(pre) == bytes(before.loHash)
    credits = [game.credit(a) for a in (server, challenger, requester)]

    # A forged witness: the VM reverts, so the step does.
    with ape.reverts(vm.BadWitness):
        game.step(dispute_id, pre, b"\xff" + bytes(31), sender=keeper)
    assert tb.move(dispute_id, keeper, "step", pre, b"\xff", expect="BadWitness") is None
    # Pre-states that do not hash to the agreed state: the next one, the server's, a running state
    # one position off, and a malformed one (the VM's stateHash reverts).
    for wrong in (cp.trace.state(4), sp.trace.state(4), vm_state(3, 0), vm_state(2, 3)):
        with ape.reverts(game.WrongPreState):
            game.step(dispute_id, wrong, b"", sender=keeper)
        assert tb.move(dispute_id, keeper, "step", wrong, expect="WrongPreState") is None
    with ape.reverts(vm.BadWitness):
        game.step(dispute_id, pre + b"\x00", b"", sender=keeper)
    assert tb.move(dispute_id, server, "step", pre + b"\x00", expect="BadWitness") is None
    # No move but the step is left; the defense is long over.
    with ape.reverts(game.WrongPhase, phase=STEP):
        game.bisect(dispute_id, sp.trace.hash(3), sender=server)
    with ape.reverts(game.WrongPhase, phase=STEP):
        game.respond(dispute_id, True, ZERO, sender=server)
    with ape.reverts(game.NotYourTurn):
        game.respond(dispute_id, True, ZERO, sender=challenger)
    with ape.reverts(game.WrongPhase, phase=STEP):
        game.claimExecution(dispute_id, 6, sp.trace.hash(6), sp.graph_claim(2), sender=server)
    with ape.reverts(game.WrongPhase, phase=STEP):
        game.defend(dispute_id, sender=server, value=CHALLENGER_BOND)
    assert tb.move(dispute_id, server, "defend", expect="WrongPhase") is None
    assert tb.move(dispute_id, challenger, "defend", expect="NotYourTurn") is None
    assert game.dispute(dispute_id) == before
    assert [game.credit(a) for a in (server, challenger, requester)] == credits

    # Anyone may step; the honest pre-state gives the true post-state, not the server's claim.
    rc = tb.move(dispute_id, keeper, "step", pre)
    [played] = [e for e in rc.events if e.event_name == "StepPlayed"]
    assert played.position == 3 and bytes(played.postState) == vm_hash(cp.trace.state(4))
    assert Party(game.dispute(dispute_id).winner) == CHALLENGER
    with ape.reverts(game.WrongPhase, phase=RESOLVED):
        game.step(dispute_id, pre, b"", sender=keeper)
    assert tb.move(dispute_id, keeper, "step", pre, expect="WrongPhase") is None
    assert tb.move(dispute_id, keeper, "timeout", expect="WrongPhase") is None
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.REJECTED


@pytest.mark.parametrize("hi_party", [SERVER, CHALLENGER])
def test_step_winner_is_hi_party_iff_post_state_matches(
    table, requester, server, challenger, keeper, hi_party
):
    """The step compares its post-state with ``hiHash``: equal, ``hiParty`` wins; different, the other
    party. Here the step is the challenger's true claim (``hiParty`` = challenger, after the server,
    lying in its verdict, disputed a true state) or the server's false one."""
    flip = (2,) if hi_party == CHALLENGER else ()  # round 2: the server's verdict on a true state
    _truth, sp, cp, verdict = plans(
        server, challenger, n=4, t=4, lie_node=1, lie_step=3, server_flip=flip, seed=92
    )
    tb, task_id, dispute_id = reach_step(table, requester, sp, cp, verdict, n=4)
    d = tb.game.dispute(dispute_id)
    assert Party(d.hiParty) == hi_party
    pre = cp.trace.opens(d.loHash)
    post = vm_hash(cp.trace.state(d.lo + 1))
    assert (post == bytes(d.hiHash)) == (hi_party == CHALLENGER)
    rc = tb.move(dispute_id, keeper, "step", pre)  # a third party
    [resolved] = [e for e in rc.events if e.event_name == "DisputeResolved"]
    assert Party(resolved.winner) == CHALLENGER and not resolved.byTimeout
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.REJECTED


# --- replays and refused moves --------------------------------------------------------------------


def test_refused_moves(table, requester, server, challenger, challenger2, keeper, server2):
    """Moves with an unknown or another dispute's id, by third parties or out of turn, a second move in
    one round, bisect with a claim pending and respond with none (``WrongMove``), zero claims and a claim
    on the move that ends the bisection (``InvalidClaim``), execution claims that contradict phase 1
    (``InconsistentClaim``) or are no valid exit, moves after the deadline; every move but ``defend``
    in phase ``Defense``, a defense by anyone but the server or with another stake than
    ``challengerBond``; self-challenges, double challenges, wrong bonds, challenges after the window.
    Each refusal the driver sends is also predicted by the Python rules (``expect``)."""
    truth, sp, _cp, verdict = plans(server, challenger, n=5, t=6, lie_node=1, seed=101)
    true = truth.positions
    tb, models = table(6, verdict)
    game = tb.game
    task_a = tb.create_task(requester, models[5], INPUT)
    task_b = tb.create_task(requester, models[5], INPUT)

    with ape.reverts(game.WrongBond, expected=SERVER_BOND):
        game.submitResult(task_a, sp.graph.final_state, sender=server, value=SERVER_BOND - 1)
    assert tb.commit(task_a, server, sp.graph.final_state, SERVER_BOND + 1, expect="WrongBond") is None
    with ape.reverts(game.UnknownId):
        game.submitResult(task_b + 1, sp.graph.final_state, sender=server, value=SERVER_BOND)
    with ape.reverts(game.UnknownId):
        game.revealOutput(task_b + 1, *sp.graph.reveal_args(), sender=server)
    with ape.reverts(game.UnknownId):
        game.challenge(task_b + 1, sender=challenger, value=CHALLENGER_BOND)
    assert tb.challenge(task_a, challenger, expect="WrongTaskStatus") is None  # Open
    tb.submit(task_a, server, sp.graph)
    end_b = tb.submit(task_b, server2, sp.graph).timestamp + WINDOW

    assert tb.challenge(task_a, server, expect="ChallengeNotAllowed") is None
    assert tb.challenge(task_a, challenger, CHALLENGER_BOND + 1, expect="WrongBond") is None
    assert tb.challenge(task_a, challenger, 0, expect="WrongBond") is None
    d_a = tb.challenge(task_a, challenger)
    assert tb.challenge(task_a, challenger, expect="ChallengeNotAllowed") is None
    d_b = tb.challenge(task_b, challenger2)
    assert game.challenged(task_a, challenger) and not game.challenged(task_a, challenger2)

    # An unknown id.
    with ape.reverts(game.UnknownId):
        game.defend(d_b + 1, sender=server, value=CHALLENGER_BOND)
    for fn, args, who in [
        (game.bisect, (true[2],), challenger),
        (game.respond, (True, true[1]), server),
        (game.claimExecution, (6, sp.trace.hash(6), sp.graph_claim(2)), server),
        (game.loadLocalValues, (), keeper),
        (game.step, (vm_state(0, 3), b""), keeper),
        (game.timeout, (), keeper),
        (game.claimBondShare, (), keeper),
    ]:
        with ape.reverts(game.UnknownId):
            fn(d_b + 1, *args, sender=who)
    with ape.reverts(game.UnknownId):
        game.dispute(d_b + 1)

    # The defense: only the server's, with exactly the challenger's stake; nothing else before it.
    d = game.dispute(d_a)
    assert (Phase(d.phase), Party(d.turn), Party(d.hiParty), d.defended) == (
        DEFENSE,
        SERVER,
        Party.NONE,
        False,
    )
    assert (d.lo, d.hi, bytes(d.loHash), bytes(d.hiHash), bytes(d.midHash)) == (0, 0, ZERO, ZERO, ZERO)
    for who in (keeper, challenger2, server2):  # a third party; B's challenger and server on A's dispute
        assert tb.move(d_a, who, "defend", expect="NotParty") is None
    assert tb.move(d_b, server, "defend", expect="NotParty") is None  # A's server on B's dispute
    assert tb.move(d_a, challenger, "defend", expect="NotYourTurn") is None
    for stake in (0, CHALLENGER_BOND - 1, CHALLENGER_BOND + 1, SERVER_BOND):
        with ape.reverts(game.WrongBond, expected=CHALLENGER_BOND):
            game.defend(d_a, sender=server, value=stake)
        assert tb.move(d_a, server, "defend", value=stake, expect="WrongBond") is None
    assert tb.move(d_a, challenger, "bisect", true[2], expect="NotYourTurn") is None
    with ape.reverts(game.WrongPhase, phase=DEFENSE):
        game.bisect(d_a, true[2], sender=server)
    assert tb.move(d_a, server, "respond", True, true[2], expect="WrongPhase") is None
    assert (
        tb.move(d_a, server, "claim", 6, sp.trace.hash(6), sp.graph.final_state, expect="WrongPhase") is None
    )
    assert tb.move(d_a, keeper, "step", vm_state(0, 3), expect="WrongPhase") is None
    assert tb.move(d_a, keeper, "timeout", expect="DeadlineNotPassed") is None
    with ape.reverts(game.LocalValuesNotLoadable):
        game.loadLocalValues(d_a, sender=keeper)
    assert tb.claim_share(d_a, expect="NoBondShare") is None
    assert game.dispute(d_a) == d
    # Both servers defend; a second defense is refused.
    rc = tb.move(d_b, server2, "defend")
    assert [e.event_name for e in rc.events] == ["DisputeDefended"] and rc.events[0].disputeId == d_b
    tb.move(d_a, server, "defend")
    assert tb.move(d_a, server, "defend", expect="NotYourTurn") is None  # the challenger's turn now

    # Phase 1 opens with the challenger to move and no claim pending.
    d = game.dispute(d_a)
    assert (Phase(d.phase), Party(d.turn), Party(d.hiParty)) == (GRAPH, CHALLENGER, SERVER)
    assert (d.lo, d.hi, bytes(d.midHash), bytes(d.hiHash)) == (0, 5, ZERO, sp.graph.final_state)
    for who in (keeper, challenger2, server2):  # a third party; B's challenger and server on A's dispute
        with ape.reverts(game.NotParty):
            game.bisect(d_a, true[2], sender=who)
    with ape.reverts(game.NotParty):
        game.bisect(d_b, true[2], sender=challenger)  # A's challenger on B's dispute
    with ape.reverts(game.NotYourTurn):
        game.bisect(d_a, sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotYourTurn):
        game.respond(d_a, True, sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotYourTurn):
        game.claimExecution(d_a, 6, sp.trace.hash(6), sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotYourTurn):
        game.defend(d_a, sender=server, value=CHALLENGER_BOND)
    with ape.reverts(game.WrongMove):  # no claim to answer
        game.respond(d_a, True, true[2], sender=challenger)
    with ape.reverts(game.InvalidClaim):
        game.bisect(d_a, ZERO, sender=challenger)
    with ape.reverts(game.WrongPhase, phase=GRAPH):
        game.claimExecution(d_a, 6, sp.trace.hash(6), true[2], sender=challenger)
    with ape.reverts(game.WrongPhase, phase=GRAPH):
        game.step(d_a, vm_state(0, 3), b"", sender=keeper)
    with ape.reverts(game.LocalValuesNotLoadable):
        game.loadLocalValues(d_a, sender=keeper)
    assert game.dispute(d_a) == d

    # Round 0: the challenger's claim at 2 (true); a second move in the same round is refused.
    rc = tb.move(d_a, challenger, "bisect", true[2])
    [ev] = [e for e in rc.events if e.event_name == "Bisected"]
    assert (ev.disputeId, Party(ev.party), ev.position, bytes(ev.claim)) == (d_a, CHALLENGER, 2, true[2])
    with ape.reverts(game.NotYourTurn):
        game.bisect(d_a, true[2], sender=challenger)  # the same transaction again
    with ape.reverts(game.NotYourTurn):
        game.respond(d_a, False, true[1], sender=challenger)
    with ape.reverts(game.WrongMove):  # a claim is pending: the server must answer it
        game.bisect(d_a, sp.graph_claim(2), sender=server)
    with ape.reverts(game.WrongPhase, phase=GRAPH):  # the server's turn, but no defense phase
        game.defend(d_a, sender=server, value=CHALLENGER_BOND)
    with ape.reverts(game.InvalidClaim):  # [0, 2] is left: the server must claim at 1
        game.respond(d_a, False, ZERO, sender=server)
    for who in (keeper, challenger2):
        with ape.reverts(game.NotParty):
            game.respond(d_a, False, sp.graph_claim(1), sender=who)
    assert tb.move(d_a, server, "respond", False, ZERO, expect="InvalidClaim") is None
    # The server (its S_1 differs from the truth from here on) disputes it and claims at 1.
    rc = tb.move(d_a, server, "respond", False, sp.graph_claim(1))
    names = [(e.event_name, Party(e.party), e.position) for e in rc.events]
    assert names == [("Responded", SERVER, 2), ("Bisected", SERVER, 1)]
    d = game.dispute(d_a)
    assert (d.lo, d.hi, Party(d.hiParty), bytes(d.hiHash)) == (0, 2, CHALLENGER, true[2])
    assert (Party(d.turn), bytes(d.midHash)) == (CHALLENGER, sp.graph_claim(1))
    assert d.deadline == rc.timestamp + MOVE_WINDOW
    with ape.reverts(game.NotYourTurn):  # replayed
        game.respond(d_a, False, sp.graph_claim(1), sender=server)
    # The verdict that ends phase 1 carries no claim.
    with ape.reverts(game.InvalidClaim):
        game.respond(d_a, True, true[1], sender=challenger)
    assert tb.move(d_a, challenger, "respond", True, true[1], expect="InvalidClaim") is None
    # A move at the deadline is in time.
    tb.at(d.deadline)
    rc = tb.move(d_a, challenger, "respond", True, ZERO)
    assert [e.event_name for e in rc.events] == ["Responded", "PhaseOneEnded"]
    d = game.dispute(d_a)
    assert (Phase(d.phase), Party(d.turn), d.node, d.lo, d.hi) == (CLAIM, SERVER, 1, 1, 2)
    assert (bytes(d.loHash), bytes(d.hiHash), Party(d.hiParty)) == (true[1], true[2], CHALLENGER)

    # The execution claim: the server's, a valid exit, and its S_1 must differ from the challenger's.
    with ape.reverts(game.NotYourTurn):
        game.claimExecution(d_a, 6, sp.trace.hash(6), sp.graph_claim(2), sender=challenger)
    with ape.reverts(game.WrongPhase, phase=CLAIM):
        game.respond(d_a, True, ZERO, sender=server)
    with ape.reverts(game.WrongPhase, phase=CLAIM):
        game.bisect(d_a, sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotAValidExit):
        game.claimExecution(d_a, 0, sp.trace.hash(6), sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotAValidExit):
        game.claimExecution(d_a, 6, bytes([INVALID]) + bytes(31), sp.graph_claim(2), sender=server)
    for claimed in (true[2], ZERO):
        with ape.reverts(game.InconsistentClaim):
            game.claimExecution(d_a, 6, sp.trace.hash(6), claimed, sender=server)
        assert tb.move(d_a, server, "claim", 6, sp.trace.hash(6), claimed, expect="InconsistentClaim") is None
    with ape.reverts(game.StepsOverBound, maxSteps=MAX_STEPS):
        game.claimExecution(d_a, MAX_STEPS + 1, sp.trace.hash(6), sp.graph_claim(2), sender=server)
    assert (
        tb.move(d_a, server, "claim", 2**64 - 1, sp.trace.hash(6), sp.graph_claim(2), expect="StepsOverBound")
        is None
    )
    with ape.reverts(game.LocalValuesNotLoadable):
        game.loadLocalValues(d_a, sender=keeper)
    assert game.dispute(d_a) == d

    # One second past the deadline, no move is taken; the side to move loses.
    tb.at(d.deadline + 1)
    with ape.reverts(game.DeadlinePassed):
        game.claimExecution(d_a, 6, sp.trace.hash(6), sp.graph_claim(2), sender=server)
    assert (
        tb.move(d_a, server, "claim", 6, sp.trace.hash(6), sp.graph_claim(2), expect="DeadlinePassed") is None
    )
    with ape.reverts(game.DeadlinePassed):
        game.bisect(d_b, true[2], sender=challenger2)
    with ape.reverts(game.DeadlinePassed):
        game.respond(d_b, True, true[2], sender=challenger2)
    assert tb.move(d_b, keeper, "step", vm_state(0, 3), expect="DeadlinePassed") is None
    tb.move(d_a, keeper, "timeout")
    tb.move(d_b, challenger2, "timeout")  # anyone, a party too
    assert Party(game.dispute(d_a).winner) == CHALLENGER
    assert Party(game.dispute(d_b).winner) == SERVER
    for fn, args, who in [
        (game.timeout, (), keeper),
        (game.claimExecution, (6, sp.trace.hash(6), sp.graph_claim(2)), server),
        (game.respond, (True, ZERO), server),
    ]:
        with ape.reverts(game.WrongPhase, phase=RESOLVED):
            fn(d_a, *args, sender=who)
    with ape.reverts(game.WrongPhase, phase=RESOLVED):
        game.bisect(d_b, true[2], sender=challenger2)
    with ape.reverts(game.LocalValuesNotLoadable):
        game.loadLocalValues(d_a, sender=keeper)
    with ape.reverts(game.WrongPhase, phase=RESOLVED):
        game.defend(d_a, sender=server, value=CHALLENGER_BOND)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.challenge(task_a, sender=challenger2, value=CHALLENGER_BOND)
    assert tb.challenge(task_a, challenger2, expect="WrongTaskStatus") is None
    assert tb.challenge(task_b, challenger2, expect="ChallengeNotAllowed") is None  # one per challenger
    assert tb.claim_share(d_b, expect="NoBondShare") is None  # the server won it
    tb.at(end_b)
    assert tb.finalize(task_b, expect="WindowOpen") is None
    tb.at(end_b + 1)
    with ape.reverts(game.WindowClosed):
        game.challenge(task_b, sender=challenger, value=CHALLENGER_BOND)
    assert tb.challenge(task_b, challenger, expect="WindowClosed") is None

    everyone = [requester, server, server2, challenger, challenger2, keeper]
    assert tb.settle(task_a, [], empty=False) == TaskStatus.REJECTED
    assert tb.claim_share(d_a, expect="NoBondShare") is None  # claimed by settle: not twice
    assert tb.settle(task_b, everyone) == TaskStatus.FINALIZED
    nets = expected_nets(server, requester, {challenger: (CHALLENGER, True)})
    nets.update(expected_nets(server2, requester, {challenger2: (SERVER, True)}))
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(server2) == REWARD + CHALLENGER_BOND  # a lie nobody proved: it stands


def test_step_pre_state_from_another_dispute(table, requester, server, challenger, challenger2, server2):
    """Two disputes at the step at different positions: neither's pre-state opens the other's."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=1, lie_step=2, seed=102)
    tb, models = table(6, verdict)
    game = tb.game
    sp_b = ServerPlan(server2, sp.graph, Trace(6, INVALID, lie_from=5), seed=102)
    cp_b = ChallengerPlan(challenger2, truth, cp.trace)
    task_a = tb.create_task(requester, models[5], INPUT)
    task_b = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_a, server, sp.graph)
    tb.submit(task_b, server2, sp.graph)
    d_a, d_b = tb.challenge(task_a, challenger), tb.challenge(task_b, challenger2)
    assert tb.play(d_a, sp, cp, until=STEP) is None
    assert tb.play(d_b, sp_b, cp_b, until=STEP) is None
    a, b = game.dispute(d_a), game.dispute(d_b)
    assert (a.lo, b.lo) == (1, 4)
    with ape.reverts(game.WrongPreState):
        game.step(d_a, cp.trace.state(b.lo), b"", sender=challenger)
    with ape.reverts(game.WrongPreState):
        game.step(d_b, cp.trace.state(a.lo), b"", sender=challenger2)
    # Each server's own states do not open the other dispute either.
    with ape.reverts(game.WrongPreState):
        game.step(d_a, sp_b.trace.state(4), b"", sender=server)
    assert tb.move(d_a, server, "step", sp_b.trace.state(4), expect="WrongPreState") is None
    tb.move(d_a, challenger, "step", cp.trace.state(a.lo))
    tb.move(d_b, challenger2, "step", cp.trace.state(b.lo))
    assert Party(game.dispute(d_a).winner) == Party(game.dispute(d_b).winner) == CHALLENGER
    everyone = [requester, server, server2, challenger, challenger2]
    assert tb.settle(task_a, [], empty=False) == TaskStatus.REJECTED
    assert tb.settle(task_b, everyone) == TaskStatus.REJECTED
    assert tb.ledger.net(requester) == 2 * (SERVER_BOND // 2)  # both rewards back, and half of each bond
    assert tb.ledger.net(challenger) == tb.ledger.net(challenger2) == CHALLENGERS_HALF + CHALLENGER_BOND


# --- the phase-2 local values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "lie_node, hi_party", slow_except({0, 1}, [(0, SERVER), (1, CHALLENGER), (3, SERVER)], unpack=True)
)
def test_local_values(table, requester, server, challenger, keeper, lie_node, hi_party):
    """Phase 1 ends at node k with ``hiHash`` the server's S_k or the challenger's (true) one, which the
    server then contradicts. ``claimExecution`` writes nothing; ``loadLocalValues`` (anyone, once, from
    phase ``Execution`` on) writes, under the game's localized keys for the dispute's own context: the
    commitment, k (u32 little-endian, 4 bytes), the agreed S_{k−1} and the server's S_k. Nobody else
    can write those keys, and another dispute's values (here one that ended phase 1 elsewhere) are
    under another context."""
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, lie_node=lie_node, seed=111)
    tb, models = table(4, verdict)
    game, oracle = tb.game, tb.oracle
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    dispute_id = tb.challenge(task_id, challenger)
    other_id = tb.challenge(task_id, keeper)
    agreeing = ChallengerPlan(keeper, truth, cp.trace, always=True, seed=111)
    other_end = phase_one(sp, agreeing)
    nothing = {i: None for i in range(1, 5)}
    k = lie_node

    assert tb.play(dispute_id, sp, cp, until=CLAIM) is None
    d = game.dispute(dispute_id)
    assert d.node == k and Party(d.hiParty) == hi_party
    assert bytes(d.loHash) == truth.positions[k]
    if hi_party == SERVER:
        assert bytes(d.hiHash) == sp.graph.positions[k + 1]
    else:
        assert bytes(d.hiHash) == truth.positions[k + 1] != sp.graph.positions[k + 1]
    # The true S_k: where hiHash is the server's, it cannot switch to another claim; where it is the
    # challenger's, it cannot agree with the claim it disputed. Zero is no claim.
    for claimed in (truth.positions[k + 1], ZERO):
        with ape.reverts(game.InconsistentClaim):
            game.claimExecution(dispute_id, 4, sp.trace.hash(4), claimed, sender=server)
    with ape.reverts(game.LocalValuesNotLoadable):  # not before claimExecution
        game.loadLocalValues(dispute_id, sender=keeper)

    assert tb.play(dispute_id, sp, cp, until=EXECUTION) is None
    assert tb.local_values(dispute_id) == nothing  # claimExecution writes nothing
    d = game.dispute(dispute_id)
    assert (bytes(d.agreedState), bytes(d.claimedState)) == (truth.positions[k], sp.graph.positions[k + 1])
    assert not d.localsLoaded
    ctx = bytes(game.localContext(dispute_id))
    assert (
        ctx
        == tb.local_context(dispute_id)
        != bytes(game.localContext(other_id))
        == tb.local_context(other_id)
    )
    want = {
        1: (COMMITMENT, 32),
        2: (k.to_bytes(4, "little") + bytes(28), 4),
        3: (truth.positions[k], 32),  # S_{k−1}: the truth (the challenger agreed to it)
        4: (sp.graph.positions[k + 1], 32),  # the server's S_k
    }
    assert want[3][0] != want[4][0] and want[4][0] != truth.positions[k + 1]
    assert tb.load_local_values(dispute_id, sender=keeper) == want  # a third party; only once
    assert tb.local_values(dispute_id) == want
    assert tb.local_values(other_id) == nothing

    # Another account writes under its own localized key, never the game's.
    for ident in want:
        key = localize_ident(ident, game, ctx)
        assert bytes(oracle.localizedKey(ident, game, ctx)) == key
        rc = oracle.loadLocalData(ident, ctx, bytes([0xAB]) * 32, 32, sender=keeper)
        assert bytes(rc.return_value) == localize_ident(ident, keeper, ctx) != key
    assert tb.local_values(dispute_id) == want
    assert tb.local_values(dispute_id, caller=keeper) == {i: (bytes([0xAB]) * 32, 32) for i in want}

    # The other dispute (a challenger agreeing with everything) ends phase 1 where the reference says.
    assert tb.play(other_id, sp, agreeing, until=EXECUTION) is None
    other_want = tb.load_local_values(other_id)
    assert other_want == {
        1: (COMMITMENT, 32),
        2: (other_end.node.to_bytes(4, "little") + bytes(28), 4),
        3: (other_end.agreed, 32),
        4: (other_end.claimed, 32),
    }
    assert (other_want != want) == (other_end.node != k)
    assert tb.local_values(dispute_id) == want

    got = tb.play(dispute_id, sp, cp)
    assert got.winner == CHALLENGER
    assert tb.local_values(dispute_id) == want  # written once
    with ape.reverts(game.LocalValuesNotLoadable):  # not after the end
        game.loadLocalValues(dispute_id, sender=keeper)
    # The result is rejected; the other dispute is played on to its end, as the reference says.
    other_got = tb.play(other_id, sp, agreeing)
    want_other = predict(sp, agreeing, True, verdict)
    assert (other_got.events, other_got.winner) == (want_other.events, want_other.winner)
    everyone = [requester, server, challenger, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(
        server, requester, {challenger: (CHALLENGER, True), keeper: (other_got.winner, True)}
    )
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)


@pytest.mark.parametrize("multi", [True, False])
def test_local_values_without_phase_one(table, requester, server, challenger, multi):
    """With N = 1 (multi-phase: k = 0, S_{−1} computed on-chain) or in single-phase mode, phase 2 starts
    at ``defend`` with ``hiHash`` the result's S_{N−1}, the server's: its ``claimedState`` must be
    that. The values are loadable once the execution is claimed."""
    n = 1 if multi else 4
    truth, sp, cp, verdict = plans(server, challenger, n=n, t=4, multi=multi, lie_node=0, seed=121)
    tb, models = table(4, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[n], INPUT, multi)
    tb.submit(task_id, server, sp.graph)
    dispute_id = tb.challenge(task_id, challenger)
    tr = tb.transcripts[dispute_id]
    assert tr.events == [] and Phase(game.dispute(dispute_id).phase) == DEFENSE
    tb.move(dispute_id, server, "defend")
    assert tr.events == [("DisputeDefended",)] + ([("PhaseOneEnded", 0)] if multi else [])
    d = game.dispute(dispute_id)
    assert Phase(d.phase) == CLAIM and Party(d.turn) == SERVER
    assert (Party(d.hiParty), bytes(d.hiHash)) == (SERVER, sp.graph.final_state)
    assert tb.local_values(dispute_id) == {i: None for i in range(1, 5)}
    with ape.reverts(game.LocalValuesNotLoadable):
        game.loadLocalValues(dispute_id, sender=challenger)
    # Execution claims that are not a valid exit, not the server's, or not its S_{N−1}.
    steps, final = sp.trace.claimed_steps, sp.trace.hash(sp.trace.claimed_steps)
    with ape.reverts(game.NotAValidExit):
        game.claimExecution(dispute_id, 0, final, sp.graph.final_state, sender=server)
    for status in (3, 1, 2):  # running, invalid, panic
        with ape.reverts(game.NotAValidExit):
            game.claimExecution(
                dispute_id, steps, bytes([status]) + bytes(31), sp.graph.final_state, sender=server
            )
    for claimed in (truth.final_state, sp.graph.positions[0], ZERO):
        with ape.reverts(game.InconsistentClaim):
            game.claimExecution(dispute_id, steps, final, claimed, sender=server)
    with ape.reverts(game.NotParty):
        game.claimExecution(dispute_id, steps, final, sp.graph.final_state, sender=tb.keeper)
    with ape.reverts(game.NotYourTurn):
        game.claimExecution(dispute_id, steps, final, sp.graph.final_state, sender=challenger)
    with ape.reverts(game.WrongPhase, phase=CLAIM):
        game.step(dispute_id, vm_state(0, 3), b"", sender=challenger)
    with ape.reverts(game.WrongPhase, phase=CLAIM):
        game.defend(dispute_id, sender=server, value=CHALLENGER_BOND)
    # The step bound: at most the model's maxSteps.
    with ape.reverts(game.StepsOverBound, maxSteps=MAX_STEPS):
        game.claimExecution(dispute_id, MAX_STEPS + 1, final, sp.graph.final_state, sender=server)
    assert tb.local_values(dispute_id, idents=(1,)) == {1: None}

    assert tb.play(dispute_id, sp, cp, until=EXECUTION) is None
    input_key = game.task(task_id).inputKey
    assert bytes(input_key) == ChunkTree.from_bytes(INPUT).key
    values = tb.load_local_values(dispute_id, sender=challenger)
    if multi:
        assert values == {
            1: (COMMITMENT, 32),
            2: (bytes(32), 4),
            3: (bytes(game.initialGraphState(input_key)), 32),
            4: (sp.graph.final_state, 32),
        }
    else:
        assert values == {
            1: (COMMITMENT, 32),
            2: (bytes(input_key), 32),
            3: (sp.graph.final_state, 32),
            4: None,
        }
    assert tb.play(dispute_id, sp, cp).winner == CHALLENGER
    assert tb.settle(task_id, [requester, server, challenger]) == TaskStatus.REJECTED


def test_local_values_in_the_step_and_on_a_rejected_result(table, requester, server, challenger, challenger2):
    """``loadLocalValues`` works in phase ``Step`` too (a dispute whose execution is one step), and on a
    dispute that is still open after another dispute rejected the result: that dispute is played on,
    and its step (which reads them) decides it."""
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=1, lie_node=2, seed=131)
    tb, models = table(1, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_1 = tb.challenge(task_id, challenger)
    d_2 = tb.challenge(task_id, challenger2)
    cp2 = ChallengerPlan(challenger2, truth, cp.trace, seed=131)
    assert tb.play(d_2, sp, cp2, until=STEP) is None
    got = tb.play(d_1, sp, cp, load_locals=True)
    assert got.loaded == STEP and got.moves(EXECUTION) == 0 and got.winner == CHALLENGER
    assert game.task(task_id).status == TaskStatus.REJECTED
    d = game.dispute(d_2)
    assert Phase(d.phase) == STEP
    values = tb.load_local_values(d_2)
    assert values[2][0][:4] == (2).to_bytes(4, "little") and values[4] == (sp.graph.positions[3], 32)
    assert tb.claim_share(d_1, expect="DisputesOpen") is None
    got_2 = tb.play(d_2, sp, cp2)
    assert got_2.txs[-1] == ("step", STEP, CHALLENGER) and got_2.winner == CHALLENGER
    everyone = [requester, server, challenger, challenger2, tb.keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(server, requester, {challenger: (CHALLENGER, True), challenger2: (CHALLENGER, True)})
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)


# --- issue 17: the defense, each dispute's own stakes, bond shares --------------------------------


def test_an_honest_server_must_defend_every_dispute(table, requester, server, challenger, challenger2):
    """Two challengers of an honest result. The server defends the first at its deadline's last second
    (in time) and wins it (both stakes); it misses the second's defense (one second late is refused),
    which its challenger wins by timeout: its own stake back, the whole server bond (the only winner),
    and the result is rejected (protocol §1: parties are online)."""
    _truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, always=False, seed=161)
    assert verdict == VALID
    tb, models = table(4, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_1 = tb.challenge(task_id, challenger)
    d_2 = tb.challenge(task_id, challenger2)
    deadline_1, deadline_2 = tb.deadlines[d_1], tb.deadlines[d_2]
    assert game.dispute(d_2).deadline == deadline_2 == deadline_1 + 1
    tb.at(deadline_1)
    tb.move(d_1, server, "defend")
    tb.at(deadline_2 + 1)
    with ape.reverts(game.DeadlinePassed):
        game.defend(d_2, sender=server, value=CHALLENGER_BOND)
    assert tb.move(d_2, server, "defend", expect="DeadlinePassed") is None
    rc = tb.timeout(d_2)
    names = [e.event_name for e in rc.events]
    assert names == ["ResultRejected", "DisputeResolved"]
    assert game.credit(challenger2) == CHALLENGER_BOND and game.credit(requester) == REWARD + SERVER_BOND // 2
    assert not game.dispute(d_2).defended
    assert tb.claim_share(d_2, expect="DisputesOpen") is None
    got = tb.play(d_1, sp, cp)  # played on after the rejection: the honest server still wins it
    assert got.winner == SERVER and got.txs[0] == ("defend", DEFENSE, SERVER)
    everyone = [requester, server, challenger, challenger2]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(server, requester, {challenger: (SERVER, True), challenger2: (CHALLENGER, False)})
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(challenger2) == CHALLENGERS_HALF
    assert tb.ledger.net(server) == CHALLENGER_BOND - SERVER_BOND


def _sock_plans(sp, cp, sock, sock_end):
    """The server's plan in its sock's dispute, and the sock's: ``wins-undefended`` (no defense),
    ``wins-defended`` (a defense, then the server misses its first move), ``loses`` (a defense, then
    the sock misses its bisect)."""
    server_quit = {"wins-undefended": "defend", "wins-defended": (GRAPH, 0), "loses": None}[sock_end]
    sock_quit = (GRAPH, 0) if sock_end == "loses" else None
    server_plan = ServerPlan(sp.account, sp.graph, sp.trace, quit_at=server_quit, seed=sp.seed)
    return server_plan, ChallengerPlan(sock, cp.graph, cp.trace, quit_at=sock_quit, seed=sp.seed)


SOCK_ENDS = ["wins-undefended", "wins-defended", "loses"]
SOCK_CASES = [
    (s, h, o) for o in ("sock-first", "honest-first") for h in ("defended", "undefended") for s in SOCK_ENDS
]


# Each way the sock's dispute ends, each honest end and each order keep a fast case.
@pytest.mark.parametrize(
    "sock_end, honest_end, order",
    slow_except({0, 4, 8, 11}, SOCK_CASES, unpack=True),
    ids=["-".join(c) for c in SOCK_CASES],
)
def test_sock_challenger(table, requester, server, challenger, sock, keeper, sock_end, honest_end, order):
    """A lying server, its sock challenger (challenging first) and an honest challenger on one result,
    for every way the sock's dispute ends, with the honest dispute defended (played to the step) or
    left undefended, and either dispute ending first (sock first, honest defended: the honest dispute
    is in phase 2 when the sock wins, and played on to the end). The first challenger win rejects the
    result and refunds the requester; shares wait for both disputes; the honest challenger ends with
    more than it started (the liar's stake, where the liar staked, plus its share of the bond) and the
    liar's accounts (server + sock) with exactly as much less; nothing stays locked."""
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=2, seed=141)
    sock_server, sock_plan = _sock_plans(sp, cp, sock, sock_end)
    honest_server = (
        sp if honest_end == "defended" else ServerPlan(server, sp.graph, sp.trace, quit_at="defend")
    )
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_sock = tb.challenge(task_id, sock)
    d_honest = tb.challenge(task_id, challenger)

    # The sock's dispute up to its last move (a timeout; the reference says when).
    want_sock = predict(sock_server, sock_plan, True, verdict)
    assert want_sock.txs[-1][0] == "timeout" and want_sock.winner == (
        SERVER if sock_end == "loses" else CHALLENGER
    )
    assert tb.play(d_sock, sock_server, sock_plan, moves=len(want_sock.txs) - 1) is None
    first, second = (d_sock, d_honest) if order == "sock-first" else (d_honest, d_sock)
    if order == "sock-first" and honest_end == "defended":
        assert tb.play(d_honest, honest_server, cp, until=EXECUTION) is None
    plans_of = {d_sock: (sock_server, sock_plan), d_honest: (honest_server, cp)}
    got = {first: tb.play(first, *plans_of[first])}
    if got[first].winner == CHALLENGER:
        assert (
            game.task(task_id).status == TaskStatus.REJECTED
            and game.credit(requester) == REWARD + SERVER_BOND // 2
        )
        assert tb.claim_share(first, expect="DisputesOpen") is None
    got[second] = tb.play(second, *plans_of[second])
    assert got[d_sock].events == want_sock.events
    assert got[d_honest].winner == CHALLENGER
    assert game.task(task_id).challengerWins == (1 if sock_end == "loses" else 2)
    if sock_end == "loses":
        assert tb.claim_share(d_sock, expect="NoBondShare") is None

    everyone = [requester, server, sock, challenger, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    assert tb.claim_share(d_honest, expect="NoBondShare") is None  # not twice
    outcomes = {
        sock: (got[d_sock].winner, sock_end != "wins-undefended"),
        challenger: (CHALLENGER, honest_end == "defended"),
    }
    nets = expected_nets(server, requester, outcomes)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    honest = tb.ledger.net(challenger)
    liar = tb.ledger.net(server) + tb.ledger.net(sock)
    half = CHALLENGERS_HALF
    share = half if sock_end == "loses" else half - half // 2  # the last claim's
    assert honest == share + (CHALLENGER_BOND if honest_end == "defended" else 0)
    assert honest > 0 and liar == -honest - SERVER_BOND // 2 < 0
    assert tb.ledger.net(requester) == SERVER_BOND // 2
    if honest_end == "defended":
        assert honest >= CHALLENGER_BOND  # at least the liar's stake
    # Left undefended, the honest dispute pays only the bond share (protocol §5, share dilution).


def _sock_swarm(tb, models, requester, sp, cp, socks):
    """A lying result challenged by ``socks`` (the server's own accounts) and then an honest challenger;
    the server defends none. Returns the nets of the honest challenger and of the liar (server +
    socks) once everything is settled."""
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, sp.account, sp.graph)
    ids = [tb.challenge(task_id, s) for s in socks]
    honest_id = tb.challenge(task_id, cp.account)
    for i in [*ids, honest_id]:
        tb.timeout(i)
    everyone = [requester, sp.account, cp.account, *socks]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    assert tb.ledger.net(requester) == SERVER_BOND // 2
    liar = tb.ledger.net(sp.account) + sum(tb.ledger.net(s) for s in socks)
    return tb.ledger.net(cp.account), liar


def test_socks_dilute_the_honest_share(table, requester, server, challenger, accounts):
    """What the contract does: undefended disputes cost the server's socks nothing (each gets its
    stake back) and each takes an equal share of the challengers' half of the bond, so with m socks the
    honest challenger gets ``(serverBond − serverBond / 2) / (m + 1)`` and the liar loses that, the
    requester's half and its socks' gas (protocol §5, share dilution: the stakes of a defended dispute
    cannot be diluted)."""
    socks = [accounts[i] for i in (4, 7, 8, 9)]
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=2, seed=142)
    tb, models = table(6, verdict)
    honest, liar = _sock_swarm(tb, models, requester, sp, cp, socks)
    assert honest == CHALLENGERS_HALF - 4 * (CHALLENGERS_HALF // 5) == -liar - SERVER_BOND // 2
    assert honest < CHALLENGER_BOND  # less than the stake a lie was supposed to cost


def test_bond_shares_of_three_winners(table, requester, server, challenger, challenger2, challenger3, keeper):
    """Three challengers win against a lying result (by the step, by an undefended timeout, by the
    server's timeout after its defense). The shares are claimable once all three disputes are over, by
    anyone, once each, and add up to the server's bond exactly though it is not divisible by 3: in
    whatever order they are claimed, the last takes the remainder."""
    assert CHALLENGERS_HALF % 3 == 2
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=3, seed=171)
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_1, d_2, d_3 = (tb.challenge(task_id, c) for c in (challenger, challenger2, challenger3))
    quits = ServerPlan(server, sp.graph, sp.trace, quit_at=(GRAPH, 0), seed=171)
    assert tb.play(d_3, quits, ChallengerPlan(challenger3, truth, cp.trace), moves=2) is None
    assert tb.play(d_1, sp, cp).winner == CHALLENGER
    assert tb.claim_share(d_1, expect="DisputesOpen") is None
    tb.timeout(d_2)  # never defended
    assert tb.claim_share(d_2, expect="DisputesOpen") is None
    tb.timeout(d_3)  # the server's respond, missed
    assert [Party(game.dispute(i).winner) for i in (d_1, d_2, d_3)] == [CHALLENGER] * 3
    assert [game.dispute(i).defended for i in (d_1, d_2, d_3)] == [True, False, True]
    assert game.task(task_id).challengerWins == 3
    third = CHALLENGERS_HALF // 3
    shares = []
    for i in (d_3, d_1, d_2):
        rc = tb.claim_share(i, sender=challenger if i == d_3 else keeper)  # anyone; credited to the winner
        [ev] = [e for e in rc.events if e.event_name == "BondShareClaimed"]
        shares.append(ev.amount)
        assert tb.claim_share(i, expect="NoBondShare") is None
    assert shares == [third, third, CHALLENGERS_HALF - 2 * third] and sum(shares) == CHALLENGERS_HALF
    assert game.task(task_id).sharesClaimed == 3
    everyone = [requester, server, challenger, challenger2, challenger3, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    outcomes = {
        challenger3: (CHALLENGER, True),
        challenger: (CHALLENGER, True),
        challenger2: (CHALLENGER, False),
    }
    nets = expected_nets(server, requester, outcomes)  # in claim order: challenger2's claim was last
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(server) == -SERVER_BOND - 2 * CHALLENGER_BOND


# --- issue 17: commit-reveal, the answer window, the step bound -----------------------------------


def test_cancel_only_after_the_answer_window(table, requester, server, keeper):
    """A task can be cancelled by its requester only once ``moveWindow`` has passed since it was
    created, with no answer: an answer sent within that window cannot be raced by a cancel. A commit
    (even an unrevealed one) ends cancelling; an answer after the window is still taken."""
    tb, models = table(6, VALID)
    game = tb.game
    graph = honest_graph(INPUT, 5, 151)
    t_1 = tb.create_task(requester, models[5], INPUT)
    t_2 = tb.create_task(requester, models[5], INPUT)
    t_3 = tb.create_task(requester, models[5], INPUT)
    created = game.task(t_1).createdAt
    assert tb.cancel(t_1, server, expect="NotRequester") is None
    assert tb.cancel(t_1, requester, expect="AnswerWindowOpen") is None
    assert tb.commit(t_2, server, graph.final_state) is not None  # within its answer window
    tb.at(created + MOVE_WINDOW)
    assert tb.cancel(t_1, requester, expect="AnswerWindowOpen") is None  # the window's last second
    rc = tb.cancel(t_1, requester)  # one second later (a reverted transaction is mined too)
    assert rc.timestamp == created + MOVE_WINDOW + 1
    assert game.credit(requester) == REWARD
    assert tb.cancel(t_1, requester, expect="WrongTaskStatus") is None  # Cancelled
    assert tb.commit(t_1, server, graph.final_state, expect="WrongTaskStatus") is None
    assert tb.challenge(t_1, keeper, expect="WrongTaskStatus") is None
    assert tb.finalize(t_1, expect="WrongTaskStatus") is None
    assert tb.cancel(t_2, requester, expect="WrongTaskStatus") is None  # Answered, not revealed yet
    tb.at(created + 3 * MOVE_WINDOW)
    assert tb.commit(t_3, server, graph.final_state) is not None  # late, but not cancelled: taken
    assert tb.reveal(t_2, server, graph) is not None and tb.reveal(t_3, server, graph) is not None
    assert tb.settle(t_1, [], empty=False) == TaskStatus.CANCELLED
    assert tb.settle(t_2, [], empty=False) == TaskStatus.FINALIZED
    assert tb.settle(t_3, [requester, server, keeper]) == TaskStatus.FINALIZED
    assert tb.ledger.net(requester) == -2 * REWARD and tb.ledger.net(server) == 2 * REWARD


def test_copied_commitment_pays_the_copier_nothing(table, requester, server, challenger2, keeper):
    """A copier gets the honest server's commitment (its S_{N−1}) in first. The server's own commit is
    then refused; only the result's server may reveal, so the honest server cannot, and the copier does
    not have the output (guesses are not leaf N of the committed state). At the window's end
    ``finalize`` rejects the result as never revealed: the requester gets the reward and the copier's
    bond; the copier loses its bond, the honest server nothing."""
    copier = challenger2
    tb, models = table(6, VALID)
    game = tb.game
    graph = honest_graph(INPUT, 5, 152)
    task_id = tb.create_task(requester, models[5], INPUT)
    end = tb.commit(task_id, copier, graph.final_state).timestamp + WINDOW
    assert tb.commit(task_id, server, graph.final_state, expect="WrongTaskStatus") is None  # Answered
    assert tb.reveal(task_id, server, graph, expect="NotServer") is None
    guess = lying_graph(graph, 4, 152)  # a guessed output, with the proof of its own state
    assert tb.reveal(task_id, copier, guess, expect="OutputNotInState") is None
    _output, root, siblings = graph.reveal_args()  # even the true root and path: without the output
    with ape.reverts(game.OutputNotInState):
        game.revealOutput(task_id, guess.output, root, siblings, sender=copier)
    tb.at(end)
    assert tb.finalize(task_id, expect="WindowOpen") is None
    tb.at(end + 1)
    rc = tb.finalize(task_id)
    [ev] = [e for e in rc.events if e.event_name == "ResultRejected"]
    assert ev.expired and game.credit(requester) == REWARD + SERVER_BOND
    assert tb.reveal(task_id, copier, graph, expect="WrongTaskStatus") is None  # too late for anyone
    everyone = [requester, server, copier, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(copier, requester, {}, revealed=False)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(copier) == -SERVER_BOND and tb.ledger.net(server) == 0
    assert tb.ledger.net(requester) == SERVER_BOND


def test_unrevealed_result_that_wins_its_dispute(table, requester, server, challenger, keeper):
    """A server that commits the true S_{N−1}, defends and wins its dispute but never reveals the output
    keeps the dispute's stakes, and loses its bond and the reward to the requester at the window's end.
    A reveal is taken at any time before ``finalize``: during the dispute, or after the window."""
    _truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, always=False, seed=153)
    tb, models = table(4, verdict)
    for reveal in (False, True):
        task_id = tb.create_task(requester, models[4], INPUT)
        end = tb.commit(task_id, server, sp.graph.final_state).timestamp + WINDOW
        dispute_id = tb.challenge(task_id, challenger)
        assert tb.play(dispute_id, sp, cp).winner == SERVER
        if reveal:
            tb.at(end + 1)
            assert tb.reveal(task_id, server, sp.graph) is not None  # after the window: still taken
        everyone = [requester, server, challenger, keeper]
        status = tb.settle(task_id, everyone, check_window=True)
        assert status == (TaskStatus.FINALIZED if reveal else TaskStatus.REJECTED)
    nets = expected_nets(server, requester, {challenger: (SERVER, True)}, revealed=False)
    nets.update(expected_nets(server, requester, {challenger: (SERVER, True)}, revealed=True))
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)


def test_steps_over_the_bound(table, requester, server, challenger, keeper):
    """``claimExecution`` takes at most the model's ``maxSteps``: one more (or 2^64 − 1) reverts
    ``StepsOverBound``; exactly ``maxSteps`` (a lie past the program's halt) is taken, and phase 2 then
    bisects over ``maxSteps`` steps (⌈log2 16⌉ = 4 rounds) to the step the honest challenger wins."""
    _truth, sp, cp, verdict = plans(
        server, challenger, n=5, t=6, lie_node=2, lie_step=9, steps=MAX_STEPS, seed=154
    )
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    dispute_id = tb.challenge(task_id, challenger)
    assert tb.play(dispute_id, sp, cp, until=CLAIM) is None
    assert game.model(models[5]).maxSteps == MAX_STEPS
    view = tb.replicas[dispute_id].view()
    claimed = sp.claimed_state(view)
    for steps in (MAX_STEPS + 1, 2**48 + 1, 2**64 - 1):
        with ape.reverts(game.StepsOverBound, maxSteps=MAX_STEPS):
            game.claimExecution(dispute_id, steps, sp.trace.hash(MAX_STEPS), claimed, sender=server)
        assert (
            tb.move(
                dispute_id, server, "claim", steps, sp.trace.hash(MAX_STEPS), claimed, expect="StepsOverBound"
            )
            is None
        )
    got = tb.play(dispute_id, sp, cp)
    want = predict(sp, cp, True, verdict)
    assert (got.events, got.txs) == (want.events, want.txs)
    assert ("ExecutionClaimed", MAX_STEPS, sp.trace.hash(MAX_STEPS), claimed) in got.events
    assert got.winner == CHALLENGER and got.rounds[EXECUTION] == 4 and got.step_lo == 8
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.REJECTED
