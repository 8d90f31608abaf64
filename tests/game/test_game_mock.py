"""The verification game against ``AlphabetVM``: an adversarial matrix of honest and lying servers and
challengers (docs/protocol.md §3–§5), played move by move by ``_mock_driver``.

Every played case checks who wins (against the Python reference ``predict`` and, where one side is
honest, against the protocol's promise that the honest side wins), the bisection rounds per phase,
the local values that ``claimExecution`` writes (and that nothing writes them before), each account's
net wei against protocol §5, that an honest party never loses wei, that the task ends Finalized or
Rejected with every dispute Resolved, and that the game holds no wei once everybody has withdrawn.
Randomness (graph values, lie positions) is seeded.

``AlphabetVM`` ignores local values, so each case runs on the game whose VM exits with the node
program's verdict on the node the dispute reaches (``plans``, ``node_verdict``).
"""

import random

import ape
import pytest
from _mock_driver import (
    CHALLENGER_BOND,
    COMMITMENT,
    INVALID,
    MIN_WINDOW,
    MOVE_WINDOW,
    REWARD,
    SERVER_BOND,
    VALID,
    WINDOW,
    ChallengerPlan,
    Party,
    Phase,
    ServerPlan,
    Table,
    TaskStatus,
    Trace,
    expected_nets,
    honest_graph,
    lying_graph,
    max_rounds,
    node_verdict,
    path_rounds,
    predict,
    vm_hash,
    vm_state,
)

from opml.oracle import ChunkTree, localize_ident

INPUT = b"an input of more than one chunk: " + bytes(range(40))
NODE_COUNTS = (1, 4, 5)
HALTS = (1, 4, 6)


@pytest.fixture(scope="module")
def decks(project, deployer, requester, server, challenger, accounts, oracle):
    """One ``OpmlGame`` per ``AlphabetVM(haltAt, haltStatus)``, each with a model per node count."""
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
                rc = game.registerModel(COMMITMENT, n, program, program, "ipfs://mock", sender=deployer)
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
    always=None,
    quit_server=None,
    quit_round=None,
    challenger_steps=True,
    seed=0,
):
    """The truth, a server plan, a challenger plan and the VM verdict for one case.

    The server lies in phase 1 from ``lie_node`` (None: honest result). Its phase-2 trace is the truth
    where the program's verdict on the disputed node is valid, and otherwise a lie from ``lie_step``
    (default: only the final state, step ``t``)."""
    truth = honest_graph(INPUT, n, seed)
    graph = truth if lie_node is None else lying_graph(truth, lie_node, seed)
    garbage_from = lie_node + 1 if garbage else None
    sp = ServerPlan(server, graph, Trace(t, VALID), garbage_from=garbage_from, quit_at=quit_server, seed=seed)
    cp = ChallengerPlan(
        challenger, truth, Trace(t, VALID), frozenset(flip), always, quit_round, challenger_steps
    )
    if multi:
        first = predict(sp, cp, True, VALID)  # phase 1 does not depend on the VM
        verdict = VALID if first.hi_hash is None else node_verdict(truth, first.hi_hash)
    else:
        verdict = VALID if lie_node is None else INVALID
    cp.trace = Trace(t, verdict)
    if verdict == VALID:
        sp.trace = Trace(t, VALID, steps=steps)
    else:
        sp.trace = Trace(
            t, INVALID, steps=steps, lie_from=t if lie_step is None else lie_step, style=style, seed=seed
        )
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
    got = tb.play(dispute_id, sp, cp)
    assert (got.winner, got.by_timeout, got.node) == (want.winner, want.by_timeout, want.node)
    assert got.rounds == got.responded or want.by_timeout
    assert got.rounds == {
        Phase.GRAPH: want.rounds[Phase.GRAPH],
        Phase.EXECUTION: want.rounds[Phase.EXECUTION],
    }

    # Rounds (protocol §4.1): the path's length, never more than ⌈log2 n⌉.
    assert got.rounds[Phase.GRAPH] <= max_rounds(n) and got.rounds[Phase.EXECUTION] <= max_rounds(
        sp.trace.claimed_steps
    )
    if got.node is not None:
        assert got.rounds[Phase.GRAPH] == path_rounds(n, got.node)
    if got.step_lo is not None:
        assert got.rounds[Phase.EXECUTION] == path_rounds(sp.trace.claimed_steps, got.step_lo)

    # Local values (protocol §4.3): written by claimExecution, and only then.
    if ("claim", Phase.EXECUTION_CLAIM) in got.moves:
        check_local_values(tb, dispute_id, sp, multi, input_key)
    else:
        assert tb.local_values(dispute_id, idents=(1,)) == {1: None}

    everyone = [requester, sp.account, cp.account, tb.keeper]
    status = tb.settle(task_id, everyone, check_window=True)
    outcome = "won" if got.winner == Party.CHALLENGER else "lost"
    assert status == (TaskStatus.REJECTED if outcome == "won" else TaskStatus.FINALIZED)
    nets = expected_nets(sp.account, requester, {cp.account.address: outcome}, status == TaskStatus.FINALIZED)
    for account in everyone:
        assert tb.ledger.net(account) == nets[account.address], account
    if status == TaskStatus.REJECTED:
        assert tb.ledger.net(requester) >= 0
    if honest_online:
        honest_wins(got, sp, cp, tb, truth)
    return tb, got


