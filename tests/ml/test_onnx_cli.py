"""The README's ONNX commands (issue 21, acceptance 4): a float ONNX graph (the digits MLP, a scikit-learn
``MLPClassifier``) → ``opml model quantize`` → ``opml model import`` (the model and its ONNX card) →
``opml model run`` on the float ``.npy`` a task is posted with, whose output is onnxruntime's int8 output;
and what the card and the commands refuse."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from _onnx import digits_onnx, onnx_int8_outputs
from click.testing import CliRunner

from opml.cli import main
from opml.ml.errors import InvalidInputError, ModelFormatError
from opml.ml.format import read_model
from opml.ml.onnx_card import card_path, model_input, read_card
from opml.ml.onnx_import import import_onnx


def invoke(*args):
    return CliRunner(mix_stderr=False).invoke(main, ["model", *map(str, args)])


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The README's steps on the MLP, per channel: the float graph, its calibration and test input, the
    quantized graph, the model and its card."""
    out = tmp_path_factory.mktemp("readme")
    digits_onnx.export(out, formats=())  # the float inputs only
    onnx.save(digits_onnx.float_onnx(digits_onnx.float_layers("digits_mlp"), (64,)), str(out / "mlp.onnx"))
    q = invoke(
        "quantize",
        out / "mlp.onnx",
        out / "digits_mlp_calibration.npy",
        "--per-channel",
        "--out",
        out / "q.onnx",
    )
    assert q.exit_code == 0, q.stderr
    i = invoke("import", out / "q.onnx", "--out", out / "mlp.opml")
    assert i.exit_code == 0, i.stderr
    assert "card" in i.stdout and "round_half_even(x / " in i.stdout
    return out


def test_a_task_on_the_float_input_gives_onnxruntimes_output(readme):
    x = np.load(readme / "digits_mlp_test0.npy")
    assert x.dtype == np.float32 and x.shape == (1, 64)
    run = invoke("run", readme / "mlp.opml", readme / "digits_mlp_test0.npy", "--json")
    assert run.exit_code == 0, run.stderr
    want = onnx_int8_outputs(readme / "q.onnx", x).reshape(-1)
    assert json.loads(run.stdout)["output"] == want.tolist()
    # the card is the importer's own quantization, and the model is per channel (a table per dense)
    assert read_card(readme / "mlp.opml") == import_onnx(readme / "q.onnx").input
    assert read_model(readme / "mlp.opml").nodes[1].tensor_keys[0] is not None


def test_the_float_input_may_leave_out_its_batch(readme, tmp_path):
    x = np.load(readme / "digits_mlp_test0.npy")
    np.save(tmp_path / "flat.npy", x[0])
    desc = read_model(readme / "mlp.opml").input
    assert np.array_equal(
        model_input(tmp_path / "flat.npy", readme / "mlp.opml", desc),
        read_card(readme / "mlp.opml").quantize(x, desc),
    )


def test_a_float_input_without_a_card_or_of_another_shape_is_refused(readme, tmp_path):
    model = tmp_path / "bare.opml"
    model.write_bytes((readme / "mlp.opml").read_bytes())
    desc = read_model(model).input
    with pytest.raises(
        InvalidInputError, match=r"a float input, and .* has no ONNX card \(bare\.onnx\.json\)"
    ):
        model_input(readme / "digits_mlp_test0.npy", model, desc)
    np.save(tmp_path / "wrong.npy", np.zeros((1, 63), np.float32))
    with pytest.raises(InvalidInputError, match=r"shape \[1, 63\]: the ONNX input 'x' is \[1, 64\]"):
        model_input(tmp_path / "wrong.npy", readme / "mlp.opml", desc)
    run = invoke("run", model, readme / "digits_mlp_test0.npy")
    assert run.exit_code == 1 and "has no ONNX card" in run.stderr


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda c: c.pop("scale"), "not an ONNX card"),
        (lambda c: c.update(scale=0.1), "positive float32"),  # not a float32
        (lambda c: c.update(zero_point=128), "zero point an int8"),
        (lambda c: c.update(quantized_shape=[1, 65]), "differ in size"),
    ],
)
def test_a_broken_card_is_a_typed_error(readme, tmp_path, edit, why):
    model = tmp_path / "m.opml"
    model.write_bytes((readme / "mlp.opml").read_bytes())
    card = json.loads(card_path(readme / "mlp.opml").read_text())
    edit(card)
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelFormatError, match=why):
        read_card(model)


def test_quantize_refuses_an_integer_calibration_and_names_onnxruntimes_failure(readme, tmp_path):
    np.save(tmp_path / "ints.npy", np.zeros((4, 64), np.int8))
    bad = invoke("quantize", readme / "mlp.onnx", tmp_path / "ints.npy", "--out", tmp_path / "q.onnx")
    assert bad.exit_code == 1 and "give N float inputs" in bad.stderr
    np.save(tmp_path / "wrong.npy", np.zeros((4, 63), np.float32))
    bad = invoke("quantize", readme / "mlp.onnx", tmp_path / "wrong.npy", "--out", tmp_path / "q.onnx")
    assert bad.exit_code == 1 and "onnxruntime could not quantize" in bad.stderr
