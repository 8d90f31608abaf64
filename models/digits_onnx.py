"""The digits models as ONNX: float graphs of the trained weights (``digits_float.npz``) and their int8
quantization by onnxruntime (QDQ and QOperator, calibrated on the training split), for
``opml model import``.

    .venv/bin/python models/digits_onnx.py OUT_DIR        (from the repository root)

Writes ``digits_mlp.onnx`` and ``digits_cnn.onnx`` (float) and ``digits_mlp_tensor.onnx``,
``digits_cnn_tensor.onnx`` (per-tensor weight scales), ``digits_mlp_channel.onnx``,
``digits_cnn_channel.onnx`` (per-channel) into OUT_DIR; in the QOperator format, from float graphs that
write each dense layer as a ``Conv`` (``digits_mlp_qop.onnx``, ``digits_cnn_qop.onnx``: onnxruntime's
QOperator form of a ``Gemm`` is ``com.microsoft``'s ``QGemm``, of a ``Conv`` the standard ``QLinearConv``),
``digits_mlp_qop_tensor.onnx``, ``digits_cnn_qop_tensor.onnx``, ``digits_mlp_qop_channel.onnx`` and
``digits_cnn_qop_channel.onnx``; and, for ``opml model quantize`` and ``opml task submit``, each model's
calibration inputs ``digits_mlp_calibration.npy`` (the 300 training images, float, ``[300, 64]``) and
first test image ``digits_mlp_test0.npy`` (``[1, 64]``), the same for the CNN. Nothing here is
committed: the float weights and onnxruntime's quantizer make the same files again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from opml.ml.onnx_export import float_onnx, quantize_onnx
from opml.ml.quantize import Conv2D, Dense, Flatten, Layer, MaxPool

HERE = Path(__file__).resolve().parent
SHAPES = {"digits_mlp": (64,), "digits_cnn": (8, 8, 1)}
CALIBRATION = 300
"""Training images the quantizer calibrates on."""


def float_layers(name: str) -> list[Layer]:
    """The trained float layers of ``name`` (as models/train_digits.py builds them)."""
    z = np.load(HERE / "digits_float.npz")

    def p(n: int, a: str) -> np.ndarray:
        return z[f"{name}/{n}/{a}"]

    if name == "digits_mlp":
        return [Dense(p(0, "w"), p(0, "b")), Dense(p(1, "w"), p(1, "b"), relu=False)]
    return [
        Conv2D(p(0, "w"), p(0, "b"), pads=(1, 1, 1, 1)),
        MaxPool((2, 2), (2, 2)),
        Conv2D(p(2, "w"), p(2, "b"), pads=(1, 1, 1, 1)),
        MaxPool((2, 2), (2, 2)),
        Flatten(),
        Dense(p(5, "w"), p(5, "b"), relu=False),
    ]


def float_inputs(name: str, split: str) -> np.ndarray:
    """The float inputs (pixels / 16) of the ``train`` or ``test`` split in the ONNX model's input
    shape, batch first: ``[B, 64]`` or ``[B, 1, 8, 8]``."""
    digits = load_digits()
    idx = np.arange(len(digits.target))
    train, test = train_test_split(idx, test_size=0.3, random_state=0, stratify=digits.target)
    x = digits.images[train if split == "train" else test].astype(np.float32) / 16
    return x.reshape(len(x), 64) if name == "digits_mlp" else x.reshape(len(x), 1, 8, 8)


FORMATS = {"qdq": ("", "gemm"), "qoperator": ("_qop", "conv")}
"""Each quantization format's file-name infix and the float graph's dense layers."""


def export(out: Path, formats: tuple[str, ...] = ("qdq", "qoperator")) -> list[Path]:
    """Write both models' calibration and test inputs, and their float and quantized ONNX files in each
    of ``formats``, to ``out``; return the quantized files."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    for name in SHAPES:
        np.save(out / f"{name}_calibration.npy", float_inputs(name, "train")[:CALIBRATION])
        np.save(out / f"{name}_test0.npy", float_inputs(name, "test")[:1])
    written = []
    for quant_format in formats:
        infix, dense = FORMATS[quant_format]
        for name, shape in SHAPES.items():
            float_path = out / f"{name}{infix}.onnx"
            onnx.save(float_onnx(float_layers(name), shape, dense=dense), str(float_path))
            for scales, per_channel in (("tensor", False), ("channel", True)):
                path = out / f"{name}{infix}_{scales}.onnx"
                quantize_onnx(
                    float_path,
                    path,
                    float_inputs(name, "train")[:CALIBRATION],
                    per_channel=per_channel,
                    quant_format=quant_format,
                )
                written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for path in export(Path(sys.argv[1])):
        print(path)