def check_local_values(tb, dispute_id, sp, multi, input_key):
    """The local values of protocol §4.3 as the server's claims give them."""
    got = tb.local_values(dispute_id, written=(1, 2, 3, 4) if multi else (1, 2, 3))
    if multi:
        k = tb.game.dispute(dispute_id).node
        assert got == {
            1: (COMMITMENT, 32),
            2: (k.to_bytes(4, "little") + bytes(28), 4),
            # S_{k−1}: position k (position 0 computed on-chain; any other, the server's agreed claim)
            3: (sp.graph_claim(k), 32),
            # the server's S_k: position k + 1 (position N: the result's finalState)
            4: (sp.graph.final_state if k + 1 == sp.graph.n else sp.graph_claim(k + 1), 32),
        }
    else:
        assert got == {1: (COMMITMENT, 32), 2: (bytes(input_key), 32), 3: (sp.graph.final_state, 32), 4: None}


def honest_wins(got, sp, cp, tb, truth):
    """The protocol's promise: the honest side wins and loses no wei."""
    server_honest = sp.graph == truth and sp.trace.lie_from is None
    if server_honest:  # a challenger of an honest result lies, however it answers
        assert got.winner == Party.SERVER
        assert tb.ledger.net(sp.account) >= 0
    elif cp.honest:
        assert got.winner == Party.CHALLENGER
        assert tb.ledger.net(cp.account) >= 0


# --- a lying server against an honest challenger --------------------------------------------------


@pytest.mark.parametrize("lie_node", range(5))
def test_server_lies_from_each_node(table, requester, server, challenger, lie_node):
    """N = 5: the server's values are wrong from node ``lie_node`` on (and its phase-2 claim only in
    its final state); the honest challenger finds that node and wins by the step."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=lie_node, seed=11)
    assert verdict == INVALID
    tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    assert got.node == lie_node and got.winner == Party.CHALLENGER and not got.by_timeout
    assert got.moves[-1] == ("step", Phase.STEP)
    assert tb.ledger.net(server) == -SERVER_BOND
    # Rounds: ⌈log2 5⌉ = 3 is the most; the paths to nodes 0, 1 and 2 take 2 (protocol §4.1 says
    # "takes ⌈log2 n⌉ rounds", which holds for powers of two only).
    assert got.rounds[Phase.GRAPH] == (2 if lie_node < 3 else 3) == path_rounds(5, lie_node)
    assert got.rounds[Phase.EXECUTION] == 3 == path_rounds(6, 5)


@pytest.mark.parametrize("lie_step", [1, 2, 4, 6])
def test_server_lies_from_each_step(table, requester, server, challenger, lie_step):
    """T = 6: the server's phase-2 states are wrong from step ``lie_step`` on (1 … T)."""
    lie_node = random.Random(lie_step).randrange(5)
    truth, sp, cp, verdict = plans(
        server, challenger, n=5, t=6, lie_node=lie_node, lie_step=lie_step, seed=12
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5)
    # The disputed step is the first one the server lies about.
    assert got.step_lo == lie_step - 1 and got.winner == Party.CHALLENGER and not got.by_timeout


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
    assert got.node == lie_node and got.winner == Party.CHALLENGER
    assert got.step_lo == lie_step - 1


# --- an honest server against a lying challenger --------------------------------------------------


