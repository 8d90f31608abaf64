"""The checksum of ``mips-toolchain/program/stream_checksum.c``, in numpy.

The data is read as little-endian ``u32`` words ``w_i`` (the last one zero-padded), ``i = 0, 1, …``::

    checksum = Σ_i ((w_i XOR (i · 0x9E3779B9)) · (2·i + 1))   mod 2^32

Every product and sum wraps modulo 2^32, exactly as the C code's ``uint32_t`` arithmetic.
"""

import numpy as np

from opml.oracle.chunk_tree import as_byte_view

GOLDEN = 0x9E3779B9
_BLOCK_WORDS = 1 << 22  # 16 MiB per numpy block


def stream_checksum(data) -> int:
    """The ``stream_checksum`` of ``data`` (bytes-like or a numpy array)."""
    raw = np.frombuffer(as_byte_view(data), dtype=np.uint8)
    pad = (-len(raw)) % 4
    if pad:
        raw = np.concatenate([raw, np.zeros(pad, np.uint8)])
    words = raw.view("<u4")
    total = 0
    for start in range(0, len(words), _BLOCK_WORDS):
        w = words[start : start + _BLOCK_WORDS].astype(np.uint32)
        i = np.arange(start, start + len(w), dtype=np.uint32)
        term = (w ^ (i * np.uint32(GOLDEN))) * (i * np.uint32(2) + np.uint32(1))
        total = (total + int(term.sum(dtype=np.uint64))) & 0xFFFFFFFF
    return total


def stream_checksum_reference(data: bytes) -> int:
    """The same checksum in plain Python, one word at a time (the definition, for tests)."""
    data = bytes(data) + bytes((-len(data)) % 4)
    acc = 0
    for i in range(len(data) // 4):
        w = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        acc = (acc + ((w ^ (i * GOLDEN)) & 0xFFFFFFFF) * (2 * i + 1)) & 0xFFFFFFFF
    return acc
