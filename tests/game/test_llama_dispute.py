"""Disputes on the tiny LLaMA's generation (issue 18's acceptance 3): a server lies at an attention
node, at a KV-cache value or at the last node, an honest challenger disputes it on py-evm with the real
MIPS and OpmlGame, multi-phase and single-phase, and the dispute ends in one MIPS step that the honest
side wins. ``bench/dispute.py --model tiny-llama`` reports the gas and rounds of the same disputes.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ci import SLOW
from _game_setup import CHALLENGER_BOND, deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import Op
from opml.ml.llama import generation_graph
from opml.ml.tiny_llama import tiny_llama

PROMPT = np.array([1, 2, 3, 4], dtype=np.int32)


@pytest.fixture(scope="module")
def generation():
    build_toolchain()
    return generation_graph(tiny_llama(0), len(PROMPT), 8)


@pytest.fixture
def deployed(project, deployer):
    return deploy_game(project, deployer)


def lie_at(generation, where: str) -> Lie:
    nodes = generation.model.nodes
    if where == "attention":
        return Lie.at_node(next(k for k, n in enumerate(nodes) if n.op == Op.ATTENTION))
    if where == "kv-cache":
        return Lie.at_node(generation.caches[0] - 1)  # the node whose output is layer 0's cache
    return Lie.output()


@pytest.mark.parametrize(
    "where, multi_phase",
    [
        ("attention", True),
        pytest.param("kv-cache", True, marks=SLOW),
        ("last", True),
        pytest.param("attention", False, marks=SLOW),  # single phase: digits games cover it fast
    ],
    ids=["attention-multi", "kv-cache-multi", "last-multi", "attention-single"],
)
def test_the_honest_challenger_wins(
    generation, where, multi_phase, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    model = generation.model
    lie = lie_at(generation, where)
    game = deployed.game
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=lie, log=lambda _: None)
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None)
    model_id = register(game, model, deployer)
    task_id = post_task(game, model_id, PROMPT.tobytes(), requester, multi_phase=multi_phase)
    settle(chain, game, [liar, honest], [task_id])
    assert int(game.task(task_id).status) == TASK_REJECTED
    dispute = game.dispute(0)
    assert Party(int(dispute.winner)) == Party.CHALLENGER
    if multi_phase:
        k = len(model.nodes) - 1 if lie.node is None else lie.node
        assert int(dispute.node) == k  # phase 1 found the first wrong node
    assert int(game.credit(challenger.address)) == 0  # paid out: its stake back and the liar's
    assert sum(int(log.amount) for log in game.Withdrawn.range(0, chain.blocks.height + 1)) > CHALLENGER_BOND