@pytest.mark.parametrize(
    "flip, always",
    [((r,), None) for r in range(4)] + [((), False), ((), True)],
    ids=[f"flip-round-{r}" for r in range(4)] + ["always-disagree", "always-agree"],
)
def test_challenger_lies_at_each_round(table, requester, server, challenger, flip, always):
    """N = T = 4: two rounds in each phase, rounds 0–1 in phase 1 and 2–3 in phase 2."""
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, flip=flip, always=always, seed=21)
    assert verdict == VALID
    tb, got = run(table, requester, sp, cp, truth, verdict, n=4)
    assert got.winner == Party.SERVER and not got.by_timeout
    assert got.rounds == {Phase.GRAPH: 2, Phase.EXECUTION: 2}  # 4 positions: exactly ⌈log2 4⌉
    assert tb.ledger.net(server) == REWARD + CHALLENGER_BOND
    assert tb.ledger.net(challenger) == -CHALLENGER_BOND


# --- single-phase mode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lie, lie_step, flip, always",
    [(False, None, (), False), (False, None, (1,), None), (True, 1, (), None), (True, 6, (), None)],
    ids=["honest-vs-disagree", "honest-vs-flip-1", "liar-step-1", "liar-step-T"],
)
def test_single_phase(table, requester, server, challenger, lie, lie_step, flip, always):
    """``multiPhase = false``: phase 2 over the whole-model program, from ``challenge`` on."""
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
        always=always,
        seed=31,
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5, multi=False)
    assert got.rounds[Phase.GRAPH] == 0 and got.node is None
    assert not any(p == Phase.GRAPH for _, p in got.moves)
    assert got.winner == (Party.CHALLENGER if lie else Party.SERVER)
    if lie:
        assert got.step_lo == lie_step - 1


# --- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, t, lie",
    [(1, 1, True), (4, 1, True), (1, 1, False)],
)
def test_round_counts(table, requester, server, challenger, n, t, lie):
    """Rounds per phase (Bisected and Responded events) against ⌈log2 n⌉ (protocol §4.1, §6). With
    n = 1 a phase has no round; with n a power of two every path takes exactly ⌈log2 n⌉ rounds (for
    other n see ``test_server_lies_from_each_node``)."""
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
    assert got.rounds == got.responded == {Phase.GRAPH: want_graph, Phase.EXECUTION: want_exec}
    if n & (n - 1) == 0:
        assert want_graph == max_rounds(n)
    if t & (t - 1) == 0:
        assert want_exec == max_rounds(t)
    # Transactions (protocol §6): challenge, 2 per round, claimExecution, step.
    kinds = [k for k, _ in got.moves]
    assert len(kinds) + 1 <= 1 + 2 * max_rounds(n) + 1 + 2 * max_rounds(t) + 1
    assert kinds.count("claim") == 1 and kinds.count("step") == 1


def test_worst_paths_reach_ceil_log2():
    """Over all end points, the longest bisection path has ⌈log2 n⌉ rounds and the shortest ⌊log2 n⌋."""
    for n in range(1, 70):
        lengths = [path_rounds(n, k) for k in range(n)]
        assert max(lengths) == max_rounds(n)
        assert min(lengths) == (n.bit_length() - 1)


# --- honest result, no challenge ------------------------------------------------------------------


def test_unchallenged_result_finalizes(table, requester, server, challenger, keeper):
    """No challenge: ``finalize`` at the window's last second reverts, one second later it pays the
    server reward + bond."""
    tb, models = table(6, VALID)
    game = tb.game
    graph = honest_graph(INPUT, 5, 51)
    task_id = tb.create_task(requester, models[5], INPUT)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.OPEN):
        game.finalize(task_id, sender=keeper)
    rc = tb.submit(task_id, server, graph)
    end = rc.timestamp + WINDOW
    assert game.result(task_id).submittedAt == rc.timestamp
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.ANSWERED):
        game.submitResult(task_id, *graph.submit_args(), sender=server, value=SERVER_BOND)
    tb.at(end)
    with ape.reverts(game.WindowOpen):
        game.finalize(task_id, sender=keeper)
    tb.at(end + 1)
    rc = game.finalize(task_id, sender=keeper)
    assert [e.event_name for e in rc.events] == ["ResultFinalized"]
    assert game.credit(server) == REWARD + SERVER_BOND
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.FINALIZED):
        game.finalize(task_id, sender=keeper)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.FINALIZED):
        game.challenge(task_id, sender=challenger, value=CHALLENGER_BOND)
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
    got = tb.play(dispute_id, sp, cp)
    assert got.winner == Party.SERVER
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.FINALIZED
    assert tb.ledger.net(server) == REWARD + CHALLENGER_BOND


