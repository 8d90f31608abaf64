"""ONNX import of QOperator graphs (docs/ml-spec.md §11, issue 21): the digits models quantized by
onnxruntime in the QOperator format (``QLinearConv``, ``QLinearMatMul`` on int8 tensors) import into
models whose native runs give onnxruntime's int8 output on every test image, byte for byte, and whose
node programs in the VM give the native keys; what opML does not import is a typed error naming the node.

onnxruntime's QOperator quantizer writes a ``Gemm`` as ``com.microsoft``'s ``QGemm``, so the exported
QOperator models write each dense layer as a ``Conv`` over its whole input (``QLinearConv``); the
``QLinearMatMul`` models here are the digits models with their dense layers as bias-free ``MatMul`` (a
``MatMul`` + ``Add`` becomes ``QLinearMatMul`` + ``com.microsoft``'s ``QLinearAdd``).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _onnx import digits_onnx, onnx_int8_outputs
from _toolchain import build_toolchain

from opml.ml.errors import OnnxImportError
from opml.ml.onnx_export import quantize_onnx
from opml.ml.onnx_import import import_onnx
from opml.ml.phase import EXIT_VALID, node_program_setup, run_program
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore


def matmul_without_bias(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each ``Gemm`` (``transB = 1``) a ``MatMul`` by its transposed weights, bias dropped."""
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Gemm":
            w = onnx.numpy_helper.to_array(inits[node.input[1]])
            inits[node.input[1]].CopyFrom(
                onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), node.input[1])
            )
            node = onnx.helper.make_node("MatMul", list(node.input[:2]), list(node.output), name=node.name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_qop")
    digits_onnx.export(out, formats=("qoperator",))
    for name, shape in digits_onnx.SHAPES.items():
        layers = digits_onnx.float_layers(name)
        float_path = out / f"{name}_matmul.onnx"
        onnx.save(matmul_without_bias(digits_onnx.float_onnx(layers, shape)), str(float_path))
        for scales, per_channel in (("tensor", False), ("channel", True)):
            quantize_onnx(
                float_path,
                out / f"{name}_matmul_qop_{scales}.onnx",
                digits_onnx.float_inputs(name, "train")[: digits_onnx.CALIBRATION],
                per_channel=per_channel,
                quant_format="qoperator",
            )
    return out


CONV = ["QuantizeLinear", "QLinearConv", "QLinearConv", "Reshape", "DequantizeLinear"]
CNN = ["QuantizeLinear", "QLinearConv", "MaxPool", "QLinearConv", "MaxPool", "QLinearConv", "Reshape"]
CNN_MATMUL = ["QuantizeLinear", "QLinearConv", "MaxPool", "QLinearConv", "MaxPool", "DequantizeLinear"]
EXACT = {
    "digits_mlp_qop_tensor": ["Reshape", *CONV],
    "digits_mlp_qop_channel": ["Reshape", *CONV],
    "digits_cnn_qop_tensor": [*CNN, "DequantizeLinear"],
    "digits_cnn_qop_channel": [*CNN, "DequantizeLinear"],
    "digits_mlp_matmul_qop_tensor": ["QuantizeLinear", "QLinearMatMul", "QLinearMatMul", "DequantizeLinear"],
    "digits_mlp_matmul_qop_channel": ["QuantizeLinear", "QLinearMatMul", "QLinearMatMul", "DequantizeLinear"],
    "digits_cnn_matmul_qop_tensor": [
        *CNN_MATMUL,
        "Flatten",
        "QuantizeLinear",
        "QLinearMatMul",
        "DequantizeLinear",
    ],
    "digits_cnn_matmul_qop_channel": [
        *CNN_MATMUL,
        "Flatten",
        "QuantizeLinear",
        "QLinearMatMul",
        "DequantizeLinear",
    ],
}
"""Each QOperator model opML imports exactly, and the ops onnxruntime's quantizer writes (all in the
standard domain)."""


def _inputs(name: str, split: str) -> np.ndarray:
    return digits_onnx.float_inputs("digits_mlp" if "mlp" in name else "digits_cnn", split)


@pytest.mark.parametrize("name", EXACT)
def test_every_test_image_gives_onnxruntimes_int8_output(exported, name):
    path = exported / f"{name}.onnx"
    graph = onnx.load(str(path))
    assert [n.op_type for n in graph.graph.node] == EXACT[name]
    assert all(n.domain in ("", "ai.onnx") for n in graph.graph.node)
    imported = import_onnx(path)
    x = _inputs(name, "test")
    want = onnx_int8_outputs(path, x)
    got = np.stack(
        [run_model(imported.model, imported.quantize_input(row[None])).output.reshape(-1) for row in x]
    )
    mismatches = [i for i in range(len(x)) if not np.array_equal(got[i], want[i])]
    assert len(x) == 540 and mismatches == []


@pytest.mark.parametrize("name", EXACT)
def test_the_node_programs_give_the_native_keys(exported, name, tmp_path):
    build_toolchain()
    imported = import_onnx(exported / f"{name}.onnx")
    x = imported.quantize_input(_inputs(name, "test")[:1])
    run = run_model(imported.model, x)
    store = PreimageStore(tmp_path)
    for k in range(len(imported.model.nodes)):
        result = run_program(node_program_setup(imported.model, x, k, run.state(k), store, run=run))
        assert result.exit_code == EXIT_VALID and result.keys == [run.keys[k + 1]]


def _edited(exported, tmp_path, edit) -> str:
    """The per-tensor CNN with ``edit(model, first QLinearConv)`` applied, saved; its path."""
    model = onnx.load(str(exported / "digits_cnn_qop_tensor.onnx"))
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    edit(model, conv)
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return str(path)


def _set_init(model, name: str, value: np.ndarray) -> None:
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(onnx.numpy_helper.from_array(value, name))


def test_a_nonzero_weight_zero_point_is_refused_with_its_node(exported, tmp_path):
    def edit(model, conv):
        _set_init(model, conv.input[5], np.int8(3))

    with pytest.raises(
        OnnxImportError, match=r"QLinearConv node 't0_conv_quantized': weights must be int8 with zero point 0"
    ):
        import_onnx(_edited(exported, tmp_path, edit))


def test_a_uint8_activation_is_refused_with_its_node(exported, tmp_path):
    def edit(model, conv):  # the first conv's output as uint8 (zero point −128 + 128)
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.uint8(0), "y_zero_u8"))
        conv.input[7] = "y_zero_u8"

    with pytest.raises(
        OnnxImportError,
        match=r"QLinearConv node 't0_conv_quantized': zero point 'y_zero_u8' of type uint8: opML imports",
    ):
        import_onnx(_edited(exported, tmp_path, edit))


