"""Honest agents against what a stranger may put on-chain (issue 17): each case was a cheap way to
silence an honest ``opml server`` or ``opml challenger`` before, after which the liar won every open
dispute by timeout. Every case plays real disputes over the digits MLP on py-evm."""

from __future__ import annotations

import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import (
    CHALLENGER_BOND,
    REWARD,
    SERVER_BOND,
    TASK_WINDOW,
    deploy_game,
    post_task,
    register,
    settle,
)
from _toolchain import build_toolchain
from eth_abi import encode
from eth_utils import keccak

from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent, registration_args
from opml.game.lies import Lie
from opml.game.policy import AgentPolicy
from opml.game.solver import Party, Phase
from opml.ml.format import read_model

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def model():
    build_toolchain()
    return read_model(MODELS / "digits_mlp.opml")


@pytest.fixture(scope="module")
def x_bytes():
    return np.asarray(digits_test_split()[0][3].reshape(DIGITS_SHAPES["digits_mlp"]), np.int8).tobytes()


@pytest.fixture
def game(project, deployer):
    return deploy_game(project, deployer).game


def resolutions(game) -> list[tuple[int, Party]]:
    from ape import chain

    logs = game.DisputeResolved.range(0, chain.blocks.height + 1)
    return sorted((int(log.disputeId), Party(int(log.winner))) for log in logs)


def poison_registration(game, model, sender) -> int:
    """``registerModel`` with a ``uri`` that is not UTF-8 (sent as raw calldata: ape would encode a str):
    before, every agent crashed decoding ``game.model(id)`` for a task on it."""
    signature = "registerModel(bytes32,uint32,uint32,uint64,bytes32,bytes32,string)"
    types = ["bytes32", "uint32", "uint32", "uint64", "bytes32", "bytes32", "bytes"]
    args = [*registration_args(model)[:-1], b"\xff\xfe\xc3(not utf-8"]
    sender.transfer(game.address, 0, data=keccak(text=signature)[:4] + encode(types, args))
    return int(game.modelCount()) - 1


@pytest.mark.parametrize("liar_role", [Party.SERVER, Party.CHALLENGER])
def test_a_poisoned_registration_and_a_1_wei_task_silence_nobody(
    liar_role, model, x_bytes, game, chain, deployer, requester, server, challenger, tmp_path
):
    poisoned = poison_registration(game, model, deployer)
    game.createTask(poisoned, x_bytes, TASK_WINDOW, True, sender=deployer, value=1)
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, x_bytes, requester)
    lie = {"lie": Lie.at_node(1)}
    agents = [
        Agent(
            game,
            server,
            Party.SERVER,
            [model],
            tmp_path / "s",
            **(lie if liar_role is Party.SERVER else {}),
            **QUIET,
        ),
        Agent(
            game,
            challenger,
            Party.CHALLENGER,
            [model],
            tmp_path / "c",
            **(lie if liar_role is Party.CHALLENGER else {}),
            **QUIET,
        ),
    ]
    settle(chain, game, agents, [task_id])
    honest = Party.CHALLENGER if liar_role is Party.SERVER else Party.SERVER
    # the poisoned registration names the real model: its 1-wei task is read, and not worth answering
    assert resolutions(game) == [(0, honest)]
    assert int(game.task(task_id).status) == (TASK_REJECTED if honest is Party.CHALLENGER else TASK_FINALIZED)


TX_HEADROOM = 10**17
"""What the embedded node's transactions need beyond their value: it signs with the block's gas limit."""


def funded_account(accounts, amount: int):
    account = accounts.generate_test_account()
    accounts[9].transfer(account, amount + TX_HEADROOM)
    return account


def test_a_challenger_one_bond_short_still_wins_its_open_dispute(
    model, x_bytes, game, chain, accounts, deployer, requester, server, tmp_path
):
    """Two wrong answers; the challenger can afford one bond (and the gas of one more dispute): it
    disputes the first, logs that it cannot bond the second, and wins the first."""
    model_id = register(game, model, deployer)
    policy = AgentPolicy()
    gas_price = int(chain.provider.gas_price)
    poor = funded_account(accounts, CHALLENGER_BOND + policy.gas_reserve(gas_price, 1))
    lines: list[str] = []
    honest = Agent(game, poor, Party.CHALLENGER, [model], tmp_path / "c", policy=policy, log=lines.append)
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.at_node(1), **QUIET)
    tasks = [post_task(game, model_id, x_bytes, requester) for _ in range(2)]
    settle(chain, game, [liar, honest], tasks)
    assert int(game.dispute(0).taskId) == tasks[0]
    # once paid, it may afford the second dispute within that task's window: every dispute is won
    assert {winner for _, winner in resolutions(game)} == {Party.CHALLENGER}
    assert any("cannot cover it" in line for line in lines), lines


