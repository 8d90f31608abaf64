"""The whole game on MIPS with both digits models (docs/protocol.md): agents answer, check and
dispute real tasks; every dispute ends in one MIPS step executed on-chain.

Each case checks who wins, where the dispute ended, and that the money adds up: the game holds nothing
once every credit is withdrawn, and each party got back exactly what the payout table says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
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
from opml.game.solver import Party
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


@pytest.mark.parametrize("name", NAMES)
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
    ("digits_mlp", Lie.at_node(0)),
    ("digits_mlp", Lie.at_node(1)),
    ("digits_cnn", Lie.output()),
    ("digits_cnn", Lie.at_node(0)),
    ("digits_cnn", Lie.at_node(4)),
    ("digits_cnn", Lie.at_node(8)),
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

    assert withdrawn(game, challenger.address) == CHALLENGER_BOND + SERVER_BOND // 2
    assert withdrawn(game, requester.address) == REWARD + SERVER_BOND - SERVER_BOND // 2
    assert withdrawn(game, server.address) == 0


@pytest.mark.parametrize("name", NAMES)
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
    assert withdrawn(game, server.address) == REWARD + SERVER_BOND + CHALLENGER_BOND
    assert withdrawn(game, challenger.address) == 0


def count_moves(game, dispute_id=0):
    bisects = [log for log in game.Bisected.range(0, _height() + 1) if int(log.disputeId) == dispute_id]
    responds = [log for log in game.Responded.range(0, _height() + 1) if int(log.disputeId) == dispute_id]
    return len(bisects), len(responds)


@pytest.mark.parametrize("multi_phase", [True, False], ids=["multi-phase", "single-phase"])
def test_rounds_follow_the_formula(
    multi_phase, models, image, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    """Rounds: ⌈log2 N⌉ + ⌈log2 T_k⌉ (multi-phase) or ⌈log2 T⌉ (single-phase) (protocol §6)."""
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
    want = (math.ceil(math.log2(n)) if multi_phase else 0) + math.ceil(math.log2(steps))
    assert rounds == (want, want)
    assert resolutions(game) == [(0, Party.CHALLENGER)]
    moves = [m.kind for a in (liar, honest) for m in a.moves if m.dispute_id == 0]
    assert moves.count("claimExecution") == 1 and moves.count("step") == 1
    if multi_phase:
        assert liar_phase2_steps(model, x, lie, tmp_path) == steps
    else:
        assert steps > liar_phase2_steps(model, x, lie, tmp_path)  # the whole model runs every node
