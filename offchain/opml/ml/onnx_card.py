"""The card of a model imported from ONNX (docs/ml-spec.md §11.3): ``M.onnx.json`` next to ``M.opml``
says how the ONNX graph's float input becomes the model's int8 input, so that ``opml model run`` and
``opml task submit`` take the float tensor the ONNX graph takes (a ``.npy`` of float dtype).

The quantization is the graph's first ``QuantizeLinear``, as onnxruntime computes it: ``x / scale`` in
float32, rounded half to even, plus the zero point, saturated to int8; then ONNX's ``[1, C, H, W]``
order becomes our channels-last ``(H, W, C)``. The card holds no model data: the commitment covers
the int8 model only, and anyone can check a task's int8 input against the float one with the card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.errors import InvalidInputError, ModelFormatError
from opml.ml.format import TensorDesc, check_value
from opml.ml.runner import load_input, read_npy

CARD_SUFFIX = ".onnx.json"


def chw_perm(c: int, h: int, w: int) -> npt.NDArray[np.int64]:
    """ONNX's row-major index (``[C, H, W]``) of each element of our ``(H, W, C)`` order."""
    return np.arange(c * h * w, dtype=np.int64).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclass(frozen=True)
class OnnxInput:
    """The graph's float input ``name`` of ONNX shape ``shape``, quantized at ``scale`` (a float32) and
    ``zero`` into an int8 tensor of ONNX shape ``quantized_shape`` (``shape`` or a reshape of it)."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero: int
    quantized_shape: tuple[int, ...]

    @property
    def perm(self) -> npt.NDArray[np.int64] | None:
        """Our element ``j`` is ONNX's (row-major) element ``perm[j]`` (``None``: the same)."""
        if len(self.quantized_shape) != 4:
            return None
        _, c, h, w = self.quantized_shape
        return chw_perm(c, h, w)

    def quantize(self, x: npt.ArrayLike, desc: TensorDesc) -> npt.NDArray[np.int8]:
        """The model's int8 input (of ``desc``) for the float graph input ``x``."""
        value = np.asarray(x, np.float32)
        if value.shape not in (self.shape, self.shape[1:]):  # with or without the batch of 1
            raise InvalidInputError(
                f"a float input of shape {list(value.shape)}: the ONNX input {self.name!r} is "
                f"{list(self.shape)}"
            )
        q = np.rint(value / np.float32(self.scale)) + self.zero
        flat = np.clip(q, -128, 127).astype(np.int8).reshape(-1)
        perm = self.perm
        out: npt.NDArray[np.int8] = (flat if perm is None else flat[perm]).reshape(desc.np_shape)
        return out

    def formula(self) -> str:
        """The quantization in one line, for people."""
        layout = ", channels last" if self.perm is not None else ""
        return f"q = clamp(round_half_even(x / {self.scale!r}) + {self.zero}, −128, 127){layout}"

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "shape": list(self.shape),
            "scale": self.scale,
            "zero_point": self.zero,
            "quantized_shape": list(self.quantized_shape),
        }


def card_path(model_path: str | Path) -> Path:
    """Where the ONNX card of the model file ``model_path`` is."""
    path = Path(model_path)
    return path.with_name(path.stem + CARD_SUFFIX)


def write_card(model_path: str | Path, onnx_input: OnnxInput) -> Path:
    path = card_path(model_path)
    path.write_text(json.dumps(onnx_input.to_json(), indent=1) + "\n")
    return path


def read_card(model_path: str | Path) -> OnnxInput | None:
    """The card next to ``model_path``, or ``None`` when there is none; a malformed card is a
    :class:`ModelFormatError`."""
    path = card_path(model_path)
    if not path.exists():
        return None
    try:
        j = json.loads(path.read_text())
        card = OnnxInput(
            str(j["input"]),
            tuple(int(d) for d in j["shape"]),
            float(np.float32(j["scale"])),
            int(j["zero_point"]),
            tuple(int(d) for d in j["quantized_shape"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{path}: not an ONNX card ({exc!r}); import the model again") from None
    if card.scale != j["scale"] or not card.scale > 0 or not -128 <= card.zero <= 127:
        raise ModelFormatError(f"{path}: the scale must be a positive float32, the zero point an int8")
    if int(np.prod(card.shape)) != int(np.prod(card.quantized_shape)):
        raise ModelFormatError(f"{path}: shape and quantized_shape differ in size")
    return card


def model_input(input_file: str | Path, model_path: str | Path, desc: TensorDesc) -> npt.NDArray[Any]:
    """The model's input from ``input_file``: a ``.npy`` of float dtype is quantized with the model's
    ONNX card (an :class:`InvalidInputError` without one); anything else as :func:`load_input` reads it."""
    path = Path(input_file)
    if path.suffix.lower() != ".npy":
        return load_input(path, desc)
    value = read_npy(path)
    if value.dtype.kind != "f":
        return check_value(value, desc, path.name)
    card = read_card(model_path)
    if card is None:
        raise InvalidInputError(
            f"{path.name}: a float input, and {model_path} has no ONNX card "
            f"({card_path(model_path).name}) to quantize it: give the int8 input {desc}"
        )
    return card.quantize(value, desc)
