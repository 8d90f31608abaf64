"""Gas budgets of every kind of move (protocol §6), measured on a real dispute over the digits MLP
(a server lying at node 1 against an honest challenger) and an honest task that finalizes. Each
budget is the measured cost plus about 20% (the first bisection of a dispute writes its claim slot
from zero, hence the bisect budget above the steady state); a bisection move carries one 32-byte
claim and stays under 50k gas in the steady state."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import read_model

BUDGETS = {
    "submitResult": 140_000,
    "finalize": 70_000,
    "withdraw": 40_000,
    "challenge": 215_000,
    "bisect": 80_000,
    "respond": 65_000,
    "claimExecution": 520_000,
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
    settle(chain, deployed.game, [liar, honest], [disputed])
    honest_server_agent = Agent(deployed.game, honest_server, Party.SERVER, [model], tmp / "h", **quiet)
    fine = post_task(deployed.game, model_id, x, requester)
    settle(chain, deployed.game, [honest_server_agent, honest], [fine])
    by_kind: dict[str, list[int]] = {}
    for agent in (liar, honest, honest_server_agent):
        for move in agent.moves:
            by_kind.setdefault(move.kind, []).append(move.gas)
    return by_kind


@pytest.mark.parametrize("kind", sorted(BUDGETS))
def test_move_gas_within_budget(moves, kind):
    assert kind in moves, f"no {kind} move was played"
    assert max(moves[kind]) <= BUDGETS[kind], (kind, max(moves[kind]))


def test_a_bisection_move_costs_under_50k_in_the_steady_state(moves):
    assert statistics.median(moves["bisect"]) < 50_000
    assert statistics.median(moves["respond"]) < 50_000
    assert max(moves["bisect"] + moves["respond"]) < 100_000
