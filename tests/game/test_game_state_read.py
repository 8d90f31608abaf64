"""A node-program dispute that ends on a read of ``S_{k−1}``'s chunk-Merkle tree (ml-spec §7.1).

The node program computes ``S_k`` from ``S_{k−1}``'s ``(root, size)`` and the inner nodes of its tree on
the new key's path, each read as a 64-byte keccak-type preimage (key type 2). A server lying at node
``k`` of digits_mlp fabricates its phase-2 states from the step after one of these reads, so the
dispute ends on that very ``preimage_read``: the stepping agent reveals the 64 bytes with
``loadKeccak256PreimagePart`` (from the store ``node_program_setup`` filled), ``MIPS.step`` reads them
through the oracle on-chain, and the honest challenger wins.
"""

from __future__ import annotations

import numpy as np
import pytest
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _game_setup import deploy_game, post_task, register, settle
from _toolchain import build_toolchain

from opml.game.agents import TASK_REJECTED, Agent
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import read_model
from opml.ml.phase import ProgramSetup, node_program_setup, state_path_preimages
from opml.oracle.chunk_tree import DenseChunkTree
from opml.oracle.keys import KeyType, keccak_key
from opml.oracle.store import PreimageStore
from opml.vm.constants import REG_A2, REG_V0, SYS_PREIMAGE_READ
from opml.vm.fast import FastVM

SYSCALL = 0x0000000C


@pytest.fixture(scope="module")
def model():
    build_toolchain()
    return read_model(MODELS / "digits_mlp.opml")


def _vm_at(setup: ProgramSetup, step: int) -> FastVM:
    vm = FastVM.from_state(setup.state, copy_memory=True, oracle=setup.oracle)
    vm.run(step)
    return vm


def read_step_of(setup: ProgramSetup, key: bytes) -> int:
    """The position of the first ``preimage_read`` of ``key`` (with a non-zero count), where ``key`` is
    the last key the program selects: the first state that has it selected is found by bisection (it
    stays selected to the exit), then the program is stepped to the read."""
    lo, hi = 0, _vm_at(setup, 10**10).step  # key not selected at lo, selected at hi (the exit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _vm_at(setup, mid).preimage_key == key else (mid, hi)
    vm = _vm_at(setup, hi)
    while not (
        int.from_bytes(vm.read_bytes(vm.pc, 4), "little") == SYSCALL
        and vm.regs[REG_V0] == SYS_PREIMAGE_READ
        and vm.regs[REG_A2] != 0
    ):
        vm.run(vm.step + 1)
    return vm.step


def test_a_dispute_ends_on_a_read_of_a_state_tree_node(
    model, project, deployer, requester, server, chain, challenger, tmp_path
):
    k = 2  # S_1's tree: the keys of v_0 … v_2 padded to 4 leaves; the new key is leaf 3
    x = np.asarray(digits_test_split()[0][3], np.int8).reshape(DIGITS_SHAPES["digits_mlp"])
    lie_run = Lie.at_node(k).run(model, x)
    setup = node_program_setup(model, x, k, lie_run.state(k), PreimageStore(tmp_path / "probe"), run=lie_run)
    path = state_path_preimages(DenseChunkTree(lie_run.state_preimage(k - 1)))
    assert len(path) == 3  # (root, size), the root's children, the children of the node above leaf 3
    node_key = keccak_key(path[-1])  # leaf 2 (the key of value 2) and a zero leaf
    position = read_step_of(setup, node_key)

    deployed = deploy_game(project, deployer)
    game = deployed.game
    lie = Lie.at_step(k, position + 1)  # the liar's states leave the true run after the read
    liar = Agent(game, server, Party.SERVER, [model], tmp_path / "s", lie=lie, log=lambda _: None)
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp_path / "c", log=lambda _: None)
    honest.traces.release = lambda dispute_id: None  # keep its trace past the end, to read the step
    task_id = post_task(game, register(game, model, deployer), x.tobytes(), requester)
    settle(chain, game, [liar, honest], [task_id])

    assert int(game.task(task_id).status) == TASK_REJECTED
    height = chain.blocks.height
    resolved = [(int(e.disputeId), Party(int(e.winner))) for e in game.DisputeResolved.range(0, height + 1)]
    assert resolved == [(0, Party.CHALLENGER)]
    assert int(game.dispute(0).node) == k
    (played,) = game.StepPlayed.range(0, height + 1)
    assert int(played.position) == position
    pre = honest.traces.of(0).state_at(position)
    assert pre.preimage_key == node_key and node_key[0] == KeyType.KECCAK
    assert pre.registers[REG_V0] == SYS_PREIMAGE_READ
    # the stepping agent revealed the node's 64 bytes as a keccak preimage before the step
    assert deployed.oracle.preimagePartOk(node_key, 0)
    assert int(deployed.oracle.preimageLengths(node_key)) == 64
    assert any(m.kind == "oracle" for m in liar.moves + honest.moves)
