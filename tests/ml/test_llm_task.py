"""One registration serves every generation task up to its sizes (docs/ml-spec.md §10.5), on the tiny
LLaMA: ``task_graph`` with room for 6 prompt tokens and 8 new ones.

- For every prompt length and token count it gives the tokens of the fixed-size ``generation_graph``
  (whose prompt is prefilled at once), and its KV caches after the prompt are those bytes.
- The node program in the VM gives the native key on the first node of every kind and on every
  ``emit``; the whole-model program computes every node's key.
- Inputs outside the registration's sizes get a one-line error; a transcript whose ``P`` or ``n`` is
  out of range is still a well-defined run (the rule of ``emit``).
"""

from __future__ import annotations

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml.llama import generated_ids, generation_graph, task_graph, task_input, tokens_of
from opml.ml.phase import EXIT_VALID, model_program_setup, node_kinds, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.ml.tiny_llama import tiny_llama
from opml.oracle.store import PreimageStore

MAX_PROMPT, MAX_NEW = 6, 8


@pytest.fixture(scope="module")
def weights():
    return tiny_llama(0)


@pytest.fixture(scope="module")
def task(weights):
    return task_graph(weights, MAX_PROMPT, MAX_NEW)


def test_node_count_and_labels(task, weights):
    layers = weights.config.layers
    assert len(task.model.nodes) == task.steps * (5 + 19 * layers) - layers  # ml-spec §10.5
    assert len(task.labels) == len(task.model.nodes)
    assert task.model.output == task.model.input  # the transcript in, the transcript out
    roles = [label.role for label in task.labels]
    assert roles.count("emit") == roles.count("lm_head") == task.steps
    assert roles.count("attention") == task.steps * layers


@pytest.mark.parametrize(
    "prompt, count", [([1, 2, 3, 4], 8), ([7], 1), ([5, 4, 3, 2, 1, 0], 8), ([9, 9, 9], 2)]
)
def test_every_task_size_gives_the_fixed_graphs_tokens(task, weights, prompt, count):
    run = run_model(task.model, task_input(prompt, count, MAX_PROMPT, MAX_NEW))
    fixed = generation_graph(weights, len(prompt), count)
    expected = run_model(fixed.model, np.array(prompt, np.int32))
    assert generated_ids(run.output) == tokens_of(expected.output)
    # the caches after the prompt: the task graph's at the last prompt position, the fixed graph's
    caches = {  # per layer, the last of the nodes labelled kv_cache at the last prompt position
        label.layer: k
        for k, label in enumerate(task.labels)
        if label.role == "kv_cache" and label.step == len(prompt) - 1
    }
    for k, v in zip(caches.values(), fixed.caches, strict=True):
        assert run.keys[k + 1] == expected.keys[v]
    assert list(run.output[2 : 2 + len(prompt)]) == prompt  # the prompt stays as it was


def test_pinned_tokens(task):
    run = run_model(task.model, task_input([1, 2, 3, 4], 8, MAX_PROMPT, MAX_NEW))
    assert generated_ids(run.output) == [76, 239, 239, 245, 146, 71, 155, 98]
    assert generated_ids(run.output, stop_id=239) == [76, 239]


@pytest.mark.parametrize(
    "prompt, count, message",
    [
        ([], 1, "a prompt of 0 tokens"),
        ([1] * 7, 1, "a prompt of 7 tokens"),
        ([1], 0, "0 new tokens"),
        ([1], 9, "9 new"),
    ],
)
def test_sizes_outside_the_registration_are_refused(prompt, count, message):
    with pytest.raises(ValueError, match=message):
        task_input(prompt, count, MAX_PROMPT, MAX_NEW)


@pytest.mark.parametrize("header", [(0, 3), (-5, 100), (2**31 - 1, 2**31 - 1), (3, -(2**31))])
def test_any_transcript_header_is_a_defined_run(task, header, tmp_path):
    x = task_input([1, 2, 3], 2, MAX_PROMPT, MAX_NEW)
    x[0], x[1] = header
    run = run_model(task.model, x)
    k = len(task.model.nodes) - 1
    result = run_program(node_program_setup(task.model, x, k, run.state(k), PreimageStore(tmp_path), run=run))
    assert result.exit_code == EXIT_VALID and result.keys == [run.keys[-1]]


def test_node_program_on_every_kind_and_every_emit(task, tmp_path):
    build_toolchain()
    x = task_input([1, 2, 3, 4], 5, MAX_PROMPT, MAX_NEW)
    run = run_model(task.model, x)
    store = PreimageStore(tmp_path)
    emits = [k for k, label in enumerate(task.labels) if label.role == "emit"]
    for k in sorted(set(node_kinds(task.model)) | set(emits)):
        result = run_program(node_program_setup(task.model, x, k, run.state(k), store, run=run))
        assert result.exit_code == EXIT_VALID, (k, task.labels[k], result.stderr)
        assert result.keys == [run.keys[k + 1]], (k, task.labels[k])


def test_whole_model_program(task, tmp_path):
    build_toolchain()
    x = task_input([3, 1], 4, MAX_PROMPT, MAX_NEW)
    run = run_model(task.model, x)
    setup = model_program_setup(task.model, x, run.states[-1], PreimageStore(tmp_path))
    result = run_program(setup, max_steps=10**9)
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == list(run.keys[1:])
