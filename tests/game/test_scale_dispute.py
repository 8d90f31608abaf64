"""The billion-parameter flow at hidden 256 (issue 20's acceptance 2): a synthetic model of the
Llama-3.2-1B shape scaled down (16 layers, 4 query and 1 KV heads of 64, FFN 1,024, vocabulary
128,256; 48 M parameters) generated in a stream, read from its file by both agents (their preimage stores
point into it), and one task (8-token prompt, 4 greedy tokens) disputed multi-phase on py-evm: the server
lies at layer 9's ``ffn_down`` at the last prompt token, the honest challenger wins, and every wei of the
bonds and the reward goes where the payout table says (``bench/scale.py`` plays the same at hidden 2,048).
"""

from __future__ import annotations

import pytest
from _ci import SLOW
from _game_setup import CHALLENGER_BOND, REWARD, SERVER_BOND, deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.llm import LlmModel
from opml.ml.synth import SHAPES, write_synth

pytestmark = SLOW

MAX_PROMPT, MAX_NEW = 8, 4
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    build_toolchain()
    path = tmp_path_factory.mktemp("scale") / "h256.opml"
    write_synth(path, SHAPES["llama-3.2-1b-h256"], 0, MAX_PROMPT, MAX_NEW)
    return LlmModel.load(path)


def withdrawn(game, chain, address) -> int:
    logs = game.Withdrawn.range(0, chain.blocks.height + 1)
    return sum(int(log.amount) for log in logs if log.account == address)


def test_a_lie_in_layer_9_of_the_scaled_1b_model_loses_its_bond(
    llm, project, chain, deployer, requester, server, challenger, tmp_path
):
    labels = llm.card.labels
    k = max(
        i for i, lb in enumerate(labels) if (lb.role, lb.step, lb.layer) == ("ffn_down", MAX_PROMPT - 1, 9)
    )
    game = deploy_game(project, deployer).game
    liar = Agent(game, server, Party.SERVER, [llm.model], tmp_path / "s", lie=Lie.at_node(k), **QUIET)
    honest = Agent(game, challenger, Party.CHALLENGER, [llm.model], tmp_path / "c", **QUIET)
    task_id = post_task(
        game, register(game, llm.model, deployer), llm.task(list(range(1, 9)), 4).tobytes(), requester
    )
    settle(chain, game, [liar, honest], [task_id])
    if int(game.credit(requester.address)):
        game.withdraw(sender=requester)

    assert int(game.task(task_id).status) == TASK_REJECTED
    dispute = game.dispute(0)
    assert Party(int(dispute.winner)) == Party.CHALLENGER
    assert int(dispute.node) == k  # phase 1 found the altered node among 3,383
    assert withdrawn(game, chain, challenger.address) == 2 * CHALLENGER_BOND + SERVER_BOND - SERVER_BOND // 2
    assert withdrawn(game, chain, requester.address) == REWARD + SERVER_BOND // 2
    assert withdrawn(game, chain, server.address) == 0
    assert chain.provider.get_balance(game.address) == 0
    # neither agent copied a tensor: their stores hold each as a range of the one model file
    keys = {key.hex() for key in llm.model.tensors}
    for store in (tmp_path / "s", tmp_path / "c"):
        ranges = {p.name.removesuffix(".range") for p in store.rglob("chunk-merkle/*.range")}
        copies = {p.name for p in store.rglob("chunk-merkle/*")}
        assert ranges == keys and not keys & copies
