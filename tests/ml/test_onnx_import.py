"""ONNX import (docs/ml-spec.md §11, issue 21): the digits models exported to ONNX and quantized by
onnxruntime (QDQ, int8) import into models whose native runs give onnxruntime's int8 output on every
test image, byte for byte, and whose node programs in the VM give the native keys; what opML does not
import is a typed error naming the node.

onnxruntime runs each quantized model as it is (its optimizer fuses the QDQ pairs into ``QLinearConv``
and ``QGemm``); its float output is ``(q − zero)·scale`` of the int8 output ``q``, which division
recovers exactly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _digits import MODELS
from _toolchain import build_toolchain

from opml.ml.errors import OnnxImportError, UnsupportedOnnxOpError
from opml.ml.onnx_import import import_onnx
from opml.ml.phase import EXIT_VALID, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore

_spec = importlib.util.spec_from_file_location("digits_onnx", MODELS / "digits_onnx.py")
assert _spec is not None and _spec.loader is not None
digits_onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_onnx)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    digits_onnx.export(out)
    return out


def onnx_int8_outputs(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's int8 output of the quantized model at ``path`` for each input row of ``x``."""
    model = onnx.load(str(path))
    dq = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scale, zero = np.float32(inits[dq.input[1]]), int(inits[dq.input[2]])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.concatenate([session.run(None, {"x": row[None]})[0] for row in x])
    return (np.rint(out / scale) + zero).astype(np.int8)


EXACT = [("digits_mlp", "tensor"), ("digits_cnn", "tensor"), ("digits_cnn", "channel")]


@pytest.mark.parametrize("name, scales", EXACT)
def test_every_test_image_gives_onnxruntimes_int8_output(exported, name, scales):
    path = exported / f"{name}_{scales}.onnx"
    imported = import_onnx(path)
    x = digits_onnx.float_inputs(name, "test")
    want = onnx_int8_outputs(path, x)
    got = np.stack(
        [run_model(imported.model, imported.quantize_input(row[None])).output.reshape(-1) for row in x]
    )
    mismatches = [i for i in range(len(x)) if not np.array_equal(got[i], want[i])]
    assert mismatches == []
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


@pytest.mark.parametrize("name, scales", EXACT)
def test_the_node_programs_give_the_native_keys(exported, name, scales, tmp_path):
    build_toolchain()
    imported = import_onnx(exported / f"{name}_{scales}.onnx")
    x = imported.quantize_input(digits_onnx.float_inputs(name, "test")[:1])
    run = run_model(imported.model, x)
    store = PreimageStore(tmp_path)
    for k in range(len(imported.model.nodes)):
        result = run_program(node_program_setup(imported.model, x, k, run.state(k), store, run=run))
        assert result.exit_code == EXIT_VALID and result.keys == [run.keys[k + 1]]


def test_a_bias_past_the_dense_bound_is_refused_with_its_onnx_node(exported):
    # Per-channel quantization of the MLP gives a nearly dead hidden unit a tiny weight scale, so its
    # int32 bias (at x_scale·w_scale) is about 2^31: opML's dense bound (K·255·128 + |bias| < 2^31)
    # refuses it; onnxruntime computes it with an accumulator that may wrap.
    with pytest.raises(OnnxImportError, match=r"Gemm node 't0': node 0 \(dense\): K·255·128 \+ max\|bias\|"):
        import_onnx(exported / "digits_mlp_channel.onnx")


def test_an_unsupported_op_is_named_with_every_node_that_has_one(exported, tmp_path):
    model = onnx.load(str(exported / "digits_mlp_tensor.onnx"))
    extra = [
        onnx.helper.make_node("Sigmoid", ["logits"], ["s"], name="squash"),
        onnx.helper.make_node("Tanh", ["s"], ["t"], name="bend"),
    ]
    model.graph.node.extend(extra)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedOnnxOpError, match=r"Sigmoid \(squash\), Tanh \(bend\)"):
        import_onnx(path)


def test_a_float_graph_is_refused_with_the_node_that_is_not_quantized(exported):
    with pytest.raises(OnnxImportError, match=r"Gemm node 't0_gemm': input 'x' is not a dequantized int8"):
        import_onnx(exported / "digits_mlp.onnx")


def test_a_dynamic_batch_is_refused(exported, tmp_path):
    model = onnx.load(str(exported / "digits_mlp_tensor.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    with pytest.raises(OnnxImportError, match="static input of batch 1"):
        import_onnx(path)


def test_a_file_that_is_not_onnx_is_a_typed_error(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"not a protobuf \xff\xfe")
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        import_onnx(path)


def test_the_onnx_packages_own_quantized_models_are_rejected_with_their_ops():
    # Quantized graphs the project did not write: the ONNX backend tests shipped in the onnx wheel, in
    # the QOperator format (QLinearConv, QLinearMatMul), which opML does not import yet.
    node_tests = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    for case, op in (
        ("test_qlinearconv", "QLinearConv"),
        ("test_qlinearmatmul_2D_int8_float32", "QLinearMatMul"),
    ):
        with pytest.raises(UnsupportedOnnxOpError, match=rf"unsupported ONNX ops: {op} \(y\); opML imports"):
            import_onnx(node_tests / case / "model.onnx")
