"""The whole game on MIPS with both digits models (docs/protocol.md): agents answer, check and
dispute real tasks; every dispute ends in one MIPS step executed on-chain.

Each case checks who wins, where the dispute ended, and that the money adds up: the game holds nothing
once every credit is withdrawn, and each party got back exactly what the payout table says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ci import SLOW, slow_except
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import (
    CHALLENGER_BOND,
    REWARD,
    SERVER_BOND,
    deploy_game,
    post_task,
    register,
    settle,
)
from _toolchain import build_toolchain

from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party, Phase
from opml.game.traces import ExecutionTrace
from opml.ml.format import read_model
from opml.ml.phase import node_program_setup, run_program
from opml.oracle.store import PreimageStore

NAMES = ["digits_mlp", "digits_cnn"]


@pytest.fixture(scope="module")
def models():
    build_toolchain()
    return {name: read_model(MODELS / f"{name}.opml") for name in NAMES}


@pytest.fixture(scope="module")
def image():
    pixels, _ = digits_test_split()
    return pixels[3]


@pytest.fixture
def deployed(project, deployer):
    return deploy_game(project, deployer)


def withdrawn(game, address) -> int:
    return sum(int(log.amount) for log in game.Withdrawn.range(0, _height() + 1) if log.account == address)


def _height() -> int:
    from ape import chain

    return chain.blocks.height


def play(chain, deployed, model, x, deployer, requester, agents, *, multi_phase=True):
    game = deployed.game
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, np.asarray(x, np.int8).tobytes(), requester, multi_phase=multi_phase)
    settle(chain, game, agents, [task_id])
    if int(game.credit(requester.address)):
        game.withdraw(sender=requester)
    assert chain.provider.get_balance(game.address) == 0  # every wei paid out
    return task_id


def step_events(game):
    return list(game.StepPlayed.range(0, _height() + 1))


def resolutions(game):
    return [
        (int(log.disputeId), Party(int(log.winner))) for log in game.DisputeResolved.range(0, _height() + 1)
    ]


@pytest.mark.parametrize("name", slow_except({0}, NAMES))
def test_honest_result_finalizes_and_pays_the_server(
    name, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    model = models[name]
    x = image.reshape(DIGITS_SHAPES[name])
    agents = [
        Agent(deployed.game, server, Party.SERVER, [model], tmp_path / "s", log=lambda _: None),
        Agent(deployed.game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None),
    ]
    task_id = play(chain, deployed, model, x, deployer, requester, agents)
    game = deployed.game
    assert int(game.task(task_id).status) == TASK_FINALIZED
    assert int(game.disputeCount()) == 0
    assert withdrawn(game, server.address) == REWARD + SERVER_BOND
    result = game.result(task_id)
    from opml.ml.runner import run_model

    assert bytes(result.finalState) == run_model(model, x).states[-1]


def liar_phase2_steps(model, x, lie: Lie, tmp_path) -> int:
    """Steps of the node program run on the liar's claim at its first wrong node."""
    lie_run = lie.run(model, x)
    k = len(model.nodes) - 1 if lie.node is None else lie.node
    setup = node_program_setup(model, x, k, lie_run.state(k), PreimageStore(tmp_path / "probe"), run=lie_run)
    result = run_program(setup)
    assert result.exit_code == 1  # the liar's claim is invalid: its honest run says so
    return result.steps


CASES = [
    ("digits_mlp", Lie.output()),
    pytest.param("digits_mlp", Lie.at_node(1), marks=SLOW),
    pytest.param("digits_cnn", Lie.output(), marks=SLOW),  # the last node, k = 8
    pytest.param("digits_cnn", Lie.at_node(0), marks=SLOW),  # the first
    ("digits_cnn", Lie.at_node(4)),  # the middle
    ("digits_cnn", Lie.at_step(2, 1000)),
]


