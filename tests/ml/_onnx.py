"""Shared by the ONNX import tests: ``models/digits_onnx.py`` as a module, and onnxruntime's int8 output
of a quantized graph."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
from _digits import MODELS

_spec = importlib.util.spec_from_file_location("digits_onnx", MODELS / "digits_onnx.py")
assert _spec is not None and _spec.loader is not None
digits_onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_onnx)


def onnx_int8_outputs(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's int8 output of the quantized model at ``path`` for each input row of ``x``."""
    model = onnx.load(str(path))
    dq = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scale, zero = np.float32(inits[dq.input[1]]), int(inits[dq.input[2]])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: row[None]})[0] for row in x])
    return (np.rint(out / scale) + zero).astype(np.int8)