def test_a_server_one_bond_short_still_wins_its_open_dispute(
    model, x_bytes, game, chain, accounts, deployer, requester, challenger, tmp_path
):
    model_id = register(game, model, deployer)
    policy = AgentPolicy()
    gas_price = int(chain.provider.gas_price)
    need = SERVER_BOND + CHALLENGER_BOND + policy.gas_reserve(gas_price, 0)
    poor = funded_account(accounts, need)
    lines: list[str] = []
    honest = Agent(game, poor, Party.SERVER, [model], tmp_path / "s", policy=policy, log=lines.append)
    liar = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", lie=Lie.at_node(1), **QUIET)
    tasks = [post_task(game, model_id, x_bytes, requester) for _ in range(2)]
    for _ in range(200):  # until the first dispute is over; the second task stays unanswered
        if int(game.disputeCount()) and Phase(int(game.dispute(0).phase)) is Phase.RESOLVED:
            break
        if honest.poll() + liar.poll() == 0:
            chain.pending_timestamp += 3601
            chain.mine()
    assert resolutions(game) == [(0, Party.SERVER)]
    assert int(game.task(tasks[1]).status) == 1  # open: the server could not afford its bond
    assert any("cannot cover it" in line for line in lines), lines


def test_spam_tasks_leave_a_poll_flat(
    model, x_bytes, game, chain, deployer, requester, server, tmp_path, monkeypatch
):
    """100 tasks of 1 wei: the server reads each once when it appears; after that a poll costs the same
    node requests as before them (one log query per poll, whatever the number of tasks)."""
    model_id = register(game, model, deployer)
    agent = Agent(
        game, server, Party.SERVER, [model], tmp_path / "s", policy=AgentPolicy(min_reward=10**6), **QUIET
    )
    provider = type(chain.provider)
    counts = {"logs": 0, "calls": 0}

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(provider, "get_contract_logs", counting("logs", provider.get_contract_logs))
    monkeypatch.setattr(provider, "send_call", counting("calls", provider.send_call))

    def poll_cost() -> dict[str, int]:
        chain.mine()  # a new block, so discovery reads its events
        before = dict(counts)
        agent.poll()
        return {k: counts[k] - before[k] for k in counts}

    agent.poll()
    baseline = poll_cost()
    for _ in range(100):
        game.createTask(model_id, x_bytes, TASK_WINDOW, True, sender=requester, value=1)
    first = poll_cost()  # reads each new task once
    after = poll_cost()
    assert baseline["logs"] == first["logs"] == after["logs"] == 1
    assert after == baseline, (baseline, after)
    assert first["calls"] <= baseline["calls"] + 100 + 1  # each new task once, and its model once


def test_four_sock_disputes_on_one_node_compute_one_trace(
    model, x_bytes, game, chain, accounts, deployer, requester, server, tmp_path
):
    """Four lying challengers dispute an honest result the same way: every dispute ends at the same node
    with the same local values, and the server computes that node's trace once."""
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, x_bytes, requester)
    honest = Agent(game, server, Party.SERVER, [model], tmp_path / "s", **QUIET)
    socks = [
        Agent(
            game, accounts[5 + i], Party.CHALLENGER, [model], tmp_path / f"c{i}", lie=Lie.at_node(1), **QUIET
        )
        for i in range(4)
    ]
    settle(chain, game, [honest, *socks], [task_id])
    assert resolutions(game) == [(i, Party.SERVER) for i in range(4)]
    assert honest.traces.computed == 1
    assert len(honest.traces) == 0  # freed once the disputes were over


class NoDefense(Agent):
    """A lying server that leaves the disputes of ``undefended`` challengers alone (its sock wins)."""

    undefended: frozenset[str] = frozenset()

    def _act_on_dispute(self, view):
        if view.challenger in self.undefended and view.phase is not Phase.RESOLVED:
            return 0
        return super()._act_on_dispute(view)


def play_until(chain, agents, done, max_polls: int = 400) -> None:
    """Poll the agents until ``done()``; when nobody acts, let a move window pass."""
    for _ in range(max_polls):
        if done():
            return
        if sum(agent.poll() for agent in agents) == 0:
            chain.pending_timestamp += 3601
            chain.mine()
    raise AssertionError("the agents did not get there")


