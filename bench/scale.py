"""A billion parameters on two cores: a synthetic model of the Llama-3.2-1B shape generated, committed,
served and disputed on py-evm; prints one JSON object (issue 20's acceptance 1).

    .venv/bin/python bench/scale.py [--shape llama-3.2-1b] [--seed 0]      (from the repository root)

The registration serves prompts of up to 8 tokens and 4 new tokens (docs/ml-spec.md §10.5, §10.7); the
task is the prompt 1 … 8. A server lies at layer 9's ``ffn_down`` at the last prompt token (the largest
node of a layer), and an honest challenger disputes it multi-phase on ape's embedded py-evm node
(``bench/dispute.py``'s ``play``: the real ``MIPS`` and ``OpmlGame``, windows skipped by moving the
clock).

- ``params``, ``file_bytes``; ``generate_s`` and ``generator_peak_rss_mib`` (``opml.ml.synth`` in a child
  process: two passes over the seeded generator, the file written in a stream); ``commit_s``: the model
  read back from its file with every tensor's key hashed again and every rule checked (what an agent
  does once per model file);
- ``native``: the integer runner on the task, cold (the block scales decoded, the file paged in: what an
  agent's first task costs) and warm, in positions/s (the graph runs 11) and generated tokens/s;
- ``largest_node``: its label, its static step bound and its VM steps, run in the node program against
  the native key;
- ``dispute``: rounds per phase, transactions, gas, the disputed node's VM steps, wall time (windows
  skipped), the honest challenger's native run, phase-2 traces and once-per-model check;
- ``total_s``: generation + commitment + registration + the whole dispute (both parties' native runs,
  the check, both phases, the step, every transaction), all of it on this machine, in one go;
- ``peak_rss_mib``: of this process, which holds the chain and both agents (each agent's is below it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ape import networks
from ape.logging import logger
from dispute import deploy_and_register, play
from llm import _vm_node

from opml.chain.pyevm import lift_code_size_limit
from opml.game.lies import Lie
from opml.ml.cost import node_step_bound
from opml.ml.format import read_model
from opml.ml.llm import LlmModel
from opml.ml.runner import run_model
from opml.ml.synth import SHAPES, parameter_count
from opml.oracle.store import PreimageStore

MAX_PROMPT, MAX_NEW = 8, 4
PROMPT = list(range(1, MAX_PROMPT + 1))
LIE = ("ffn_down", MAX_PROMPT - 1, 9)  # role, step, layer

GENERATE = """
import json, sys, time
from opml.ml.synth import SHAPES, write_synth
path, shape, seed, p, n = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
t0 = time.perf_counter()
synth = write_synth(path, SHAPES[shape], seed, p, n)
print(json.dumps({"seconds": time.perf_counter() - t0, "commitment": "0x" + synth.commitment.hex()}))
"""


def _mib(kib: int) -> int:
    return round(kib / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logger.set_level("ERROR")  # ape logs deployments to stdout, which carries only the JSON object
    lift_code_size_limit()
    config = SHAPES[args.shape]
    report: dict[str, object] = {
        "shape": args.shape,
        "seed": args.seed,
        "params": parameter_count(config),
        "task": {"prompt": PROMPT, "new_tokens": MAX_NEW},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.shape}.opml"
        t_all = time.perf_counter()
        argv = [str(path), args.shape, str(args.seed), str(MAX_PROMPT), str(MAX_NEW)]
        child = subprocess.run([sys.executable, "-c", GENERATE, *argv], check=True, capture_output=True)
        generated = json.loads(child.stdout)
        report["generate_s"] = round(generated["seconds"], 1)
        report["generator_peak_rss_mib"] = _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        report["file_bytes"] = path.stat().st_size
        t0 = time.perf_counter()
        model = read_model(path, verify=True)
        report["commit_s"] = round(time.perf_counter() - t0, 1)
        report["commitment"] = "0x" + model.commitment.hex()
        assert report["commitment"] == generated["commitment"]
        llm = LlmModel.load(path)
        x = llm.task(PROMPT, MAX_NEW)
        report["nodes"] = len(llm.model.nodes)

        lie_node = max(k for k, lb in enumerate(llm.card.labels) if (lb.role, lb.step, lb.layer) == LIE)
        with networks.ethereum.local.use_provider("test"):
            game, model_id = deploy_and_register(llm.model)
            t0 = time.perf_counter()
            played = play(game, model_id, llm.model, x, True, Lie.at_node(lie_node), Path(tmp) / "agents")
            played["play_s"] = round(time.perf_counter() - t0, 1)
        report["total_s"] = round(time.perf_counter() - t_all, 1)
        played["lie"] = str(llm.card.labels[lie_node])
        played["model_check_once_s"] = played.pop("dry_run_s")
        report["dispute"] = played

        steps = MAX_PROMPT + MAX_NEW - 1
        t0 = time.perf_counter()
        run = run_model(llm.model, x)
        warm = time.perf_counter() - t0
        report["native"] = {
            "tokens": llm.answer(run.output),
            "positions": steps,
            "warm_s": round(warm, 2),
            "warm_positions_per_s": round(steps / warm, 2),
            "warm_tokens_per_s": round(MAX_NEW / warm, 2),
            "in_the_dispute_s": played["native_s"],
        }
        largest = max(range(len(llm.model.nodes)), key=lambda k: node_step_bound(llm.model, k))
        t0 = time.perf_counter()
        vm = _vm_node(llm, x, run, largest, PreimageStore(Path(tmp) / "vm"))
        report["largest_node"] = {
            "node": largest,
            "label": str(llm.card.labels[largest]),
            "bound": node_step_bound(llm.model, largest),
            "vm_steps": vm,
            "vm_s": round(time.perf_counter() - t0, 1),
        }
    report["peak_rss_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
