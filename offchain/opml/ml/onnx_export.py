"""A float layer stack (:mod:`opml.ml.quantize`'s :class:`Dense`, :class:`Conv2D`, :class:`MaxPool`,
:class:`Flatten`) as a float ONNX graph, and its static int8 quantization by onnxruntime: how a model
from another tool reaches ``opml model import`` (docs/ml-spec.md §11).

The graph is ONNX's layout: an image input is ``[1, C, H, W]`` (a flat input ``[1, K]``), convolutions
``Conv`` with ``[OC, C, KH, KW]`` weights, ``MaxPool``, ``Flatten`` (channels first, as ONNX flattens
``[1, C, H, W]``) and ``Gemm`` with ``transB = 1``; a layer's ReLU is a ``Relu`` node. Quantization is
``onnxruntime.quantization.quantize_static`` in the QDQ format with int8 activations and weights,
calibrated on the batch given (min–max), with ``reduce_range``: 7-bit weights. onnxruntime runs int8
activations as uint8 on x86, and its AVX2 kernels (``vpmaddubsw``) saturate the int16 sum of two
uint8·int8 products, so with full-range weights its output depends on the CPU (measured here: the
digits MLP differs from the exact integer result on 132 of 540 test images, by up to 5 in a hidden
value); 7-bit weights cannot saturate, and onnxruntime's output is then the exact integer result.
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


def float_onnx(layers: Sequence[Layer], input_shape: tuple[int, ...]) -> object:
    """The float ONNX model (an ``onnx.ModelProto``) of ``layers`` on one input of our channels-last
    ``input_shape`` (``(H, W, C)`` or ``(K,)``): input ``x`` ``[1, C, H, W]`` or ``[1, K]``, output
    ``logits``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    shape = (
        [1, input_shape[2], input_shape[0], input_shape[1]] if len(input_shape) == 3 else [1, *input_shape]
    )

    def const(name: str, value: npt.NDArray[np.float64]) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    x = "x"
    for n, layer in enumerate(layers):
        out = "logits" if n == len(layers) - 1 else f"t{n}"
        if isinstance(layer, Conv2D):
            w = const(f"w{n}", np.transpose(layer.w, (0, 3, 1, 2)))  # OHWC → OCHW
            pt, pl, pb, pr = layer.pads
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
            gemm = f"{out}_gemm" if layer.relu else out
            nodes.append(
                helper.make_node(
                    "Gemm", [x, const(f"w{n}", layer.w), const(f"b{n}", layer.b)], [gemm], transB=1
                )
            )
            if layer.relu:
                nodes.append(helper.make_node("Relu", [gemm], [out]))
        elif isinstance(layer, MaxPool):
            nodes.append(
                helper.make_node(
                    "MaxPool", [x], [out], kernel_shape=list(layer.kernel), strides=list(layer.strides)
                )
            )
        elif isinstance(layer, Flatten):
            nodes.append(helper.make_node("Flatten", [x], [out], axis=1))
        x = out
    graph = helper.make_graph(
        nodes,
        "opml_float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
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
    float_path: str | Path, out: str | Path, calibration: npt.NDArray[np.float32], *, per_channel: bool
) -> None:
    """Quantize the float ONNX model at ``float_path`` into ``out`` with onnxruntime (QDQ, int8
    activations and weights, per-tensor or per-channel weight scales), calibrated on ``calibration``,
    a batch of inputs in the model's input shape without its batch dimension."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batch(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rows = iter(np.asarray(calibration, np.float32))

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            row = next(self.rows, None)
            return None if row is None else {"x": row[None]}

    quantize_static(
        str(float_path),
        str(out),
        Batch(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        reduce_range=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
