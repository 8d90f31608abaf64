"""ONNX graphs the project did not write (issue 21, acceptance 2), all shipped in the onnx 1.18.0 wheel
(``onnx/backend/test/data``):

- **PyTorch exports** (``pytorch-converted``: written by PyTorch 0.3's ``torch.onnx`` exporter, float, opset
  6, batch 2 or 4). Made batch 1 and opset 13 (``onnx.version_converter``), quantized by onnxruntime
  (QDQ, per tensor and per channel), they import and equal onnxruntime's int8 output on 540 seeded
  inputs, byte for byte. The strided convolution whose windows leave the input's last row unread is
  refused, naming the node.
- **Quantized backend tests** (``node``): the integer ops of onnxruntime's dynamic quantization
  (``MatMulInteger``, ``ConvInteger``, ``DynamicQuantizeLinear``) are refused with the unsupported ops
  listed; the QOperator ones (``QLinearMatMul``, ``QLinearConv``) with every operand a graph input are
  refused with each input and the node that reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from _onnx import onnx_int8_outputs
from onnx import version_converter

from opml.ml.errors import OnnxImportError, UnsupportedOnnxOpError
from opml.ml.onnx_export import quantize_onnx
from opml.ml.onnx_import import import_onnx
from opml.ml.runner import run_model

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
OPSET = 13
"""The least opset of onnxruntime's per-channel quantization."""


def pytorch_export(case: str, out: Path) -> Path:
    """The wheel's PyTorch export ``case`` at batch 1 and opset 13, saved under ``out``."""
    model = version_converter.convert_version(
        onnx.load(str(DATA / "pytorch-converted" / case / "model.onnx")), OPSET
    )
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]  # IR 3 lists initializers as inputs
    del graph.input[:]
    graph.input.extend(inputs)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path = out / f"{case}.onnx"
    onnx.save(model, str(path))
    return path


def quantized(case: str, per_channel: bool, out: Path) -> Path:
    float_path = pytorch_export(case, out)
    shape = [d.dim_value for d in onnx.load(str(float_path)).graph.input[0].type.tensor_type.shape.dim]
    calibration = np.random.default_rng(0).uniform(-1, 1, (64, *shape[1:])).astype(np.float32)
    path = out / f"{case}_{'channel' if per_channel else 'tensor'}.onnx"
    quantize_onnx(float_path, path, calibration, per_channel=per_channel)
    return path


@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
@pytest.mark.parametrize("case", ["test_Conv2d", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Linear"])
def test_a_pytorch_export_quantized_by_onnxruntime_is_byte_exact(case, per_channel, tmp_path):
    path = quantized(case, per_channel, tmp_path)
    imported = import_onnx(path)
    graph = onnx.load(str(path)).graph
    output = next(n for n in graph.node if n.output[0] == graph.output[0].name).input[0]  # its int8 tensor
    x = np.random.default_rng(1).uniform(-1.2, 1.2, (540, *imported.input.shape[1:])).astype(np.float32)
    want = onnx_int8_outputs(path, x)
    mismatches = [
        i
        for i, row in enumerate(x)
        if not np.array_equal(
            run_model(imported.model, imported.quantize_input(row[None])).output,
            imported.ours(output, want[i]),
        )
    ]
    assert mismatches == []


def test_a_strided_window_that_leaves_rows_unread_is_refused_with_its_node(tmp_path):
    # 6 rows, a 3×3 window at stride 2, no padding: ONNX floors the output to 2 rows and never reads row 6
    with pytest.raises(
        OnnxImportError, match=r"Conv node '\w+': the last rows of the input are outside every"
    ):
        import_onnx(quantized("test_Conv2d_strided", False, tmp_path))


@pytest.mark.parametrize(
    "case, op",
    [
        ("test_matmulinteger", "MatMulInteger"),
        ("test_convinteger_with_padding", "ConvInteger"),
        ("test_dynamicquantizelinear", "DynamicQuantizeLinear"),
    ],
)
def test_dynamic_quantizations_integer_ops_are_refused_with_their_ops_listed(case, op):
    with pytest.raises(UnsupportedOnnxOpError, match=rf"^unsupported ONNX ops: {op} \(\w+\); opML imports "):
        import_onnx(DATA / "node" / case / "model.onnx")


@pytest.mark.parametrize("case", ["test_qlinearconv", "test_qlinearmatmul_2D_int8_float32"])
def test_qoperator_tests_with_their_operands_as_inputs_are_refused_with_each_input(case):
    with pytest.raises(OnnxImportError, match=r"the graph has 8 inputs: .*\(read by QLinear\w+ node 'y'\)"):
        import_onnx(DATA / "node" / case / "model.onnx")
