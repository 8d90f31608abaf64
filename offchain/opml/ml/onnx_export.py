"""A float layer stack (:mod:`opml.ml.quantize`'s :class:`Dense`, :class:`Conv2D`, :class:`MaxPool`,
:class:`Flatten`) as a float ONNX graph, and its static int8 quantization by onnxruntime: how a model
from another tool reaches ``opml model import`` (docs/ml-spec.md §11).

The graph is ONNX's layout: an image input is ``[1, C, H, W]`` (a flat input ``[1, K]``), convolutions
``Conv`` with ``[OC, C, KH, KW]`` weights, ``MaxPool``, ``Flatten`` (channels first, as ONNX flattens
``[1, C, H, W]``) and ``Gemm`` with ``transB = 1``; a layer's ReLU is a ``Relu`` node. With
``dense="conv"`` a ``Dense`` is instead a ``Conv`` whose kernel covers its whole input (``[1, C, H, W]``
in place of a ``Flatten``, which is then not written, or ``[1, K, 1, 1]`` after a ``Reshape``), and a
``Reshape`` to ``[1, M]`` ends the graph: the same function, which onnxruntime's QOperator quantizer
turns into the standard domain's ``QLinearConv``, where it turns a ``Gemm`` into ``com.microsoft``'s
``QGemm`` (and ``MatMul`` + ``Add`` into ``QLinearMatMul`` + ``com.microsoft``'s ``QLinearAdd``).

Quantization is ``onnxruntime.quantization.quantize_static`` in the QDQ (or QOperator) format with int8
activations and weights, calibrated on the batch given (min–max), with ``reduce_range``: 7-bit weights.
onnxruntime runs int8 activations as uint8 on x86, and its AVX2 kernels (``vpmaddubsw``) saturate the
int16 sum of two uint8·int8 products, so with full-range weights its output depends on the CPU
(measured here: the digits MLP differs from the exact integer result on 132 of 540 test images, by up to
5 in a hidden value); 7-bit weights cannot saturate, and onnxruntime's output is then the exact integer
result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from opml.ml.quantize import Conv2D, Dense, Flatten, Layer, MaxPool

OPSET = 17
IR_VERSION = 9
"""The newest ONNX IR that the pinned onnxruntime loads."""


def float_onnx(layers: Sequence[Layer], input_shape: tuple[int, ...], *, dense: str = "gemm") -> object:
    """The float ONNX model (an ``onnx.ModelProto``) of ``layers`` on one input of our channels-last
    ``input_shape`` (``(H, W, C)`` or ``(K,)``): input ``x`` ``[1, C, H, W]`` or ``[1, K]``, output
    ``logits``; ``dense`` is ``"gemm"`` (a ``Dense`` is a ``Gemm``) or ``"conv"`` (a ``Conv`` over its
    whole input, see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    if dense not in ("gemm", "conv"):
        raise ValueError(f"dense must be 'gemm' or 'conv', not {dense!r}")
    input_dims = (
        [1, input_shape[2], input_shape[0], input_shape[1]] if len(input_shape) == 3 else [1, *input_shape]
    )
    shape = list(input_dims)  # ONNX's shape of the tensor x, layer by layer

    def const(name: str, value: npt.NDArray[np.float64]) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def reshape(x: str, dims: list[int], out: str) -> None:
        inits.append(numpy_helper.from_array(np.array(dims, np.int64), f"{out}_shape"))
        nodes.append(helper.make_node("Reshape", [x, f"{out}_shape"], [out]))

    x = "x"
    for n, layer in enumerate(layers):
        out = "logits" if n == len(layers) - 1 else f"t{n}"
        if isinstance(layer, Dense) and dense == "conv":
            if len(shape) == 2:  # [1, K] → [1, K, 1, 1]
                reshape(x, [*shape, 1, 1], f"t{n}_in")
                x, shape = f"t{n}_in", [*shape, 1, 1]
            _, c, h, wd = shape
            m = layer.w.shape[0]
            # Flatten's order is ONNX's (c, h, w), the row-major order of a Conv weight's [C, H, W]
            wc = const(f"w{n}", layer.w.reshape(m, c, h, wd))
            conv = f"{out}_conv" if layer.relu or out == "logits" else out
            nodes.append(
                helper.make_node("Conv", [x, wc, const(f"b{n}", layer.b)], [conv], kernel_shape=[h, wd])
            )
            if layer.relu:
                relu = f"{out}_relu" if out == "logits" else out
                nodes.append(helper.make_node("Relu", [conv], [relu]))
                conv = relu
            if out == "logits":
                reshape(conv, [1, m], out)
            shape = [1, m, 1, 1]
        elif isinstance(layer, Conv2D):
            w = const(f"w{n}", np.transpose(layer.w, (0, 3, 1, 2)))  # OHWC → OCHW
            pt, pl, pb, pr = layer.pads
            kh, kw = layer.w.shape[1:3]
            sh, sw = layer.strides
            shape = [
                1,
                layer.w.shape[0],
                (shape[2] + pt + pb - kh) // sh + 1,
                (shape[3] + pl + pr - kw) // sw + 1,
            ]
            conv = f"{out}_conv" if layer.relu else out
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, w, const(f"b{n}", layer.b)],
                    [conv],
                    pads=[pt, pl, pb, pr],
                    strides=list(layer.strides),
                    kernel_shape=list(layer.w.shape[1:3]),
                )
            )
            if layer.relu:
                nodes.append(helper.make_node("Relu", [conv], [out]))
        elif isinstance(layer, Dense):
            shape = [1, layer.w.shape[0]]
            gemm = f"{out}_gemm" if layer.relu else out
            nodes.append(
                helper.make_node(
                    "Gemm", [x, const(f"w{n}", layer.w), const(f"b{n}", layer.b)], [gemm], transB=1
                )
            )
            if layer.relu:
                nodes.append(helper.make_node("Relu", [gemm], [out]))
        elif isinstance(layer, MaxPool):
            (kh, kw), (sh, sw) = layer.kernel, layer.strides
            shape = [*shape[:2], (shape[2] - kh) // sh + 1, (shape[3] - kw) // sw + 1]
            nodes.append(
                helper.make_node(
                    "MaxPool", [x], [out], kernel_shape=list(layer.kernel), strides=list(layer.strides)
                )
            )
        elif isinstance(layer, Flatten):
            if dense == "conv":  # the next Dense is a Conv over the whole [1, C, H, W]
                continue
            nodes.append(helper.make_node("Flatten", [x], [out], axis=1))
            shape = [1, int(np.prod(shape[1:]))]
        x = out
    graph = helper.make_graph(
        nodes,
        "opml_float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, _outputs(layers[-1])])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _outputs(last: Layer) -> int:
    if not isinstance(last, Dense):
        raise ValueError("the last layer must be a Dense layer (its logits are the model's output)")
    return int(last.w.shape[0])


def quantize_onnx(
    float_path: str | Path,
    out: str | Path,
    calibration: npt.NDArray[np.float32],
    *,
    per_channel: bool,
    quant_format: str = "qdq",
) -> None:
    """Quantize the float ONNX model at ``float_path`` into ``out`` with onnxruntime (``quant_format``
    ``"qdq"`` or ``"qoperator"``, int8 activations and weights, per-tensor or per-channel weight scales),
    calibrated on ``calibration``, a batch of inputs in the model's input shape without its batch
    dimension."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(float_path)).graph.input[0].name

    class Batch(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rows = iter(np.asarray(calibration, np.float32))

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            row = next(self.rows, None)
            return None if row is None else {input_name: row[None]}

    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    if quant_format not in formats:
        raise ValueError(f"quant_format must be 'qdq' or 'qoperator', not {quant_format!r}")
    quantize_static(
        str(float_path),
        str(out),
        Batch(),
        quant_format=formats[quant_format],
        per_channel=per_channel,
        reduce_range=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