def withdrawn(game, address) -> int:
    from ape import chain

    return sum(
        int(log.amount) for log in game.Withdrawn.range(0, chain.blocks.height + 1) if log.account == address
    )


@pytest.mark.parametrize("sock_wins_first", [True, False], ids=["sock-wins-first", "sock-loses"])
def test_a_sock_cannot_take_the_honest_challengers_pay(
    sock_wins_first, model, x_bytes, game, chain, accounts, deployer, requester, server, challenger, tmp_path
):
    """A lying server, its sock challenger and an honest challenger (protocol §5). The sock disputes
    first; either the server leaves the sock's dispute undefended so that it wins first and rejects the
    result before the honest dispute is over, or the sock never moves and loses. Either way the honest
    dispute is played to its end, the honest challenger is paid its bond back plus the liar's stake and
    a share of the liar's bond, and the liar's accounts end with less."""
    sock = accounts[6]
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, x_bytes, requester)
    liar = NoDefense(game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.at_node(1), **QUIET)
    liar.undefended = frozenset({str(sock.address)} if sock_wins_first else ())
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", **QUIET)
    while int(game.task(task_id).status) == 1:
        liar.poll()
    game.challenge(task_id, sender=sock, value=CHALLENGER_BOND)  # dispute 0, the sock's
    chain.pending_timestamp += 3000  # the honest challenger comes late in the window
    chain.mine()
    for _ in range(3):  # challenge, defend, the first claims: the honest dispute's clock restarts
        liar.poll(), honest.poll()
    assert int(game.disputeCount()) == 2 and int(game.dispute(1).challenger == challenger.address)
    if sock_wins_first:
        chain.pending_timestamp += 700  # past the undefended sock's deadline only
        chain.mine()
        game.timeout(0, sender=sock)
        assert Party(int(game.dispute(0).winner)) is Party.CHALLENGER
        assert int(game.task(task_id).status) == TASK_REJECTED
        assert Phase(int(game.dispute(1).phase)) is not Phase.RESOLVED  # still played
    play_until(chain, [liar, honest], lambda: bool(game.dispute(1).shareClaimed))
    liar.poll(), honest.poll()  # the last withdrawals
    assert Party(int(game.dispute(1).winner)) is Party.CHALLENGER
    assert Party(int(game.dispute(0).winner)) is (Party.CHALLENGER if sock_wins_first else Party.SERVER)
    assert bool(game.dispute(1).shareClaimed)
    if sock_wins_first:
        game.claimBondShare(0, sender=sock)
    for account in (sock, requester):
        if int(game.credit(account.address)):
            game.withdraw(sender=account)
    assert int(game.balance) == 0

    half = SERVER_BOND - SERVER_BOND // 2  # the challengers' half of the bond
    share = half // 2 if sock_wins_first else half
    paid_in = {server.address: SERVER_BOND + 2 * CHALLENGER_BOND, sock.address: CHALLENGER_BOND}
    if sock_wins_first:
        paid_in[server.address] -= CHALLENGER_BOND  # the sock's dispute was never defended
    honest_gas = sum(m.gas for m in honest.moves) * int(chain.provider.gas_price)
    assert withdrawn(game, challenger.address) == 2 * CHALLENGER_BOND + share
    assert withdrawn(game, challenger.address) - CHALLENGER_BOND > honest_gas  # more than it spent
    liar_out = withdrawn(game, server.address) + withdrawn(game, sock.address)
    assert liar_out - sum(paid_in.values()) <= -CHALLENGER_BOND  # the liar loses at least its stake
    assert withdrawn(game, requester.address) == REWARD + SERVER_BOND // 2


def test_a_failing_dispute_is_retried_and_never_stops_the_others(
    model, x_bytes, game, chain, deployer, requester, server, challenger, tmp_path
):
    """The challenger's work on one dispute raises (a node error, say) on its first three tries: the
    error is logged with the dispute's id, the other dispute is played meanwhile, and the failing one is
    retried after its back-off and won."""
    model_id = register(game, model, deployer)
    tasks = [post_task(game, model_id, x_bytes, requester) for _ in range(2)]
    lines: list[str] = []
    policy = AgentPolicy(retry_seconds=0.0)
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.at_node(1), **QUIET)
    honest = Agent(
        game, challenger, Party.CHALLENGER, [model], tmp_path / "c", policy=policy, log=lines.append
    )
    failures = {"left": 3}
    real = honest._bisection_move

    def flaky(view, me):
        if view.dispute_id == 0 and failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("node went away")
        return real(view, me)

    honest._bisection_move = flaky
    settle(chain, game, [liar, honest], tasks)
    assert resolutions(game) == [(0, Party.CHALLENGER), (1, Party.CHALLENGER)]
    errors = [line for line in lines if "dispute 0: ConnectionError: node went away" in line]
    assert len(errors) == 3 and "retrying in" in errors[0]


