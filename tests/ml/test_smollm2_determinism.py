"""SmolLM2's integer run is bit-identical however it is computed (issue 19's acceptance 2), in the slow
tier: a 16-token prompt prefilled at once (``generation_graph``) and token by token (the registration's
task graph) gives the same KV caches after the prompt, the same argmax records and tokens; the task
graph run with 1 and with 2 threads (BLAS, OpenMP, numba) gives the same key for every node.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _ci import SLOW

from opml.ml.gguf_import import read_gguf
from opml.ml.llama import generation_graph, tokens_of
from opml.ml.runner import run_model
from opml.ml.tokenizer import smollm2_gguf

pytestmark = SLOW

PROMPT = "In physics, the first law of thermodynamics says that energy can be neither created nor"
NEW = 8


@pytest.fixture(scope="module")
def task(smollm2):
    ids = smollm2.prompt_ids(PROMPT, chat=False)
    x = smollm2.task(ids, NEW)
    return ids, x, run_model(smollm2.model, x)


def test_prefill_at_once_equals_token_by_token(smollm2, task):
    ids, _x, run = task
    fixed = generation_graph(read_gguf(smollm2_gguf()), len(ids), NEW)
    once = run_model(fixed.model, np.array(ids, np.int32))
    assert tokens_of(once.output) == smollm2.answer(run.output)
    labels = smollm2.card.labels
    last = len(ids) - 1
    caches = {lb.layer: k for k, lb in enumerate(labels) if lb.role == "kv_cache" and lb.step == last}
    assert [run.keys[k + 1] for k in caches.values()] == [once.keys[v] for v in fixed.caches]
    heads = [k for k, lb in enumerate(labels) if lb.role == "lm_head" and lb.step >= last][:NEW]
    assert [run.keys[k + 1] for k in heads] == [once.keys[v] for v in fixed.records]


_RUN = """
import sys
from opml.ml.llm import LlmModel
from opml.ml.runner import run_model
import numpy as np
llm = LlmModel.load(sys.argv[1])
x = np.array([int(t) for t in sys.argv[2].split(",")], np.int32)
print(run_model(llm.model, x).states[-1].hex())
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_one_and_two_threads_give_every_key(smollm2, task, threads):
    _ids, x, run = task
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    args = [sys.executable, "-c", _RUN, str(smollm2.path), ",".join(map(str, x.tolist()))]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=1200)
    assert out.stdout.strip() == run.states[-1].hex()  # S_{N-1} commits to every node's key
