"""Float weights to GGUF ``q4_1`` / ``q8_0`` blocks, as ggml's reference quantizers do it (for exporters
and tests; the format itself never quantizes, it takes a GGUF's bytes as they are).

ggml (``quantize_row_q4_1_ref``, ``quantize_row_q8_0_ref``), in float32:

- ``q4_1``: per block ``min``, ``max``; ``d = (max − min)/15``; ``q = min(15, trunc((x − min)/d + 0.5))``;
  fp16 ``d`` and ``m = min``; byte ``j`` holds ``q_j | q_{j+16} << 4``.
- ``q8_0``: ``d = max|x|/127``; ``q = round(x/d)``; fp16 ``d``.

:func:`dequantize` gives the float64 weights a block tensor stands for (``q·d + m``), the reference
that tests measure integer results against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.blocks import BLOCK, block_bytes

F64 = npt.NDArray[np.float64]


def _blocks(w: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    w = np.asarray(w, dtype=np.float32)
    m, k = w.shape
    if k % BLOCK:
        raise ValueError(f"rows of {k} weights are not whole blocks of 32")
    return w.reshape(m, k // BLOCK, BLOCK)


def _fp16_bits(v: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    return v.astype(np.float16)[..., None].view(np.uint8)


def quantize_q4_1(w: npt.NDArray[Any]) -> bytes:
    """``[M, K]`` float weights as ``q4_1`` blocks (``M·K/32·20`` bytes)."""
    x = _blocks(w)
    lo = x.min(axis=-1)
    hi = x.max(axis=-1)
    d = (hi - lo) / np.float32(15)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), np.float32(0)).astype(np.float32)
    q = np.minimum(15, ((x - lo[..., None]) * inv[..., None] + np.float32(0.5)).astype(np.int32))
    nib = (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)
    out = np.concatenate([_fp16_bits(d), _fp16_bits(lo), nib], axis=-1)
    return bytes(out.tobytes())


def quantize_q8_0(w: npt.NDArray[Any]) -> bytes:
    """``[M, K]`` float weights as ``q8_0`` blocks (``M·K/32·34`` bytes)."""
    x = _blocks(w)
    d = np.abs(x).max(axis=-1) / np.float32(127)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), np.float32(0)).astype(np.float32)
    v = x * inv[..., None]
    whole = np.floor(np.abs(v))
    q = (np.sign(v) * (whole + (np.abs(v) - whole >= np.float32(0.5)))).astype(np.int8)  # C's roundf
    q = q.view(np.uint8)
    return bytes(np.concatenate([_fp16_bits(d), q], axis=-1).tobytes())


def dequantize(data: bytes, is_q4_1: bool, k: int) -> F64:
    """The float64 ``[M, K]`` weights of a block tensor: ``q·d + m`` (``q4_1``) or ``q·d`` (``q8_0``)."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, k // BLOCK, block_bytes(is_q4_1))
    d = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    if is_q4_1:
        m = raw[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        nib = raw[..., 4:20]
        q = np.concatenate([nib & 15, nib >> 4], axis=-1).astype(np.float64)
        w = q * d[..., None] + m[..., None]
    else:
        w = raw[..., 2:34].view(np.int8).astype(np.float64) * d[..., None]
    out: F64 = w.reshape(w.shape[0], k)
    return out
