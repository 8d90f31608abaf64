"""Disputes on SmolLM2-135M-Instruct (issue 19's acceptance 4), multi-phase on py-evm with the real MIPS
and OpmlGame: a registration for prompts of up to 16 tokens and 8 new tokens, a 16-token prompt, and a
server that lies at one value of one of 30 layers; the honest challenger's phase 1 finds that node,
phase 2 the instruction, and the step settles it. A lying challenger against an honest server loses.

Each dispute runs the 135 M-parameter model natively in both agents and one node in the VM: the slow
tier (``make test-slow``); ``bench/llm.py`` measures one of them.
"""

from __future__ import annotations

import pytest
from _ci import SLOW
from _game_setup import CHALLENGER_BOND, deploy_game, post_task, register, settle
from _llm import SMOLLM2_TASK_SIZES
from _toolchain import build_toolchain

from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.runner import run_model

pytestmark = SLOW

MAX_PROMPT, MAX_NEW = SMOLLM2_TASK_SIZES
PROMPT = "In physics, the first law of thermodynamics says that energy can be neither created nor"
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def llm(smollm2):
    build_toolchain()
    return smollm2


@pytest.fixture(scope="module")
def task_input(llm):
    ids = llm.prompt_ids(PROMPT, chat=False)
    assert len(ids) == MAX_PROMPT
    return llm.task(ids, MAX_NEW)


def node_at(llm, role: str, step: int, layer: int | None) -> int:
    """The last node labelled ``role`` at ``step`` in ``layer`` (the value the role names)."""
    return max(
        k for k, lb in enumerate(llm.card.labels) if (lb.role, lb.step, lb.layer) == (role, step, layer)
    )


LIES = {  # where: (role, step, layer)
    "attention-layer17-last-prompt-token": ("attention", MAX_PROMPT - 1, 17),
    "ffn_down-layer9": ("ffn_down", 12, 9),
    "kv-cache-layer3": ("kv_cache", MAX_PROMPT - 1, 3),
    "lm_head-5th-generated-token": ("lm_head", MAX_PROMPT - 1 + 4, None),
}


@pytest.fixture
def deployed(project, deployer):
    return deploy_game(project, deployer)


@pytest.mark.parametrize("where", list(LIES))
def test_the_honest_challenger_wins(
    llm, task_input, where, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    k = node_at(llm, *LIES[where])
    game = deployed.game
    liar = Agent(game, server, Party.SERVER, [llm.model], tmp_path / "s", lie=Lie.at_node(k), **QUIET)
    honest = Agent(game, challenger, Party.CHALLENGER, [llm.model], tmp_path / "c", **QUIET)
    model_id = register(game, llm.model, deployer)
    task_id = post_task(game, model_id, task_input.tobytes(), requester)
    settle(chain, game, [liar, honest], [task_id])
    assert int(game.task(task_id).status) == TASK_REJECTED
    dispute = game.dispute(0)
    assert Party(int(dispute.winner)) == Party.CHALLENGER
    assert int(dispute.node) == k  # phase 1 found the altered node
    assert int(game.credit(challenger.address)) == 0
    assert sum(int(log.amount) for log in game.Withdrawn.range(0, chain.blocks.height + 1)) > CHALLENGER_BOND


def test_a_lying_challenger_loses(
    llm, task_input, deployed, chain, deployer, requester, server, challenger, tmp_path
):
    k = node_at(llm, "attention", MAX_PROMPT - 1, 17)
    game = deployed.game
    honest = Agent(game, server, Party.SERVER, [llm.model], tmp_path / "s", **QUIET)
    liar = Agent(game, challenger, Party.CHALLENGER, [llm.model], tmp_path / "c", lie=Lie.at_node(k), **QUIET)
    model_id = register(game, llm.model, deployer)
    task_id = post_task(game, model_id, task_input.tobytes(), requester)
    settle(chain, game, [honest, liar], [task_id])
    assert int(game.task(task_id).status) == TASK_FINALIZED
    assert Party(int(game.dispute(0).winner)) == Party.SERVER
    revealed = [log.output for log in game.OutputRevealed.range(0, chain.blocks.height + 1)]
    honest_run = run_model(llm.model, task_input)
    assert revealed == [honest_run.output.tobytes()]
    assert len(llm.answer(honest_run.output)) >= 1
