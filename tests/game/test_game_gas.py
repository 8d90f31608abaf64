"""Gas budgets of every kind of move (protocol §6), measured on a real dispute over the digits MLP
(a server lying at node 1 against an honest challenger, with the local values loaded in phase 2)
and an honest task that finalizes. Each budget is the measured cost plus about 20%. A round is one
``respond``: a verdict and a 32-byte claim, about 56k gas (the two moves of a round cost 97k when
verdict and claim were separate transactions); the 50k aim for a move is missed by the verdict's
storage writes (protocol §6)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import REWARD, TASK_WINDOW, deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import Agent
from opml.game.lies import Lie
from opml.game.solver import Party, Phase
from opml.ml.format import read_model

BUDGETS = {
    "createTask": 155_000,
    "submitResult": 90_000,
    "revealOutput": 80_000,
    "defend": 135_000,
    "claimBondShare": 75_000,
    "finalize": 70_000,
    "withdraw": 40_000,
    "challenge": 125_000,
    "bisect": 80_000,
    "respond": 65_000,
    "claimExecution": 150_000,
    "loadLocalValues": 520_000,
    "step": 210_000,
}
"""Per kind of move. Revealing an oracle part is budgeted in tests/contracts/test_oracle_gas.py."""


@pytest.fixture(scope="module")
def moves(project, accounts, chain):
    build_toolchain()
    deployer, requester, server, challenger, honest_server = (
        accounts[0],
        accounts[1],
        accounts[2],
        accounts[3],
        accounts[4],
    )
    deployed = deploy_game(project, deployer)
    model = read_model(MODELS / "digits_mlp.opml")
    model_id = register(deployed.game, model, deployer)
    x = np.asarray(digits_test_split()[0][5].reshape(DIGITS_SHAPES["digits_mlp"]), np.int8).tobytes()
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="opml-gas-"))
    quiet = {"log": lambda _: None}
    liar = Agent(deployed.game, server, Party.SERVER, [model], tmp / "s", lie=Lie.at_node(1), **quiet)
    honest = Agent(deployed.game, challenger, Party.CHALLENGER, [model], tmp / "c", **quiet)
    disputed = post_task(deployed.game, model_id, x, requester)
    game = deployed.game
    while int(game.disputeCount()) == 0 or int(game.dispute(0).phase) != int(Phase.EXECUTION):
        assert liar.poll() + honest.poll() > 0
    loaded = game.loadLocalValues(0, sender=deployer)  # the step at the end reads none: load them here
    settle(chain, game, [liar, honest], [disputed])
    honest_server_agent = Agent(deployed.game, honest_server, Party.SERVER, [model], tmp / "h", **quiet)
    created = game.createTask(model_id, x, TASK_WINDOW, True, sender=requester, value=REWARD)
    fine = int(created.events[0].taskId)
    settle(chain, deployed.game, [honest_server_agent, honest], [fine])
    by_kind: dict[str, list[int]] = {
        "loadLocalValues": [int(loaded.gas_used)],
        "createTask": [int(created.gas_used)],
        "honestPath": [int(created.gas_used) + sum(m.gas for m in honest_server_agent.moves)],
    }
    for agent in (liar, honest, honest_server_agent):
        for move in agent.moves:
            by_kind.setdefault(move.kind, []).append(move.gas)
    return by_kind


@pytest.mark.parametrize("kind", sorted(BUDGETS))
def test_move_gas_within_budget(moves, kind):
    assert kind in moves, f"no {kind} move was played"
    assert max(moves[kind]) <= BUDGETS[kind], (kind, max(moves[kind]))


HONEST_PATH_BEFORE = 126_250 + 113_107 + 57_892 + 30_017
"""createTask + submitResult + finalize + withdraw of the honest task when the answer was one transaction
(327,266 gas, measured at f26cd96 with this test's flow); the commit–reveal answer (measured 356,915)
must stay within 10 % of it."""


def test_the_honest_path_costs_within_10_percent_of_the_one_transaction_answer(moves):
    (path,) = moves["honestPath"]
    assert path <= HONEST_PATH_BEFORE * 1.10, (path, HONEST_PATH_BEFORE)


def test_a_round_costs_one_move_under_60k(moves):
    """Every round is a ``respond``; a ``bisect`` opens each phase and writes the claim slot from zero."""
    assert statistics.median(moves["respond"]) < 58_000, sorted(moves["respond"])
    assert max(moves["bisect"] + moves["respond"]) < 100_000
