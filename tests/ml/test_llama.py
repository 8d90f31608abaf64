"""The tiny LLaMA (opml.ml.tiny_llama) generating 8 greedy tokens after a 4-token prompt, natively and
in the VM (docs/ml-spec.md §10, issue 18's acceptance 2).

- How the prompt is prefilled (all at once, token by token, or in uneven chunks) changes the graph but
  no byte of any row: the KV caches after the prompt, every generated record and the tokens are
  identical.
- The integer residual after the prompt is within 0.3 % (measured: 0.06 %) of a float64 LLaMA on
  the same GGUF weights, and the first token is the float model's argmax.
- Every node's output key from the node program in the VM is the native runner's; the whole-model
  program (single-phase) computes the same keys, so the same tokens; a valid claim exits 0 and one
  changed byte exits 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml.float_llama import FloatLlama
from opml.ml.format import DType, Op
from opml.ml.llama import RESIDUAL_FRAC, generation_graph, tokens_of
from opml.ml.phase import EXIT_INVALID, EXIT_VALID, model_program_setup, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.ml.tiny_llama import tiny_llama
from opml.oracle.store import PreimageStore

PROMPT = np.array([1, 2, 3, 4], dtype=np.int32)
NEW_TOKENS = 8
WTYPES = [DType.Q4_1, DType.Q8_0]
# Seed 0's greedy tokens for the prompt above: a change to any op's integers shows here first.
PINNED = {DType.Q4_1: [76, 239, 239, 245, 146, 71, 155, 98], DType.Q8_0: [239, 213, 100, 225, 38, 12, 12, 12]}


@pytest.fixture(scope="module", params=WTYPES, ids=lambda w: w.name.lower())
def generation(request):
    gen = generation_graph(tiny_llama(0, request.param), len(PROMPT), NEW_TOKENS)
    return request.param, gen, run_model(gen.model, PROMPT)


def flip_byte(key: bytes) -> bytes:
    return bytes([key[0], key[1] ^ 1, *key[2:]])


def test_generation_is_pinned(generation):
    wtype, _gen, run = generation
    assert tokens_of(run.output) == PINNED[wtype]


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1], [3, 1], [1, 3]], ids=["token-by-token", "3-1", "1-3"])
def test_prefill_chunking_changes_no_byte(generation, chunks):
    wtype, gen, run = generation
    other = generation_graph(tiny_llama(0, wtype), len(PROMPT), NEW_TOKENS, chunks=chunks)
    assert other.model.commitment != gen.model.commitment  # a different graph …
    again = run_model(other.model, PROMPT)
    assert tokens_of(again.output) == tokens_of(run.output)  # … with the same tokens,
    assert again.output_key == run.output_key
    for mine, theirs in zip(gen.caches, other.caches, strict=True):  # the same caches after the prompt
        assert again.keys[theirs] == run.keys[mine]
    for mine, theirs in zip(gen.records, other.records, strict=True):  # and the same records
        assert again.keys[theirs] == run.keys[mine]


def test_close_to_float64(generation):
    wtype, gen, run = generation
    nodes = gen.model.nodes
    head = next(k for k, node in enumerate(nodes) if node.op == Op.QDENSE_ARGMAX)  # the prompt's head
    normed = nodes[head].inputs[0]
    residual = nodes[normed - 1].inputs[0]  # the last prompt row's residual, int32 at 2^-R
    ref = FloatLlama(tiny_llama(0, wtype), np.float64)
    want = ref.residual(PROMPT)[-1]
    got = run.values[residual][0] / 2.0**RESIDUAL_FRAC
    assert np.max(np.abs(got - want)) <= 0.003 * np.max(np.abs(want))
    assert tokens_of(run.output)[0] == int(np.argmax(ref.logits(PROMPT)[-1]))


# --- in the VM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built():
    build_toolchain()


def _check_node(gen, run, k: int, store_dir) -> None:
    store = PreimageStore(store_dir)
    result = run_program(node_program_setup(gen.model, PROMPT, k, run.state(k), store, run=run))
    assert result.exit_code == EXIT_VALID, (k, gen.model.nodes[k].op, result.stderr)
    assert result.keys == [run.keys[k + 1]]


def test_every_node_key_native_equals_vm(built, generation, tmp_path):
    _wtype, gen, run = generation
    for k in range(len(gen.model.nodes)):
        _check_node(gen, run, k, tmp_path / "store")


def test_a_changed_byte_in_a_node_claim_exits_1(built, generation, tmp_path):
    _wtype, gen, run = generation
    for k in (gen.caches[0] - 1, len(gen.model.nodes) - 1):
        store = PreimageStore(tmp_path / "store")
        result = run_program(
            node_program_setup(gen.model, PROMPT, k, flip_byte(run.state(k)), store, run=run)
        )
        assert result.exit_code == EXIT_INVALID, result.stderr


def test_whole_model_program_gives_the_same_tokens(built, generation, tmp_path):
    _wtype, gen, run = generation
    final = run.state(len(gen.model.nodes) - 1)
    result = run_program(model_program_setup(gen.model, PROMPT, final, PreimageStore(tmp_path / "a")))
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == list(run.keys[1:])  # every node's key, the records' among them
    lie = run_program(model_program_setup(gen.model, PROMPT, flip_byte(final), PreimageStore(tmp_path / "b")))
    assert lie.exit_code == EXIT_INVALID