@pytest.mark.parametrize(
    "name, lie", CASES, ids=lambda v: v if isinstance(v, str) else f"node{v.node}-step{v.step}"
)
def test_lying_server_loses_at_the_step_where_its_trace_diverges(
    name, lie, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    model = models[name]
    x = image.reshape(DIGITS_SHAPES[name])
    liar = Agent(deployed.game, server, Party.SERVER, [model], tmp_path / "s", lie=lie, log=lambda _: None)
    honest = Agent(deployed.game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None)
    task_id = play(chain, deployed, model, x, deployer, requester, [liar, honest])
    game = deployed.game
    assert int(game.task(task_id).status) == TASK_REJECTED
    assert resolutions(game) == [(0, Party.CHALLENGER)]

    k = len(model.nodes) - 1 if lie.node is None else lie.node
    dispute = game.dispute(0)
    assert int(dispute.node) == k  # phase 1 found the first wrong node
    diverges = lie.step if lie.step is not None else liar_phase2_steps(model, x, lie, tmp_path)
    (played,) = step_events(game)
    assert int(played.position) == diverges - 1  # the step into the first wrong state

    # the dispute's two stakes and, as the only winning challenger, the challengers' half of the bond
    assert withdrawn(game, challenger.address) == 2 * CHALLENGER_BOND + SERVER_BOND - SERVER_BOND // 2
    assert withdrawn(game, requester.address) == REWARD + SERVER_BOND // 2
    assert withdrawn(game, server.address) == 0


@pytest.mark.parametrize("name", slow_except({0}, NAMES))
def test_challenger_disputing_an_honest_result_loses_its_bond(
    name, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    model = models[name]
    x = image.reshape(DIGITS_SHAPES[name])
    honest = Agent(deployed.game, server, Party.SERVER, [model], tmp_path / "s", log=lambda _: None)
    liar = Agent(
        deployed.game,
        challenger,
        Party.CHALLENGER,
        [model],
        tmp_path / "c",
        lie=Lie.at_node(1),
        log=lambda _: None,
    )
    task_id = play(chain, deployed, model, x, deployer, requester, [honest, liar])
    game = deployed.game
    assert int(game.task(task_id).status) == TASK_FINALIZED
    assert resolutions(game) == [(0, Party.SERVER)]
    assert withdrawn(game, server.address) == REWARD + SERVER_BOND + 2 * CHALLENGER_BOND
    assert withdrawn(game, challenger.address) == 0


def count_moves(game, dispute_id=0):
    bisects = [log for log in game.Bisected.range(0, _height() + 1) if int(log.disputeId) == dispute_id]
    responds = [log for log in game.Responded.range(0, _height() + 1) if int(log.disputeId) == dispute_id]
    return len(bisects), len(responds)


@pytest.mark.parametrize("multi_phase", [True, False], ids=["multi-phase", "single-phase"])
def test_rounds_follow_the_formula(
    multi_phase, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    """Rounds: ⌈log2 N⌉ + ⌈log2 T_k⌉ (multi-phase) or ⌈log2 T⌉ (single-phase) at most, one fewer per
    phase at least; one transaction per round, plus the opening claim of each phase (protocol §4.1,
    §6)."""
    model = models["digits_mlp"]
    x = image.reshape(DIGITS_SHAPES["digits_mlp"])
    lie = Lie.at_node(1)
    liar = Agent(deployed.game, server, Party.SERVER, [model], tmp_path / "s", lie=lie, log=lambda _: None)
    honest = Agent(deployed.game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None)
    play(chain, deployed, model, x, deployer, requester, [liar, honest], multi_phase=multi_phase)
    game = deployed.game
    claimed = list(game.ExecutionClaimed.range(0, _height() + 1))
    steps = int(claimed[0].steps)
    rounds = count_moves(game)
    n = len(model.nodes)
    most = (math.ceil(math.log2(n)) if multi_phase else 0) + math.ceil(math.log2(steps))
    least = (math.floor(math.log2(n)) if multi_phase else 0) + math.floor(math.log2(steps))
    # every round is one verdict (Responded); every claim but the last round's is a Bisected
    assert rounds[0] == rounds[1] and least <= rounds[0] <= most
    assert resolutions(game) == [(0, Party.CHALLENGER)]
    moves = [m.kind for a in (liar, honest) for m in a.moves if m.dispute_id == 0]
    phases = 2 if multi_phase else 1
    assert moves.count("bisect") == phases and moves.count("respond") == rounds[1]
    assert moves.count("claimExecution") == 1 and moves.count("step") == 1
    assert moves.count("loadLocalValues") == 0  # the disputed step (the exit) reads no local value
    if multi_phase:
        assert liar_phase2_steps(model, x, lie, tmp_path) == steps
    else:
        assert steps > liar_phase2_steps(model, x, lie, tmp_path)  # the whole model runs every node


# --- phase-link soundness (protocol §4.3) ---------------------------------------------------------


class PhaseLinkLiar(Agent):
    """A server that plays phase 2 from a program run of its own choosing: its claims are the honest
    states of that run (which exits valid), but the run's local values are not the ones phase 1 settled."""

    def __init__(self, *args, make_setup, **kwargs):
        super().__init__(*args, **kwargs)
        self.make_setup = make_setup

    def _execution(self, view, task, x, claim):
        context = bytes(self.game.localContext(view.dispute_id))
        store = PreimageStore(self.store_dir / "forged")
        setup = self.make_setup(store, self.game.address, context)
        self._setups[view.dispute_id] = setup

        def forged():
            trace = ExecutionTrace(setup)
            assert trace.state_at(trace.size).exit_code == 0  # the forged run does exit valid
            return trace

        return self.traces.get(("forged", view.dispute_id), view.dispute_id, forged)


def other_weights(model):
    """``model`` with node 0's weights changed (another commitment)."""
    from opml.ml.format import GraphBuilder, Op

    g = GraphBuilder(model.input)
    for i, node in enumerate(model.nodes):
        if node.op is Op.DENSE:
            w = np.array(model.param(i, 0), copy=True)
            if i == 0:
                w[0, 0] ^= 1
            bias = model.param(i, 1)
            g.dense(node.inputs[0], w, None if bias is None else np.array(bias), zx=node.p[0])
        elif node.op is Op.REQUANTIZE:
            g.requantize(node.inputs[0], *node.p)
        elif node.op is Op.ARGMAX:
            g.argmax(node.inputs[0])
        else:
            raise AssertionError(node.op)
    return g.build()


@pytest.mark.parametrize("forgery", ["node-index", "weights", "prev-state"])
def test_phase_two_cannot_start_from_other_inputs(
    forgery, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    """A server lying at node 1 plays phase 2 with a program run that exits valid because its local
    values differ from the ones phase 1 settled (another node, other weights, another S_{k−1}): it
    loses at the step where the program first reads the oracle value that differs."""
    from opml.ml.runner import run_model
    from opml.vm.constants import REG_V0, SYS_PREIMAGE_READ

    model = models["digits_mlp"]
    x = image.reshape(DIGITS_SHAPES["digits_mlp"])
    lie = Lie.at_node(1)
    honest_run = run_model(model, x)
    if forgery == "node-index":  # node 2's honest claim from node 2: valid, but phase 1 settled k = 1

        def make_setup(store, caller, context):
            return node_program_setup(
                model, x, 2, honest_run.state(2), store, caller=caller, local_context=context
            )
    elif forgery == "weights":  # the lie is the honest output of other weights at node 1
        forged = other_weights(model)
        forged_run = run_model(forged, x)

        def make_setup(store, caller, context):
            return node_program_setup(
                forged, x, 1, forged_run.state(1), store, caller=caller, local_context=context
            )
    else:  # S_{k−1} of another input, whose node 1 gives that input's S_1

        def make_setup(store, caller, context):
            other = (x + 1).astype(np.int8)
            return node_program_setup(
                model, other, 1, run_model(model, other).state(1), store, caller=caller, local_context=context
            )

    liar = PhaseLinkLiar(
        deployed.game,
        server,
        Party.SERVER,
        [model],
        tmp_path / "s",
        lie=lie,
        log=lambda _: None,
        make_setup=make_setup,
    )
    honest = Agent(deployed.game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None)
    honest.traces.release = lambda dispute_id: None  # keep its trace past the end, to read the step
    play(chain, deployed, model, x, deployer, requester, [liar, honest])
    game = deployed.game
    assert resolutions(game) == [(0, Party.CHALLENGER)]
    (played,) = step_events(game)
    pre = honest.traces.of(0).state_at(int(played.position))
    assert pre.memory.read_u32(pre.pc) == 0x0000000C and pre.registers[REG_V0] == SYS_PREIMAGE_READ
    # the differing value is a local value (the program reads those first): the stepping party loaded them
    assert [m.kind for m in honest.moves + liar.moves].count("loadLocalValues") == 1


def test_agents_survive_a_restart_mid_dispute(
    models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    """Both agents are replaced by fresh ones (same accounts and folders, nothing in memory) in the
    middle of phase 2: they carry on from what the chain shows and the honest challenger still wins."""
    model = models["digits_mlp"]
    x = image.reshape(DIGITS_SHAPES["digits_mlp"])
    game = deployed.game
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, np.asarray(x, np.int8).tobytes(), requester)

    def fresh():
        return [
            Agent(
                game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.at_node(1), log=lambda _: None
            ),
            Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None),
        ]

    agents = fresh()

    def mid_phase_two():
        if int(game.disputeCount()) == 0:
            return False
        d = game.dispute(0)
        return Phase(int(d.phase)) is Phase.EXECUTION and int(d.hi) - int(d.lo) < 1000  # ~10 rounds in

    while not mid_phase_two():
        assert sum(agent.poll() for agent in agents) > 0
    settle(chain, game, fresh(), [task_id])
    assert resolutions(game) == [(0, Party.CHALLENGER)]
    assert int(game.task(task_id).status) == TASK_REJECTED
