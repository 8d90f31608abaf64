"""Deployment parameters, task windows and cancellation (protocol §2–§3), and a challenger that waits
for an input published late: rules added after an adversarial review of the game."""

from __future__ import annotations

import ape
import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import REWARD, TASK_WINDOW, deploy_game, register, settle
from _toolchain import build_toolchain

from opml.game.agents import TASK_CANCELLED, TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import read_model, tensor_key

DAY = 24 * 3600
MAX_WINDOW = 30 * DAY


@pytest.fixture(scope="module")
def toy_vm(project, deployer, oracle):
    return deployer.deploy(project.AlphabetVM, oracle, 4, 0)


@pytest.mark.parametrize(
    "bonds, move, minimum",
    [
        ((0, 1), 600, 3600),
        ((1, 0), 600, 3600),
        ((1, 1), 0, 3600),
        ((1, 1), 7200, 3600),
        ((1, 1), 600, MAX_WINDOW + 1),
    ],
    ids=["zero-server-bond", "zero-challenger-bond", "zero-move-window", "move-above-min", "min-above-max"],
)
def test_constructor_rejects_unsafe_parameters(project, deployer, toy_vm, bonds, move, minimum):
    with ape.reverts(project.OpmlGame.InvalidParameters):
        deployer.deploy(project.OpmlGame, toy_vm, *bonds, move, minimum)


@pytest.fixture
def toy_game(project, deployer, toy_vm):
    game = deployer.deploy(project.OpmlGame, toy_vm, 10, 10, 600, 3600)
    program = toy_vm.stateHash(toy_vm.initialState())
    game.registerModel(b"\x03" * 32, 4, program, program, "", sender=deployer)
    return game


def test_window_above_the_maximum_is_refused(toy_game, requester):
    with ape.reverts(toy_game.WindowTooLong):
        toy_game.createTask(0, b"x", MAX_WINDOW + 1, True, sender=requester, value=1)
    toy_game.createTask(0, b"x", MAX_WINDOW, True, sender=requester, value=1)


def test_requester_cancels_an_unanswered_task(toy_game, chain, requester, server):
    receipt = toy_game.createTask(0, b"x", 3600, True, sender=requester, value=REWARD)
    task_id = int(receipt.events[0].taskId)
    with ape.reverts(toy_game.NotRequester):
        toy_game.cancelTask(task_id, sender=server)
    toy_game.cancelTask(task_id, sender=requester)
    assert int(toy_game.task(task_id).status) == TASK_CANCELLED
    with ape.reverts(toy_game.WrongTaskStatus):
        toy_game.cancelTask(task_id, sender=requester)
    with ape.reverts(toy_game.WrongTaskStatus):
        toy_game.submitResult(task_id, b"y", bytes(32), bytes(32), [], sender=server, value=10)
    assert int(toy_game.credit(requester)) == REWARD
    toy_game.withdraw(sender=requester)
    assert chain.provider.get_balance(toy_game.address) == 0


def test_an_answered_task_cannot_be_cancelled(toy_game, requester, server):
    from opml.oracle import ChunkTree

    toy_game.createTask(0, b"x", 3600, True, sender=requester, value=REWARD)
    keys = [ChunkTree.from_bytes(b"x").key, *(bytes([3, i]) + bytes(30) for i in range(3))]
    output = b"out"
    keys.append(ChunkTree.from_bytes(output).key)
    tree = ChunkTree.from_bytes(b"".join(keys))
    toy_game.submitResult(0, output, tree.key, tree.root, list(tree.siblings(4)), sender=server, value=10)
    with ape.reverts(toy_game.WrongTaskStatus):
        toy_game.cancelTask(0, sender=requester)


def test_challenger_checks_an_input_published_after_the_result(
    project, deployer, requester, server, challenger, chain, tmp_path
):
    """A task posted by key: the challenger does not have the input when the (wrong) result arrives,
    looks again on later polls, and disputes once the input is in its store."""
    build_toolchain()
    deployed = deploy_game(project, deployer)
    game = deployed.game
    model = read_model(MODELS / "digits_mlp.opml")
    model_id = register(game, model, deployer)
    x = np.asarray(digits_test_split()[0][7].reshape(DIGITS_SHAPES["digits_mlp"]), np.int8).tobytes()
    receipt = game.createTaskByKey(model_id, tensor_key(x), TASK_WINDOW, True, sender=requester, value=REWARD)
    task_id = int(receipt.events[0].taskId)
    quiet = {"log": lambda _: None}
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.output(), **quiet)
    liar.store.put_chunk_merkle(x)
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", **quiet)
    assert liar.poll() == 1  # the result
    assert honest.poll() == 0 and honest.poll() == 0  # no input yet: nothing to compare
    honest.store.put_chunk_merkle(x)  # the requester publishes it
    assert honest.poll() == 2  # the challenge, then the opening claim of phase 1
    assert [m.kind for m in honest.moves] == ["challenge", "bisect"]
    settle(chain, game, [liar, honest], [task_id])
    assert int(game.task(task_id).status) == TASK_REJECTED


def test_honest_server_refuses_a_task_it_could_not_defend(project, deployer, requester, server, tmp_path):
    """An honest server dry-runs every program a dispute could run; with a step limit below what they
    need it does not answer (it would lose its bond), and with enough steps it does."""
    build_toolchain()
    game = deploy_game(project, deployer).game
    model = read_model(MODELS / "digits_mlp.opml")
    model_id = register(game, model, deployer)
    x = np.asarray(digits_test_split()[0][9].reshape(DIGITS_SHAPES["digits_mlp"]), np.int8).tobytes()
    game.createTask(model_id, x, TASK_WINDOW, True, sender=requester, value=REWARD)
    quiet = {"log": lambda _: None}
    cautious = Agent(game, server, Party.SERVER, [model], tmp_path / "a", max_vm_steps=10_000, **quiet)
    assert cautious.poll() == 0 and cautious.poll() == 0
    able = Agent(game, server, Party.SERVER, [model], tmp_path / "b", **quiet)
    assert able.poll() == 1 and int(game.task(0).status) == 2
