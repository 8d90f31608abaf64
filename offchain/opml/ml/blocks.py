"""GGUF weight blocks as integers (docs/ml-spec.md §1): ``q4_1`` and ``q8_0`` tensors decoded without
any floating point.

A block tensor of shape ``[M, K]`` holds ``M`` rows of ``K / 32`` blocks. Each fp16 scale ``h`` becomes
the integer ``D = h·2^F`` by its bits (:func:`scale_ints`), so a weight times ``2^F`` is exactly
``q·D + M`` (``q4_1``) or ``q·D`` (``q8_0``). A scale that is Inf, NaN or subnormal is a
:class:`~opml.ml.errors.BadScaleError`; one that is not a multiple of ``2^−F`` or has ``|D| ≥ 2^24`` a
:class:`~opml.ml.errors.ScaleRangeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.errors import BadScaleError, ScaleRangeError

BLOCK = 32
"""Weights per block."""
Q4_1_BYTES = 20
"""fp16 ``d``, fp16 ``m``, 16 bytes of nibbles."""
Q8_0_BYTES = 34
"""fp16 ``d``, 32 int8."""
MAX_F = 24
"""Largest scale exponent ``F``: every finite fp16 is a multiple of ``2^−24``."""
SCALE_LIMIT = 1 << 24
"""``|D| < 2^24`` keeps a block's contribution below ``2^51`` (ml-spec §10.2)."""

I64 = np.int64


def block_bytes(is_q4_1: bool) -> int:
    return Q4_1_BYTES if is_q4_1 else Q8_0_BYTES


def scale_ints(bits: npt.NDArray[Any], f: int, where: str) -> npt.NDArray[np.int64]:
    """The integers ``D = h·2^F`` of fp16 scales given by their u16 ``bits`` (any shape), from the bits:
    ``(−1)^s·(1024 + frac)·2^(E − 25 + F)`` for ``1 ≤ E ≤ 30``, 0 for ±0.

    A 1B model has 67 M scales: they are looked up in the table of all 2^16 bit patterns at ``F``
    (:func:`_scale_table`), and only a tensor with a bad one is decoded again to name the error."""
    index = _checked_bits(bits, f, where)
    out: npt.NDArray[np.int64] = _scale_table(f)[0][index]
    return out


def _checked_bits(bits: npt.NDArray[Any], f: int, where: str) -> npt.NDArray[np.uint16]:
    """``bits`` as u16, once every scale they encode is valid at ``F`` (else the error of the first
    rule broken)."""
    index = np.asarray(bits).astype(np.uint16, copy=False)
    if not _scale_table(f)[1][index].all():
        _decode_scales(index.astype(I64), f, where)  # raises
        raise AssertionError("a bad scale passed the decoder")  # pragma: no cover
    return index