@pytest.mark.parametrize("field", ["maxSteps", "inputBytes"])
def test_a_registration_with_another_step_bound_or_input_size_is_not_used(
    field, model, x_bytes, game, chain, deployer, requester, server, challenger, tmp_path
):
    """A registration of the real model whose step bound is not ``model_step_bound`` (one too small
    would let a liar's claims be refused on-chain; one too large would let it force more rounds) or
    whose input size is another: honest agents neither answer nor check its tasks."""
    args = list(registration_args(model))
    args[3 if field == "maxSteps" else 2] += 1
    receipt = game.registerModel(*args, sender=deployer)
    model_id = int(receipt.events[0].modelId)
    if field == "maxSteps":
        game.createTask(model_id, x_bytes, TASK_WINDOW, True, sender=requester, value=REWARD)
    else:
        game.createTask(model_id, x_bytes + b"\x00", TASK_WINDOW, True, sender=requester, value=REWARD)
    agents = [
        Agent(game, server, Party.SERVER, [model], tmp_path / "s", **QUIET),
        Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", **QUIET),
    ]
    assert sum(agent.poll() for agent in agents) == 0
    assert int(game.task(0).status) == 1 and all(not agent._pending for agent in agents)


LOCAL_STEP = 562
"""The step of the MLP's node-1 program, from this position, reads a local value (found by
/tmp/review's search in the review of issue 17; pinned here)."""


class QuitsInPhaseTwo(Agent):
    """A sock that stops playing once phase 2 starts (its dispute times out, the server wins it)."""

    def _act_on_dispute(self, view):
        if view.phase in (Phase.EXECUTION, Phase.STEP):
            return 0
        return super()._act_on_dispute(view)


class NeverSteps(Agent):
    """A sock that steers phase 2 to a step and then leaves the step to the server."""

    def _act_on_dispute(self, view):
        if view.phase is Phase.STEP and self._head_time <= view.deadline:
            return 0
        return super()._act_on_dispute(view)


def test_a_shared_trace_proves_each_disputes_step_with_its_own_local_values(
    model, x_bytes, game, chain, accounts, deployer, requester, server, tmp_path
):
    """Two socks steer their disputes on one honest result to the same node with the same local values,
    so the server shares one trace; the first sock quits, the second leaves the server a step that reads
    a local value of its own dispute. The server proves it with that dispute's oracle context (a proof
    recorded under the first dispute's context could never be revealed) and wins both."""
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, x_bytes, requester)
    honest = Agent(
        game, server, Party.SERVER, [model], tmp_path / "s", policy=AgentPolicy(retry_seconds=0.0), **QUIET
    )
    lie = Lie.at_step(1, LOCAL_STEP + 1)
    sock_a = QuitsInPhaseTwo(game, accounts[5], Party.CHALLENGER, [model], tmp_path / "a", lie=lie, **QUIET)
    sock_b = NeverSteps(game, accounts[6], Party.CHALLENGER, [model], tmp_path / "b", lie=lie, **QUIET)
    play_until(chain, [honest], lambda: int(game.task(task_id).status) == 2)
    play_until(
        chain,
        [sock_a, honest],
        lambda: int(game.disputeCount()) == 1 and Phase(int(game.dispute(0).phase)) is Phase.EXECUTION,
    )
    sock_b.poll()  # dispute 1: the same node, the same local values
    assert int(game.disputeCount()) == 2
    play_until(
        chain,
        [honest, sock_a, sock_b],
        lambda: all(Phase(int(game.dispute(i).phase)) is Phase.RESOLVED for i in (0, 1)),
    )
    assert int(game.dispute(1).lo) == LOCAL_STEP and bool(game.dispute(1).localsLoaded)
    assert resolutions(game) == [(0, Party.SERVER), (1, Party.SERVER)]
    assert honest.traces.computed == 1


