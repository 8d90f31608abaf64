"""A model imported from ONNX, disputed end to end on py-evm (issue 21's acceptance 3): the digits CNN
exported to ONNX and quantized by onnxruntime, imported (``opml.ml.onnx_import``), registered, and a
task on a test image whose server lies at a middle node (the second convolution's requantize); the
honest challenger's phase 1 finds that node, phase 2 the instruction, and the step settles it."""

from __future__ import annotations

import importlib.util

from _digits import MODELS
from _game_setup import CHALLENGER_BOND, REWARD, SERVER_BOND, deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import Op
from opml.ml.onnx_import import import_onnx

_spec = importlib.util.spec_from_file_location("digits_onnx", MODELS / "digits_onnx.py")
assert _spec is not None and _spec.loader is not None
digits_onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_onnx)


def withdrawn(game, chain, address) -> int:
    logs = game.Withdrawn.range(0, chain.blocks.height + 1)
    return sum(int(log.amount) for log in logs if log.account == address)


def test_a_lie_in_the_middle_of_an_imported_cnn_loses(
    project, chain, deployer, requester, server, challenger, tmp_path
):
    build_toolchain()
    digits_onnx.export(tmp_path / "onnx", formats=("qdq",))
    imported = import_onnx(tmp_path / "onnx" / "digits_cnn_tensor.onnx")
    model = imported.model
    k = [i for i, n in enumerate(model.nodes) if n.op is Op.REQUANTIZE][1]  # after the second conv
    x = imported.quantize_input(digits_onnx.float_inputs("digits_cnn", "test")[:1])
    game = deploy_game(project, deployer).game
    quiet = {"log": lambda _: None}
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=Lie.at_node(k), **quiet)
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", **quiet)
    task_id = post_task(game, register(game, model, deployer), x.tobytes(), requester)
    settle(chain, game, [liar, honest], [task_id])
    if int(game.credit(requester.address)):
        game.withdraw(sender=requester)

    assert int(game.task(task_id).status) == TASK_REJECTED
    dispute = game.dispute(0)
    assert Party(int(dispute.winner)) == Party.CHALLENGER and int(dispute.node) == k
    assert withdrawn(game, chain, challenger.address) == 2 * CHALLENGER_BOND + SERVER_BOND - SERVER_BOND // 2
    assert withdrawn(game, chain, requester.address) == REWARD + SERVER_BOND // 2
    assert chain.provider.get_balance(game.address) == 0
