"""One disputed task, played multi-phase and single-phase; prints one JSON object.

    .venv/bin/python bench/dispute.py [--lie-node 4] [--image 0]      (from the repository root)
    .venv/bin/python bench/dispute.py --model tiny-llama --lie-node attention

The model is the digits CNN on a test image, or the tiny LLaMA (opml.ml.tiny_llama, ``q4_1``) generating
8 tokens after the prompt 1 2 3 4. A server lies at node ``--lie-node`` (a number; for the LLaMA also
``attention``: its first attention node, ``kv-cache``: the node whose output is layer 0's cache after
the prompt, ``last``: the last node), so its output and every later one are wrong, and an honest
challenger disputes it, on ape's embedded py-evm node with the real ``MIPS`` and ``OpmlGame``. The same
input is posted twice, as a multi-phase and as a single-phase task. Per mode:

- ``wall_s``: seconds from the result to the settled dispute (agents' work and transactions; the
  challenge window and move deadlines are skipped by moving the chain's clock);
- ``rounds``: bisection rounds (halvings, one ``respond`` each) per phase and in total (protocol §6's
  formula alongside);
- ``transactions`` and ``gas_per_move`` (by kind: max and count) and ``total_gas``: every transaction
  of both parties from the challenge to the payout, oracle reveals included;
- ``vm_steps``: VM steps the honest challenger executed; ``native_s``: its native inference time;
  ``vm_s``: its phase-2 traces; ``dry_run_s``: its dry run before staking (one program per node kind).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ape import accounts, chain, networks, project
from ape.logging import logger
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from opml.chain.pyevm import lift_code_size_limit
from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent, registration_args
from opml.game.lies import Lie
from opml.game.solver import Party
from opml.ml.format import Model, Op, read_model
from opml.ml.llama import generation_graph
from opml.ml.tiny_llama import tiny_llama

ROOT = Path(__file__).resolve().parents[1]
SERVER_BOND = CHALLENGER_BOND = 10**18
WINDOW = 3600


def _image(index: int) -> np.ndarray:
    digits = load_digits()
    y = digits.target
    _, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    return digits.images[test][index].astype(np.int8).reshape(8, 8, 1)


def _workload(name: str, image: int, lie_node: str) -> tuple[Model, np.ndarray, int]:
    """The model, its input and the index of the node to lie at."""
    if name == "digits_cnn":
        return read_model(ROOT / "models" / "digits_cnn.opml"), _image(image), int(lie_node)
    gen = generation_graph(tiny_llama(0), 4, 8)
    nodes = gen.model.nodes
    named = {
        "attention": next(k for k, n in enumerate(nodes) if n.op == Op.ATTENTION),
        "kv-cache": gen.caches[0] - 1,
        "last": len(nodes) - 1,
    }
    node = named[lie_node] if lie_node in named else int(lie_node)
    return gen.model, np.array([1, 2, 3, 4], dtype=np.int32), node


def _settle(game: Any, agents: list[Agent], task_id: int) -> None:
    for _ in range(1000):
        sent = sum(agent.poll() for agent in agents)
        if int(game.task(task_id).status) in (TASK_FINALIZED, TASK_REJECTED) and sent == 0:
            return
        if sent == 0:
            chain.pending_timestamp += WINDOW + 1
            chain.mine()
    raise RuntimeError(f"task {task_id} did not settle")


def deploy_and_register(model: Model) -> tuple[Any, int]:
    """The game deployed on ape's current provider with this bench's bonds and windows, and the id of
    ``model`` registered on it."""
    deployer = accounts.test_accounts[0]
    oracle = deployer.deploy(project.PreimageOracle)
    mips = deployer.deploy(project.MIPS, oracle)
    game = deployer.deploy(project.OpmlGame, mips, SERVER_BOND, CHALLENGER_BOND, WINDOW, WINDOW)
    receipt = game.registerModel(*registration_args(model, "file://models"), sender=deployer)
    return game, int(receipt.events[0].modelId)


def play(game: Any, model_id: int, model: Any, x: np.ndarray, multi_phase: bool, lie: Lie, tmp: Path) -> dict:
    requester, server, challenger = accounts.test_accounts[1:4]
    receipt = game.createTask(model_id, x.tobytes(), WINDOW, multi_phase, sender=requester, value=10**17)
    task_id = int(receipt.events[0].taskId)
    quiet = {"log": lambda _: None}
    liar = Agent(game, server, Party.SERVER, [model], tmp / f"s{task_id}", lie=lie, **quiet)
    honest = Agent(game, challenger, Party.CHALLENGER, [model], tmp / f"c{task_id}", **quiet)
    liar.poll()  # the result
    t0 = time.perf_counter()
    _settle(game, [liar, honest], task_id)
    wall = time.perf_counter() - t0
    dispute_id = int(game.disputeCount()) - 1
    d = game.dispute(dispute_id)
    moves = [
        m for agent in (liar, honest) for m in agent.moves if m.kind not in ("submitResult", "revealOutput")
    ]
    kinds: dict[str, dict[str, int]] = {}
    for m in moves:
        k = kinds.setdefault(m.kind, {"count": 0, "max": 0, "total": 0})
        k["count"] += 1
        k["max"] = max(k["max"], m.gas)
        k["total"] += m.gas
    head = chain.blocks.height + 1
    (claimed,) = [log for log in game.ExecutionClaimed.range(0, head) if int(log.disputeId) == dispute_id]
    steps = [int(claimed.steps)]
    verdicts = [log.block_number for log in game.Responded.range(0, head) if int(log.disputeId) == dispute_id]
    graph_rounds = sum(1 for block in verdicts if block < claimed.block_number)
    exec_rounds = len(verdicts) - graph_rounds
    n = len(model.nodes)
    return {
        "winner": Party(int(d.winner)).name.lower(),
        "node": int(d.node) if multi_phase else None,
        "wall_s": round(wall, 2),
        "rounds": {"graph": graph_rounds, "vm": exec_rounds, "total": graph_rounds + exec_rounds},
        "rounds_formula": (math.ceil(math.log2(n)) if multi_phase else 0) + math.ceil(math.log2(steps[0])),
        "vm_steps_of_disputed_program": steps[0],
        "transactions": len(moves),
        "gas_per_move": kinds,
        "total_gas": sum(m.gas for m in moves),
        "vm_steps": honest.vm_steps,
        "native_s": round(honest.native_seconds, 4),
        "vm_s": round(honest.vm_seconds, 4),
        "dry_run_s": round(honest.dry_run_seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["digits_cnn", "tiny-llama"], default="digits_cnn")
    parser.add_argument("--lie-node", default="4")
    parser.add_argument("--image", type=int, default=0)
    args = parser.parse_args()
    logger.set_level("ERROR")  # ape logs deployments to stdout, which carries only the JSON object
    lift_code_size_limit()
    model, x, lie_node = _workload(args.model, args.image, args.lie_node)
    with networks.ethereum.local.use_provider("test"), tempfile.TemporaryDirectory() as tmp:
        game, model_id = deploy_and_register(model)
        lie = Lie.at_node(lie_node)
        multi = play(game, model_id, model, x, True, lie, Path(tmp))
        single = play(game, model_id, model, x, False, lie, Path(tmp))
    report = {
        "model": args.model,
        "nodes": len(model.nodes),
        "lie_node": lie_node,
        "lie_op": Op(model.nodes[lie_node].op).name.lower(),
        "multi_phase": multi,
        "single_phase": single,
        "vm_steps_multi_over_single": round(multi["vm_steps"] / single["vm_steps"], 4),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