def test_a_server_answers_only_what_it_can_defend(
    model, x_bytes, game, chain, accounts, deployer, requester, tmp_path
):
    """Funds for three bonds but one stake: before, the server answered all three tasks, and an attacker
    who disputed every result made it leave two undefended and lose them. Now it keeps a stake and a
    dispute's gas for every result it answers: it answers fewer, defends every one and wins them all."""
    model_id = register(game, model, deployer)
    policy = AgentPolicy()
    funds = 3 * SERVER_BOND + CHALLENGER_BOND + policy.gas_reserve(int(chain.provider.gas_price), 0)
    owner = funded_account(accounts, funds)
    server = Agent(game, owner, Party.SERVER, [model], tmp_path / "s", policy=policy, **QUIET)
    tasks = [post_task(game, model_id, x_bytes, requester) for _ in range(3)]
    for _ in range(6):
        server.poll()
    answered = [t for t in tasks if int(game.task(t).status) == 2]
    assert 1 <= len(answered) < 3
    attacker = accounts[7]
    for t in answered:  # the attacker disputes every result, and never moves
        game.challenge(t, sender=attacker, value=CHALLENGER_BOND)
    play_until(chain, [server], lambda: all(int(game.task(t).status) == TASK_FINALIZED for t in answered))
    assert resolutions(game) == [(i, Party.SERVER) for i in range(len(answered))]


def test_a_model_whose_output_cannot_be_revealed_is_not_served(game, deployer, requester, server, tmp_path):
    """An output over ``MAX_DATA_BYTES`` (an int32[1025] dense output, 4,100 bytes) could be committed
    but never revealed, and the requester would take the bond at the window's end: an honest server
    does not answer tasks on such a model."""
    from opml.ml.format import Model, Node, Op, int8, int32, tensor_key

    w = np.random.default_rng(0).integers(-3, 4, size=(1025, 8), dtype=np.int8).tobytes()
    node = Node(Op.DENSE, (0,), int32(1025), tensor_keys=(tensor_key(w), None))
    big = Model.create(int8(8), [node], {tensor_key(w): w})
    model_id = register(game, big, deployer)
    task_id = int(
        game.createTask(model_id, bytes(range(1, 9)), TASK_WINDOW, True, sender=requester, value=REWARD)
        .events[0]
        .taskId
    )
    agent = Agent(game, server, Party.SERVER, [big], tmp_path / "s", **QUIET)
    assert agent.poll() == 0
    assert int(game.task(task_id).status) == 1 and not agent._pending


def test_a_task_by_key_is_answered_once_its_input_is_published(
    model, x_bytes, game, chain, deployer, requester, server, tmp_path
):
    """A task posted by key is not silently ignored: while its bytes are not published the server says
    so (once), and it answers as soon as they are in its store; bytes of the wrong size never are."""
    from opml.ml.format import tensor_key

    model_id = register(game, model, deployer)
    lines: list[str] = []
    agent = Agent(game, server, Party.SERVER, [model], tmp_path / "s", log=lines.append)
    key = tensor_key(x_bytes)
    task_id = int(
        game.createTaskByKey(model_id, key, TASK_WINDOW, True, sender=requester, value=REWARD)
        .events[0]
        .taskId
    )
    short = x_bytes[:-1]
    wrong = int(
        game.createTaskByKey(model_id, tensor_key(short), TASK_WINDOW, True, sender=requester, value=REWARD)
        .events[0]
        .taskId
    )
    assert agent.poll() + agent.poll() == 0
    assert sum(f"task {task_id}: input 0x{key.hex()} not published yet" in line for line in lines) == 1
    agent.store.put_chunk_merkle(x_bytes)  # the requester publishes the bytes
    agent.store.put_chunk_merkle(short)
    play_until(chain, [agent], lambda: int(game.task(task_id).status) == 2)
    assert int(game.task(wrong).status) == 1
    assert any(f"task {wrong}: input is not of the model's shape" in line for line in lines)


def test_a_restarted_server_keeps_playing_answers_it_would_not_give_today(
    model, x_bytes, game, chain, deployer, requester, server, challenger, tmp_path
):
    """The server answers; it restarts with a minimum reward above the task's (or at a higher gas price):
    its answer is still its own, so it still reveals, defends and finalizes it."""
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, x_bytes, requester)
    first = Agent(game, server, Party.SERVER, [model], tmp_path / "s", **QUIET)
    play_until(chain, [first], lambda: int(game.task(task_id).status) == 2)
    strict = AgentPolicy(min_reward=REWARD + 1)
    restarted = Agent(game, server, Party.SERVER, [model], tmp_path / "s", policy=strict, **QUIET)
    liar = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", lie=Lie.at_node(1), **QUIET)
    settle(chain, game, [restarted, liar], [task_id])
    assert int(game.task(task_id).status) == TASK_FINALIZED
    assert resolutions(game) == [(0, Party.SERVER)]
