"""ONNX import (docs/ml-spec.md §11, issue 21): the digits models exported to ONNX and quantized by
onnxruntime (QDQ, int8) import into models whose native runs give onnxruntime's int8 output on every
test image, byte for byte, and whose node programs in the VM give the native keys; what opML does not
import is a typed error naming the node.

onnxruntime runs each quantized model as it is (its optimizer fuses the QDQ pairs into ``QLinearConv``
and ``QGemm``); its float output is ``(q − zero)·scale`` of the int8 output ``q``, which division
recovers exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _onnx import digits_onnx, onnx_int8_outputs
from _toolchain import build_toolchain

from opml.ml.errors import OnnxImportError, UnsupportedOnnxOpError
from opml.ml.format import Op
from opml.ml.onnx_import import import_onnx
from opml.ml.phase import EXIT_VALID, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    digits_onnx.export(out)
    return out


EXACT = [
    ("digits_mlp", "tensor"),
    ("digits_mlp", "channel"),
    ("digits_cnn", "tensor"),
    ("digits_cnn", "channel"),
]


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


def test_a_dead_unit_with_a_huge_bias_takes_the_per_row_bound(exported):
    # Per-channel quantization gives the MLP's dead hidden unit (all weights 0) a tiny weight scale, so
    # its int32 bias at x_scale·w_scale is about −2^31: past dense's tensor-wide bound
    # (K·255·128 + max|bias|), within the per-row one (255·Σ|W[r]| + |bias[r]|, ml-spec §4).
    model = import_onnx(exported / "digits_mlp_channel.onnx").model
    assert [n.params[1] for n in model.nodes if n.op is Op.DENSE] == [1, 0]


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
