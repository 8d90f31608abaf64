"""Deploying the game on MIPS and running agents against each other until their tasks settle."""

from __future__ import annotations

from collections.abc import Sequence

from opml.chain.deploy import Deployment, GameParameters, deploy_contracts
from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent, registration_args
from opml.ml.format import Model

SERVER_BOND = 10**18
CHALLENGER_BOND = 10**18
MOVE_WINDOW = 3600
MIN_WINDOW = 3600
TASK_WINDOW = 3600
REWARD = 3 * 10**17


def deploy_game(project, deployer) -> Deployment:
    """The deployment of ``ape run deploy``, with the bonds and windows of these tests."""
    return deploy_contracts(deployer, GameParameters(SERVER_BOND, CHALLENGER_BOND, MOVE_WINDOW, MIN_WINDOW))


def register(game, model: Model, sender) -> int:
    receipt = game.registerModel(*registration_args(model, "file://models"), sender=sender)
    return int(receipt.events[0].modelId)


def post_task(game, model_id: int, x_bytes: bytes, sender, *, multi_phase: bool = True) -> int:
    receipt = game.createTask(model_id, x_bytes, TASK_WINDOW, multi_phase, sender=sender, value=REWARD)
    return int(receipt.events[0].taskId)


def settle(chain, game, agents: Sequence[Agent], task_ids: Sequence[int], max_polls: int = 400) -> None:
    """Poll the agents until every task is finalized or rejected and every credit withdrawn; when
    nobody can act, let time pass (a window or a deadline)."""
    for _ in range(max_polls):
        sent = sum(agent.poll() for agent in agents)
        done = all(int(game.task(t).status) in (TASK_FINALIZED, TASK_REJECTED) for t in task_ids)
        if done and sent == 0 and all(int(game.credit(a.address)) == 0 for a in agents):
            return
        if sent == 0:
            chain.pending_timestamp += max(TASK_WINDOW, MOVE_WINDOW) + 1
            chain.mine()
    raise AssertionError(f"tasks {list(task_ids)} did not settle in {max_polls} polls")