# --- deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quit_server, quit_round, multi, lie",
    [
        ("graph", None, True, True),
        ("execution", None, True, True),
        ("claim", None, True, True),
        ("claim", None, False, True),
        ("step", None, True, True),
        (None, 0, True, False),
        (None, 3, True, False),  # agreeing throughout, N = 5 ends at node 4 after 3 rounds
        (None, 0, False, False),
    ],
    ids=[
        "server-bisect-1",
        "server-bisect-2",
        "server-claim",
        "server-claim-single",
        "server-step",
        "challenger-respond-1",
        "challenger-respond-2",
        "challenger-respond-single",
    ],
)
def test_timeouts(table, requester, server, challenger, quit_server, quit_round, multi, lie):
    """The side whose turn it is loses after the deadline; ``timeout`` at the deadline itself reverts
    ``DeadlineNotPassed`` (checked by the driver before every timeout). A lying server quits; an honest
    server's challenger (who only challenged, agreeing with everything) quits."""
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        multi=multi,
        lie_node=3 if lie else None,
        quit_server=quit_server,
        quit_round=quit_round,
        challenger_steps=quit_server != "step",
        always=None if lie else True,
        seed=61,
    )
    _tb, got = run(table, requester, sp, cp, truth, verdict, n=5, multi=multi)
    assert got.by_timeout
    assert got.winner == (Party.CHALLENGER if quit_server else Party.SERVER)
    if quit_round == 3:
        assert got.rounds == {Phase.GRAPH: 3, Phase.EXECUTION: 1}


def test_honest_server_offline_at_step_loses(table, requester, server, challenger):
    """The step is the server's burden (protocol §4.5): an honest server that does not step, against a
    challenger who will not, loses its bond by timeout."""
    truth, sp, cp, verdict = plans(
        server, challenger, n=5, t=6, always=False, quit_server="step", challenger_steps=False, seed=62
    )
    tb, got = run(table, requester, sp, cp, truth, verdict, n=5, honest_online=False)
    assert got.winner == Party.CHALLENGER and got.by_timeout
    assert tb.ledger.net(server) == -SERVER_BOND


# --- both sides lying -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed", [0, 1, 4]
)  # the challenger wins by timeout; the server wins; ditto, at a true node
def test_both_lie(table, requester, server, challenger, seed):
    """A lying server against a challenger who also lies: one of them wins (as the reference predicts)
    and all wei is accounted for."""
    rng = random.Random(f"both-{seed}")
    lie_node = rng.randrange(5)
    choice = rng.choice(["flip", "agree", "disagree"])
    flip = tuple(sorted(rng.sample(range(5), rng.randint(1, 3)))) if choice == "flip" else ()
    always = {"agree": True, "disagree": False}.get(choice)
    truth, sp, cp, verdict = plans(
        server,
        challenger,
        n=5,
        t=6,
        lie_node=lie_node,
        lie_step=rng.randint(1, 6),
        flip=flip,
        always=always,
        seed=70 + seed,
    )
    assert not cp.honest
    run(table, requester, sp, cp, truth, verdict, n=5)


# --- several challengers --------------------------------------------------------------------------


