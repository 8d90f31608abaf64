"""Both digits models on 50 test images in the VM: the node program's key of every node equals the
native runner's, the whole-model program gives the same keys and prediction, and both programs accept
the native claim and reject it with any one byte changed (ml-spec §7, the game's phase 2 and
single-phase mode)."""

from __future__ import annotations

import numpy as np
import pytest
from _ci import slow_except
from _digits import DIGITS_SHAPES, MODELS, digits_test_split
from _toolchain import build_toolchain

from opml.ml.format import read_model, tensor_key
from opml.ml.phase import (
    EXIT_INVALID,
    EXIT_VALID,
    model_memory_bound,
    model_program_setup,
    node_memory_bound,
    node_program_setup,
    run_program,
)
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore

IMAGES = 50


@pytest.fixture(scope="module")
def images():
    build_toolchain()
    pixels, labels = digits_test_split()
    return pixels[:IMAGES], labels[:IMAGES]


def flip_one_byte(claim: bytes, i: int) -> bytes:
    """``claim`` with byte ``i % 32`` changed (by a different non-zero xor for each ``i``)."""
    pos = i % 32
    return claim[:pos] + bytes([claim[pos] ^ (1 + i % 255)]) + claim[pos + 1 :]


# The CNN (every node in the VM) is slow tier: its node programs also run in test_onnx_import.py.
@pytest.mark.parametrize("name", slow_except({0}, ["digits_mlp", "digits_cnn"]))
def test_digits_node_and_model_programs(name, images, tmp_path):
    model = read_model(MODELS / f"{name}.opml")
    n = len(model.nodes)
    store = PreimageStore(tmp_path)
    pixels, labels = images
    correct = 0
    for i, image in enumerate(pixels):
        x = image.reshape(DIGITS_SHAPES[name])
        run = run_model(model, x)
        prediction = int(run.output[0])
        correct += prediction == labels[i]

        for k in range(n):
            result = run_program(node_program_setup(model, x, k, run.state(k), store, run=run))
            assert result.exit_code == EXIT_VALID, (i, k, result.stderr)
            assert result.keys == [run.keys[k + 1]], (i, k)
            assert result.memory_bytes <= node_memory_bound(model, k)
        k = i % n
        lie = flip_one_byte(run.state(k), i)
        result = run_program(node_program_setup(model, x, k, lie, store, run=run))
        assert result.exit_code == EXIT_INVALID, (i, k)
        assert result.keys == [run.keys[k + 1]]  # the computation itself does not depend on the claim

        whole = run_program(model_program_setup(model, x, run.state(n - 1), store))
        assert whole.exit_code == EXIT_VALID, (i, whole.stderr)
        assert whole.keys == list(run.keys[1:])
        assert whole.keys[-1] == tensor_key(np.array([prediction], "<i4").tobytes())
        assert whole.memory_bytes <= model_memory_bound(model)
        wrong = run_program(model_program_setup(model, x, flip_one_byte(run.state(n - 1), i + 7), store))
        assert wrong.exit_code == EXIT_INVALID and wrong.keys == whole.keys
    assert correct >= 0.9 * IMAGES  # the images are real digits, not noise the model guesses on