@lru_cache(maxsize=MAX_F + 1)
def _scale_table(f: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """``D`` of every fp16 bit pattern at ``F`` (0 where it breaks a rule), and which ones are valid:
    :func:`_decode_scales`'s rules without raising."""
    h = np.arange(1 << 16, dtype=I64)
    exp = (h >> 10) & 31
    frac = h & 1023
    zero = exp == 0
    sig = 1024 + frac
    n = exp - 25 + f
    right = np.maximum(-n, 0)
    mag = np.where(zero, 0, np.where(n >= 0, sig << np.maximum(n, 0), sig >> right))
    inexact = ~zero & (n < 0) & ((sig & ((I64(1) << right) - 1)) != 0)
    ok = (exp != 31) & ~(zero & (frac != 0)) & ~inexact & (mag < SCALE_LIMIT)
    values = np.where(ok, np.where(h >> 15 == 1, -mag, mag), 0)
    values.flags.writeable = False
    ok.flags.writeable = False
    return values, ok


def _decode_scales(h: npt.NDArray[np.int64], f: int, where: str) -> npt.NDArray[np.int64]:
    """:func:`scale_ints` by the formula, raising on the first rule broken (in the rules' order)."""
    sign = h >> 15
    exp = (h >> 10) & 31
    frac = h & 1023
    if np.any(exp == 31):
        raise BadScaleError(f"{where}: an fp16 scale is Inf or NaN (bits 0x{int(h[exp == 31][0]):04x})")
    zero = exp == 0
    if np.any(zero & (frac != 0)):
        bad = int(h[zero & (frac != 0)][0])
        raise BadScaleError(f"{where}: an fp16 scale is subnormal (bits 0x{bad:04x})")
    sig = 1024 + frac
    n = exp - 25 + f  # D = sig · 2^n
    right = np.maximum(-n, 0)
    inexact = ~zero & (n < 0) & ((sig & ((I64(1) << right) - 1)) != 0)
    if np.any(inexact):
        raise ScaleRangeError(f"{where}: an fp16 scale is not a multiple of 2^-{f}: raise F")
    mag = np.where(n >= 0, sig << np.maximum(n, 0), sig >> right)
    mag = np.where(zero, 0, mag)
    if np.any(mag >= SCALE_LIMIT):
        raise ScaleRangeError(f"{where}: an fp16 scale times 2^{f} is 2^24 or more: lower F")
    out: npt.NDArray[np.int64] = np.where(sign == 1, -mag, mag)
    return out


@dataclass(frozen=True)
class BlockRows:
    """Rows of a block tensor as integers: ``w[r, 32b + j]·2^F = q[r, b, j]·d[r, b] + m[r, b]``."""

    q: npt.NDArray[Any]
    """``[rows, nb, 32]``: uint8 in [0, 15] (``q4_1``) or int8 (``q8_0``)."""
    d: npt.NDArray[np.int64]
    """``[rows, nb]`` integer scales ``D``."""
    m: npt.NDArray[np.int64] | None
    """``[rows, nb]`` integer offsets ``M`` (``q4_1``), ``None`` for ``q8_0``."""


def _u16(raw: npt.NDArray[np.uint8], offset: int) -> npt.NDArray[np.uint16]:
    """The little-endian u16 at byte ``offset`` of each block of ``raw`` ``[..., bs]``."""
    return np.ascontiguousarray(raw[..., offset : offset + 2]).view("<u2")[..., 0]


def row_blocks(data: bytes | memoryview, is_q4_1: bool, k: int) -> npt.NDArray[np.uint8]:
    """The tensor's bytes as ``[rows, K/32, bs]`` blocks: a read-only view, no copy."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, k // BLOCK, block_bytes(is_q4_1))
    raw.flags.writeable = False
    return raw


def block_scales(
    raw: npt.NDArray[np.uint8], is_q4_1: bool, f: int, where: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """``(D, M)`` of blocks ``raw`` ``[..., bs]`` (``M`` ``None`` for ``q8_0``), checked as
    :func:`scale_ints` checks them."""
    d = scale_ints(_u16(raw, 0), f, where)
    m = scale_ints(_u16(raw, 2), f, where) if is_q4_1 else None
    return d, m


def decode_rows(
    data: bytes | memoryview, is_q4_1: bool, k: int, rows: npt.NDArray[Any] | slice, f: int, where: str
) -> BlockRows:
    """Rows ``rows`` (indices or a slice) of a block tensor whose rows hold ``k`` weights."""
    raw = row_blocks(data, is_q4_1, k)[rows]
    d, m = block_scales(raw, is_q4_1, f, where)
    if m is not None:
        nib = raw[..., 4:20]
        q = np.concatenate([nib & 15, nib >> 4], axis=-1)  # byte j: weight j low, weight j + 16 high
        return BlockRows(q, d, m)
    return BlockRows(raw[..., 2:34].view(np.int8), d, None)


def check_scales(data: bytes | memoryview, is_q4_1: bool, f: int, where: str) -> None:
    """Every scale of the tensor is finite, normal or zero, a multiple of ``2^−F`` and below ``2^24``
    after scaling (ml-spec §1); raises otherwise."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, block_bytes(is_q4_1))
    _checked_bits(_u16(raw, 0), f, where)
    if is_q4_1:
        _checked_bits(_u16(raw, 2), f, where)


def smallest_f(data: bytes, is_q4_1: bool) -> int:
    """The smallest ``F ∈ [0, 24]`` at which every scale of a block tensor is an integer: for a normal
    scale ``(1024 + frac)·2^(E − 25)`` with ``z`` trailing zero bits in ``1024 + frac``, ``F ≥ 25 − E − z``.
    (Whether ``|D| < 2^24`` holds there is :func:`check_scales`'s to say.)"""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, block_bytes(is_q4_1))
    fields = [_u16(raw, 0)] + ([_u16(raw, 2)] if is_q4_1 else [])
    h = np.concatenate(fields).astype(I64)
    exp = (h >> 10) & 31
    sig = 1024 + (h & 1023)
    normal = (exp > 0) & (exp < 31)
    trailing = np.zeros(h.shape, I64)
    for bit in range(10):  # 1024 + frac has at most 10 trailing zeros
        trailing += ((sig & ((I64(2) << bit) - 1)) == 0).astype(I64)
    need = np.where(normal, 25 - exp - trailing, 0)
    return int(min(MAX_F, max(0, int(need.max(initial=0)))))
