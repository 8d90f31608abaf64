"""The fixed-point tables and constants of the LLaMA ops (docs/ml-spec.md §10), built offline by an
exporter and committed as parameter tensors like any weight (as :func:`opml.ml.quantize.softmax_table`).

Floats appear only here, where a table is made; the ops only read the integers.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

ONE = 1 << 30
"""1.0 in Q30."""


def rope_table(positions: int, hd: int, base: float) -> npt.NDArray[np.int32]:
    """``C[p, i] = (round(2^30 cos(p·θ_i)), round(2^30 sin(p·θ_i)))``, ``θ_i = base^(−2i/hd)``:
    int32 ``[positions, hd/2, 2]`` for ``rope``."""
    theta = base ** (-np.arange(hd // 2, dtype=np.float64) * 2 / hd)
    angle = np.arange(positions, dtype=np.float64)[:, None] * theta[None, :]
    table = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    out: npt.NDArray[np.int32] = np.rint(table * ONE).astype(np.int32)
    return out


def exp2_table() -> npt.NDArray[np.int32]:
    """``X[i] = round(2^30 · 2^(−i/1024))``, ``i = 0 … 1024``, for ``attention`` (``X[0] = 2^30``)."""
    out: npt.NDArray[np.int32] = np.rint(ONE * np.exp2(-np.arange(1025, dtype=np.float64) / 1024)).astype(
        np.int32
    )
    return out


def sigmoid_table() -> npt.NDArray[np.int32]:
    """``G[i] = round(2^30 · sigmoid(−16 + i/64))``, ``i = 0 … 2048``, for ``swiglu``."""
    x = -16 + np.arange(2049, dtype=np.float64) / 64
    out: npt.NDArray[np.int32] = np.rint(ONE / (1 + np.exp(-x))).astype(np.int32)
    return out


def attention_scale(hd: int) -> tuple[int, int]:
    """``(mul, sa)`` with ``mul · 2^−sa ≈ 2^16 · log2(e) / √hd`` and ``mul ∈ [2^22, 2^23)``: the logit
    scale ``1/√hd`` in ``attention``'s log2 units at ``2^−16``."""
    alpha = (1 << 16) * math.log2(math.e) / math.sqrt(hd)
    sa = 22 - math.floor(math.log2(alpha))
    return round(alpha * 2**sa), sa
