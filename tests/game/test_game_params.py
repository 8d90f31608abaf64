"""Deployment parameters, model bounds, task windows and cancellation (protocol §2–§3), and a
challenger that waits for an input published late: rules added after an adversarial review of the
game (and issue 17: a model's input size and step bound, cancelling only after an answer window)."""

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
MAX_STEP_BOUND = 2**48
MOVE = 600
TOY_STEPS = 16


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
    """A game whose model 0 has N = 4, 1-byte inputs and a step bound of 16."""
    game = deployer.deploy(project.OpmlGame, toy_vm, 10, 10, MOVE, 3600)
    program = toy_vm.stateHash(toy_vm.initialState())
    game.registerModel(b"\x03" * 32, 4, 1, TOY_STEPS, program, program, "", sender=deployer)
    return game


@pytest.mark.parametrize(
    "nodes, input_bytes, max_steps",
    [(4, 0, 16), (4, 1, 0), (4, 1, MAX_STEP_BOUND + 1), (4, 1, 2**64 - 1), (0, 1, 16), (2**20 + 1, 1, 16)],
    ids=["zero-input", "zero-steps", "steps-above-bound", "steps-max-u64", "zero-nodes", "nodes-above-max"],
)
def test_register_model_rejects_bad_bounds(toy_game, toy_vm, deployer, nodes, input_bytes, max_steps):
    program = toy_vm.stateHash(toy_vm.initialState())
    with ape.reverts(toy_game.InvalidModel):
        toy_game.registerModel(
            b"\x03" * 32, nodes, input_bytes, max_steps, program, program, "", sender=deployer
        )
    assert toy_game.modelCount() == 1


def test_register_model_bounds_and_fields(toy_game, toy_vm, deployer):
    """The largest step bound (2^48) and node count are taken; the model keeps its input size and step
    bound, and not its URI (only emitted)."""
    assert toy_game.MAX_STEP_BOUND() == MAX_STEP_BOUND
    program = toy_vm.stateHash(toy_vm.initialState())
    rc = toy_game.registerModel(
        b"\x03" * 32, 2**20, 2**32 - 1, MAX_STEP_BOUND, program, program, "ipfs://x", sender=deployer
    )
    [ev] = rc.events
    assert (ev.modelId, ev.nodeCount, ev.uri) == (1, 2**20, "ipfs://x")
    m = toy_game.model(1)
    assert (m.nodeCount, m.inputBytes, m.maxSteps) == (2**20, 2**32 - 1, MAX_STEP_BOUND)
    assert (toy_game.model(0).inputBytes, toy_game.model(0).maxSteps) == (1, TOY_STEPS)


def test_create_task_checks_the_input_size(toy_game, toy_vm, deployer, requester):
    """``createTask`` takes exactly the model's ``inputBytes`` (and never more than 4096 bytes, whatever
    a model registered); an unknown model is ``UnknownId`` before the size is looked at."""
    for data in (b"", b"xy", bytes(4097)):
        with ape.reverts(toy_game.InvalidDataSize):
            toy_game.createTask(0, data, 3600, True, sender=requester, value=1)
    with ape.reverts(toy_game.UnknownId):
        toy_game.createTask(1, b"x", 3600, True, sender=requester, value=1)
    program = toy_vm.stateHash(toy_vm.initialState())
    toy_game.registerModel(b"\x03" * 32, 4, 4097, TOY_STEPS, program, program, "", sender=deployer)
    with ape.reverts(toy_game.InvalidDataSize):  # a model no createTask can serve (createTaskByKey can)
        toy_game.createTask(1, bytes(4097), 3600, True, sender=requester, value=1)
    toy_game.createTask(0, b"x", 3600, True, sender=requester, value=1)
    assert toy_game.taskCount() == 1


def test_window_above_the_maximum_is_refused(toy_game, requester):
    with ape.reverts(toy_game.WindowTooLong):
        toy_game.createTask(0, b"x", MAX_WINDOW + 1, True, sender=requester, value=1)
    toy_game.createTask(0, b"x", MAX_WINDOW, True, sender=requester, value=1)


def test_requester_cancels_an_unanswered_task(toy_game, chain, requester, server):
    """Only after the answer window (``moveWindow`` from the task's creation) has passed."""
    receipt = toy_game.createTask(0, b"x", 3600, True, sender=requester, value=REWARD)
    task_id = int(receipt.events[0].taskId)
    assert toy_game.task(task_id).createdAt == receipt.timestamp
    with ape.reverts(toy_game.NotRequester):
        toy_game.cancelTask(task_id, sender=server)
    with ape.reverts(toy_game.AnswerWindowOpen):
        toy_game.cancelTask(task_id, sender=requester)
    chain.pending_timestamp = receipt.timestamp + MOVE
    with ape.reverts(toy_game.AnswerWindowOpen):
        toy_game.cancelTask(task_id, sender=requester)
    with ape.reverts(toy_game.NotRequester):
        toy_game.cancelTask(task_id, sender=server)
    toy_game.cancelTask(task_id, sender=requester)
    assert int(toy_game.task(task_id).status) == TASK_CANCELLED
    with ape.reverts(toy_game.WrongTaskStatus):
        toy_game.cancelTask(task_id, sender=requester)
    with ape.reverts(toy_game.WrongTaskStatus):
        toy_game.submitResult(task_id, bytes(32), sender=server, value=10)
    assert int(toy_game.credit(requester)) == REWARD
    toy_game.withdraw(sender=requester)
    assert chain.provider.get_balance(toy_game.address) == 0


def test_an_answered_task_cannot_be_cancelled(toy_game, chain, requester, server):
    """A commitment ends cancelling, revealed or not, even once the answer window has passed."""
    from opml.oracle import ChunkTree

    receipt = toy_game.createTask(0, b"x", 3600, True, sender=requester, value=REWARD)
    keys = [ChunkTree.from_bytes(b"x").key, *(bytes([3, i]) + bytes(30) for i in range(3))]
    output = b"out"
    keys.append(ChunkTree.from_bytes(output).key)
    tree = ChunkTree.from_bytes(b"".join(keys))
    toy_game.submitResult(0, tree.key, sender=server, value=10)
    chain.pending_timestamp = receipt.timestamp + MOVE + 1
    with ape.reverts(toy_game.WrongTaskStatus, status=2):
        toy_game.cancelTask(0, sender=requester)
    toy_game.revealOutput(0, output, tree.root, list(tree.siblings(4)), sender=server)
    with ape.reverts(toy_game.WrongTaskStatus, status=2):
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
    assert liar.poll() == 1  # the result's commitment
    assert honest.poll() == 0 and honest.poll() == 0  # no input yet: nothing to compare
    honest.store.put_chunk_merkle(x)  # the requester publishes it
    assert honest.poll() == 1  # the challenge; the server must defend before phase 1 starts
    assert [m.kind for m in honest.moves] == ["challenge"]
    assert liar.poll() == 2 and [m.kind for m in liar.moves][1:] == ["defend", "revealOutput"]
    assert honest.poll() == 1  # the opening claim of phase 1
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