def test_two_challengers_honest_wins(table, requester, server, challenger, challenger2, keeper):
    """A lying result, an honest challenger and a lying one (who agrees with everything): the honest one
    wins, the result is rejected, and the other dispute can only be closed (its bond refunded)."""
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=2, seed=81)
    tb, models = table(6, verdict)
    game = tb.game
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_liar = tb.challenge(task_id, challenger2)
    d_honest = tb.challenge(task_id, challenger)
    assert game.result(task_id).openDisputes == 2
    assert game.localContext(d_liar) != game.localContext(d_honest)
    # The liar's dispute gets one round in, then waits on the server.
    game.bisect(d_liar, sp.graph_claim(2), sender=server)
    game.respond(d_liar, True, sender=challenger2)
    with ape.reverts(game.ResultNotRejected):
        game.closeDispute(d_liar, sender=keeper)

    got = tb.play(d_honest, sp, cp)
    assert got.winner == Party.CHALLENGER
    assert game.task(task_id).status == TaskStatus.REJECTED

    # Moves, steps and timeouts on the other dispute revert; only closing is left.
    d = game.dispute(d_liar)
    assert Phase(d.phase) == Phase.GRAPH and Party(d.turn) == Party.SERVER
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.bisect(d_liar, sp.graph_claim(3), sender=server)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.respond(d_liar, False, sender=challenger2)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.step(d_liar, vm_state(0, 3), b"", sender=keeper)
    tb.at(d.deadline + 1)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.timeout(d_liar, sender=keeper)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.REJECTED):
        game.challenge(task_id, sender=keeper, value=CHALLENGER_BOND)
    rc = game.closeDispute(d_liar, sender=keeper)
    assert [e.event_name for e in rc.events] == ["DisputeClosed"]
    assert game.credit(challenger2) == CHALLENGER_BOND
    with ape.reverts(game.WrongPhase, phase=Phase.RESOLVED):
        game.closeDispute(d_liar, sender=keeper)
    with ape.reverts(game.WrongPhase, phase=Phase.RESOLVED):
        game.bisect(d_liar, sp.graph_claim(3), sender=server)

    everyone = [requester, server, challenger, challenger2, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(server, requester, {challenger.address: "won", challenger2.address: "closed"}, False)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(challenger) == SERVER_BOND // 2 and tb.ledger.net(challenger2) == 0


def test_two_challengers_liar_resolves_first(table, requester, server, challenger, challenger2):
    """The lying challenger loses first (the server is paid its bond at once); the honest one still
    rejects the result afterwards."""
    truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=4, seed=82)
    # The liar finds node 4 as the honest one does, then disagrees with the server's true steps: the
    # step it is left with is one the server computed right. (With one toy VM per game, a liar that
    # ended phase 1 at another node would meet the same verdict.)
    liar = ChallengerPlan(challenger2, truth, cp.trace, flip=frozenset(range(3, 6)))
    assert predict(sp, liar, True, verdict).winner == Party.SERVER
    tb, models = table(6, verdict)
    task_id = tb.create_task(requester, models[5], INPUT)
    tb.submit(task_id, server, sp.graph)
    d_honest = tb.challenge(task_id, challenger)
    d_liar = tb.challenge(task_id, challenger2)
    assert tb.play(d_liar, sp, liar).winner == Party.SERVER
    assert tb.game.credit(server) == CHALLENGER_BOND
    assert tb.game.task(task_id).status == TaskStatus.ANSWERED
    assert tb.play(d_honest, sp, cp).winner == Party.CHALLENGER
    everyone = [requester, server, challenger, challenger2, tb.keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    nets = expected_nets(server, requester, {challenger.address: "won", challenger2.address: "lost"}, False)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)