def test_a_uint8_graph_input_is_refused_with_its_quantize_node(exported, tmp_path):
    def edit(model, conv):
        q = model.graph.node[0]
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.uint8(128), "x_zero_u8"))
        q.input[2] = "x_zero_u8"

    with pytest.raises(
        OnnxImportError, match=r"QuantizeLinear node 'x_QuantizeLinear': zero point 'x_zero_u8' of type uint8"
    ):
        import_onnx(_edited(exported, tmp_path, edit))


@pytest.mark.parametrize("position", [4, 6])  # w_scale, y_scale
def test_a_scale_that_is_a_graph_input_is_refused_with_its_node(exported, tmp_path, position):
    def edit(model, conv):  # the scale becomes a graph input with the same value (no initializer)
        name = f"{conv.input[position]}_fed"
        conv.input[position] = name
        model.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, []))

    with pytest.raises(OnnxImportError, match=r"'\w+_fed' \(read by QLinearConv node 't0_conv_quantized'\)"):
        import_onnx(_edited(exported, tmp_path, edit))


def test_an_x_scale_other_than_the_tensors_is_refused_with_its_node(exported, tmp_path):
    def edit(model, conv):
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(0.5), "other_scale"))
        conv.input[1] = "other_scale"

    with pytest.raises(
        OnnxImportError, match=r"QLinearConv node 't0_conv_quantized': x's scale and zero point"
    ):
        import_onnx(_edited(exported, tmp_path, edit))