def test_two_lying_challengers_against_honest_server(table, requester, server, challenger, challenger2):
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, always=False, seed=83)
    other = ChallengerPlan(challenger2, truth, cp.trace, flip=frozenset({3}))
    tb, models = table(4, verdict)
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    d1, d2 = tb.challenge(task_id, challenger), tb.challenge(task_id, challenger2)
    assert tb.play(d2, sp, other).winner == Party.SERVER
    assert tb.play(d1, sp, cp).winner == Party.SERVER
    everyone = [requester, server, challenger, challenger2, tb.keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.FINALIZED
    nets = expected_nets(server, requester, {challenger.address: "lost", challenger2.address: "lost"}, True)
    assert all(tb.ledger.net(a) == nets[a.address] for a in everyone)
    assert tb.ledger.net(server) == REWARD + 2 * CHALLENGER_BOND


# --- the step -------------------------------------------------------------------------------------


def reach_step(table, requester, sp, cp, verdict, n=5):
    tb, models = table(sp.trace.halt_at, verdict)
    task_id = tb.create_task(requester, models[n], INPUT)
    tb.submit(task_id, sp.account, sp.graph)
    dispute_id = tb.challenge(task_id, cp.account)
    assert tb.play(dispute_id, sp, cp, until=Phase.STEP) is None
    return tb, task_id, dispute_id


def test_forged_witness_and_wrong_pre_state(table, requester, server, challenger, keeper):
    _truth, sp, cp, verdict = plans(server, challenger, n=5, t=6, lie_node=1, lie_step=4, seed=91)
    tb, task_id, dispute_id = reach_step(table, requester, sp, cp, verdict)
    game, vm = tb.game, tb.vm
    before = game.dispute(dispute_id)
    assert Phase(before.phase) == Phase.STEP and before.lo == 3 and before.hi == 4
    pre = cp.trace.state(3)
    assert vm_hash(pre) == bytes(before.loHash)
    credits = [game.credit(a) for a in (server, challenger, requester)]

    # A forged witness: the VM reverts, so the step does.
    with ape.reverts(vm.BadWitness):
        game.step(dispute_id, pre, b"\xff" + bytes(31), sender=keeper)
    # Pre-states that do not hash to the agreed state: the next one, the server's, a running state
    # one position off, and a malformed one (the VM's stateHash reverts).
    for wrong in (cp.trace.state(4), sp.trace.state(4), vm_state(3, 0), vm_state(2, 3)):
        with ape.reverts(game.WrongPreState):
            game.step(dispute_id, wrong, b"", sender=keeper)
    with ape.reverts(vm.BadWitness):
        game.step(dispute_id, pre + b"\x00", b"", sender=keeper)
    # No move but the step is left.
    with ape.reverts(game.WrongPhase, phase=Phase.STEP):
        game.bisect(dispute_id, bytes(32), sender=server)
    with ape.reverts(game.NotYourTurn):
        game.respond(dispute_id, True, sender=challenger)
    with ape.reverts(game.WrongPhase, phase=Phase.STEP):
        game.claimExecution(dispute_id, 6, bytes(32), sender=server)
    assert game.dispute(dispute_id) == before
    assert [game.credit(a) for a in (server, challenger, requester)] == credits

    # Anyone may step; the honest pre-state gives the true post-state, not the server's claim.
    rc = game.step(dispute_id, pre, b"", sender=keeper)
    [played] = [e for e in rc.events if e.event_name == "StepPlayed"]
    assert played.position == 3 and bytes(played.postState) == vm_hash(cp.trace.state(4))
    assert Party(game.dispute(dispute_id).winner) == Party.CHALLENGER
    with ape.reverts(game.WrongPhase, phase=Phase.RESOLVED):
        game.step(dispute_id, pre, b"", sender=keeper)
    assert tb.settle(task_id, [requester, server, challenger, keeper]) == TaskStatus.REJECTED


# --- replays and refused moves --------------------------------------------------------------------


def test_refused_moves(table, requester, server, challenger, challenger2, keeper, accounts):
    """Moves with an unknown or another dispute's id, two moves in one turn, moves after the deadline
    and by third parties, self-challenges, double challenges, wrong bonds, challenges after the window."""
    server2 = accounts[6]
    _truth, sp, _cp, verdict = plans(server, challenger, n=5, t=6, lie_node=1, seed=101)
    tb, models = table(6, verdict)
    game = tb.game
    task_a = tb.create_task(requester, models[5], INPUT)
    task_b = tb.create_task(requester, models[5], INPUT)

    with ape.reverts(game.WrongBond, expected=SERVER_BOND):
        game.submitResult(task_a, *sp.graph.submit_args(), sender=server, value=SERVER_BOND - 1)
    output, final_state, root, siblings = sp.graph.submit_args()
    with ape.reverts(game.OutputNotInState):
        game.submitResult(
            task_a, output + b"!", final_state, root, siblings, sender=server, value=SERVER_BOND
        )
    with ape.reverts(game.UnknownId):
        game.challenge(task_b + 1, sender=challenger, value=CHALLENGER_BOND)
    with ape.reverts(game.WrongTaskStatus, status=TaskStatus.OPEN):
        game.challenge(task_a, sender=challenger, value=CHALLENGER_BOND)
    end_a = tb.submit(task_a, server, sp.graph).timestamp + WINDOW
    tb.submit(task_b, server2, sp.graph)

    with ape.reverts(game.ChallengeNotAllowed):
        game.challenge(task_a, sender=server, value=CHALLENGER_BOND)
    with ape.reverts(game.WrongBond, expected=CHALLENGER_BOND):
        game.challenge(task_a, sender=challenger, value=CHALLENGER_BOND + 1)
    with ape.reverts(game.WrongBond, expected=CHALLENGER_BOND):
        game.challenge(task_a, sender=challenger, value=0)
    d_a = tb.challenge(task_a, challenger)
    with ape.reverts(game.ChallengeNotAllowed):
        game.challenge(task_a, sender=challenger, value=CHALLENGER_BOND)
    d_b = tb.challenge(task_b, challenger2)
    assert game.challenged(task_a, challenger) and not game.challenged(task_a, challenger2)

    # An unknown id, another dispute's id, a move by someone who is not a party.
    for fn, args, who in [
        (game.bisect, (bytes(32),), server),
        (game.respond, (True,), challenger),
        (game.claimExecution, (1, bytes(32)), server),
        (game.step, (vm_state(0, 3), b""), keeper),
        (game.timeout, (), keeper),
        (game.closeDispute, (), keeper),
    ]:
        with ape.reverts(game.UnknownId):
            fn(d_b + 1, *args, sender=who)
    with ape.reverts(game.UnknownId):
        game.dispute(d_b + 1)
    with ape.reverts(game.NotParty):
        game.bisect(d_b, sp.graph_claim(2), sender=server)  # A's server on B's dispute
    with ape.reverts(game.NotParty):
        game.bisect(d_a, sp.graph_claim(2), sender=keeper)
    with ape.reverts(game.NotParty):
        game.bisect(d_a, sp.graph_claim(2), sender=challenger)
    with ape.reverts(game.WrongPhase, phase=Phase.GRAPH):
        game.claimExecution(d_a, 6, sp.trace.hash(6), sender=server)
    with ape.reverts(game.WrongPhase, phase=Phase.GRAPH):
        game.step(d_a, vm_state(0, 3), b"", sender=keeper)
    with ape.reverts(game.NotYourTurn):
        game.respond(d_a, True, sender=challenger)
    with ape.reverts(game.ResultNotRejected):
        game.closeDispute(d_a, sender=keeper)

    # Two moves in one turn; the other dispute's parties.
    game.bisect(d_a, sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotYourTurn):
        game.bisect(d_a, sp.graph_claim(2), sender=server)
    with ape.reverts(game.NotParty):
        game.respond(d_a, False, sender=challenger2)  # B's challenger on A's dispute
    with ape.reverts(game.NotParty):
        game.respond(d_a, False, sender=server)
    game.respond(d_a, False, sender=challenger)
    with ape.reverts(game.NotYourTurn):
        game.respond(d_a, False, sender=challenger)

    # A move at the deadline is in time; one second later it is not.
    d = game.dispute(d_a)
    tb.at(d.deadline)
    game.bisect(d_a, sp.graph_claim(1), sender=server)
    d = game.dispute(d_a)
    tb.at(d.deadline + 1)
    with ape.reverts(game.DeadlinePassed):
        game.respond(d_a, False, sender=challenger)
    with ape.reverts(game.DeadlinePassed):
        game.bisect(d_b, sp.graph_claim(2), sender=server2)
    # The challenger of A and the server of B lose by timeout.
    game.timeout(d_a, sender=keeper)
    game.timeout(d_b, sender=keeper)
    assert Party(game.dispute(d_a).winner) == Party.SERVER
    assert Party(game.dispute(d_b).winner) == Party.CHALLENGER
    with ape.reverts(game.WrongPhase, phase=Phase.RESOLVED):
        game.timeout(d_a, sender=keeper)
    with ape.reverts(game.ChallengeNotAllowed):
        game.challenge(task_a, sender=challenger, value=CHALLENGER_BOND)  # one dispute per challenger
    tb.at(end_a + 1)
    with ape.reverts(game.WindowClosed):
        game.challenge(task_a, sender=challenger2, value=CHALLENGER_BOND)

    everyone = [requester, server, server2, challenger, challenger2, keeper]
    assert tb.settle(task_b, [], empty=False) == TaskStatus.REJECTED
    assert tb.settle(task_a, everyone) == TaskStatus.FINALIZED
    assert tb.ledger.net(server) == REWARD + CHALLENGER_BOND  # a lie nobody proved: it stands
    assert tb.ledger.net(challenger) == -CHALLENGER_BOND
    assert tb.ledger.net(server2) == -SERVER_BOND
    assert tb.ledger.net(challenger2) == SERVER_BOND // 2


def test_step_pre_state_from_another_dispute(table, requester, server, challenger, challenger2, accounts):
    """Two disputes at the step at different positions: neither's pre-state opens the other's."""
    server2 = accounts[6]
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
    assert tb.play(d_a, sp, cp, until=Phase.STEP) is None
    assert tb.play(d_b, sp_b, cp_b, until=Phase.STEP) is None
    a, b = game.dispute(d_a), game.dispute(d_b)
    assert (a.lo, b.lo) == (1, 4)
    with ape.reverts(game.WrongPreState):
        game.step(d_a, cp.trace.state(b.lo), b"", sender=challenger)
    with ape.reverts(game.WrongPreState):
        game.step(d_b, cp.trace.state(a.lo), b"", sender=challenger2)
    # Each server's own states do not open the other dispute either.
    with ape.reverts(game.WrongPreState):
        game.step(d_a, sp_b.trace.state(4), b"", sender=server)
    game.step(d_a, cp.trace.state(a.lo), b"", sender=challenger)
    game.step(d_b, cp.trace.state(b.lo), b"", sender=challenger2)
    assert Party(game.dispute(d_a).winner) == Party(game.dispute(d_b).winner) == Party.CHALLENGER
    everyone = [requester, server, server2, challenger, challenger2]
    assert tb.settle(task_a, [], empty=False) == TaskStatus.REJECTED
    assert tb.settle(task_b, everyone) == TaskStatus.REJECTED
    assert tb.ledger.net(requester) == 2 * (SERVER_BOND - SERVER_BOND // 2)


# --- the phase-2 local values ---------------------------------------------------------------------


@pytest.mark.parametrize("lie_node", [0, 3])
def test_local_values(table, requester, server, challenger, keeper, lie_node):
    """After phase 1 ends at node k and the server claims its execution, the oracle holds, under the
    game's localized keys: the commitment, k (u32 little-endian), the agreed S_{k−1} and the server's
    S_k; nobody else can write those keys."""
    truth, sp, cp, verdict = plans(server, challenger, n=4, t=4, lie_node=lie_node, seed=111)
    tb, models = table(4, verdict)
    game, oracle = tb.game, tb.oracle
    task_id = tb.create_task(requester, models[4], INPUT)
    tb.submit(task_id, server, sp.graph)
    dispute_id = tb.challenge(task_id, challenger)
    other_id = tb.challenge(task_id, keeper)
    nothing = {i: None for i in range(1, 5)}
    assert tb.play(dispute_id, sp, cp, until=Phase.EXECUTION_CLAIM) is None
    k = lie_node
    assert game.dispute(dispute_id).node == k
    assert tb.local_values(dispute_id) == nothing  # written by claimExecution, not by phase 1's end
    assert tb.play(dispute_id, sp, cp, until=Phase.EXECUTION) is None
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
    check_local_values(tb, dispute_id, sp, True, game.task(task_id).inputKey)
    assert tb.play(dispute_id, sp, cp).winner == Party.CHALLENGER
    assert tb.local_values(dispute_id) == want  # written once
    everyone = [requester, server, challenger, keeper]
    assert tb.settle(task_id, everyone) == TaskStatus.REJECTED
    assert tb.ledger.net(keeper) == 0  # its dispute was closed and refunded


@pytest.mark.parametrize("multi", [True, False])
def test_local_values_without_phase_one(table, requester, server, challenger, multi):
    """With N = 1 (multi-phase: k = 0, S_{−1} computed on-chain) or in single-phase mode, phase 2 starts
    at ``challenge``; the values are written by the server's ``claimExecution``."""
    n = 1 if multi else 4
    _truth, sp, cp, verdict = plans(server, challenger, n=n, t=4, multi=multi, lie_node=0, seed=121)
    tb, models = table(4, verdict)
    task_id = tb.create_task(requester, models[n], INPUT, multi)
    tb.submit(task_id, server, sp.graph)
    rc = tb.game.challenge(task_id, sender=challenger, value=CHALLENGER_BOND)
    tb.ledger.paid[challenger.address] += CHALLENGER_BOND
    dispute_id = rc.events[0].disputeId
    tb.disputes[task_id] = [dispute_id]
    names = [e.event_name for e in rc.events]
    assert names == (["DisputeOpened", "PhaseOneEnded"] if multi else ["DisputeOpened"])
    d = tb.game.dispute(dispute_id)
    assert Phase(d.phase) == Phase.EXECUTION_CLAIM and Party(d.turn) == Party.SERVER
    assert tb.local_values(dispute_id, idents=(1,)) == {1: None}
    # Execution claims that are not a valid exit, or not the server's.
    game, steps = tb.game, sp.trace.claimed_steps
    with ape.reverts(game.NotAValidExit):
        game.claimExecution(dispute_id, 0, sp.trace.hash(steps), sender=server)
    for status in (3, 1, 2):  # running, invalid, panic
        with ape.reverts(game.NotAValidExit):
            game.claimExecution(dispute_id, steps, bytes([status]) + bytes(31), sender=server)
    with ape.reverts(game.NotParty):
        game.claimExecution(dispute_id, steps, sp.trace.hash(steps), sender=challenger)
    with ape.reverts(game.WrongPhase, phase=Phase.EXECUTION_CLAIM):
        game.step(dispute_id, vm_state(0, 3), b"", sender=challenger)
    assert tb.local_values(dispute_id, idents=(1,)) == {1: None}
    assert tb.play(dispute_id, sp, cp, until=Phase.EXECUTION) is None
    input_key = tb.game.task(task_id).inputKey
    assert bytes(input_key) == ChunkTree.from_bytes(INPUT).key
    check_local_values(tb, dispute_id, sp, multi, input_key)
    if multi:
        assert tb.local_values(dispute_id)[3] == (bytes(tb.game.initialGraphState(input_key)), 32)
    assert tb.play(dispute_id, sp, cp).winner == Party.CHALLENGER
    assert tb.settle(task_id, [requester, server, challenger]) == TaskStatus.REJECTED
