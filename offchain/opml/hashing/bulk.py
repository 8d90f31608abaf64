"""Keccak-256 of many 64-byte messages at once, compiled: whole levels of large Merkle trees.

A parent in a tree of 32-byte nodes is ``keccak256(left ‖ right)``, and a 64-byte message takes one
Keccak-f[1600] permutation: lanes 0–7 hold the message (little-endian 64-bit words), lane 8 the first
padding byte 0x01 (byte 64), lane 16 the last one 0x80 (byte 135, the end of the 136-byte rate), every
other lane is zero, and the digest is lanes 0–3. A tree over ``n`` leaves takes ``n − 1`` of them.

The permutation is emitted as LLVM IR through a numba intrinsic with all 24 rounds unrolled: the 25
lanes stay in registers, the zero and padding lanes fold away as constants in the first round, and
LLVM drops what the last round computes outside the digest. Each lane is a vector of ``LANES`` 64-bit
words, one per message, so one call hashes ``LANES`` independent messages (in AVX2 registers where the
host has them; LLVM splits the vectors where it has not). Variants measured on this project's AMD EPYC
(AVX2), in MiB/s of chunk tree on one core: this one ≈ 175; vectors of 8 ≈ 135, of 2 ≈ 100; one
message at a time 65–95; the rounds written in numba and inlined ≈ 170, but 26 s to compile (this
one: ≈ 4 s, once).

numba caches the compiled kernel next to this file (``cache=True``), keyed by this file only, so the IR
generator lives here too: editing it recompiles.
"""

import sys

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.extending import intrinsic

from opml.hashing import NODE_SIZE, keccak256

assert sys.byteorder == "little", "the kernel loads the message bytes as Keccak's little-endian lanes"

MESSAGE = 2 * NODE_SIZE
LANES = 4
"""Messages per kernel call: the elements of one lane vector (4 × 64 bits, an AVX2 register)."""

_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
"""The round constants (step iota)."""
_ROT = (0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14)
"""The rotation of lane ``x + 5y`` (step rho)."""

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_LANE = ir.VectorType(_I64, LANES)


def _splat(value: int) -> ir.Constant:
    """``value`` in every element of a lane."""
    return ir.Constant(_LANE, [ir.Constant(_I64, value)] * LANES)


def _keccak_f(b: ir.IRBuilder, a: list) -> list:
    """Emit Keccak-f[1600] on the 25 lanes ``a`` (lane ``x + 5y``); return the lanes after 24 rounds."""

    def rotl(v, n: int):
        return v if n == 0 else b.or_(b.shl(v, _splat(n)), b.lshr(v, _splat(64 - n)))

    for rc in _RC:
        # theta: each lane takes the parities of the two neighbouring columns.
        c = [b.xor(b.xor(b.xor(b.xor(a[x], a[x + 5]), a[x + 10]), a[x + 15]), a[x + 20]) for x in range(5)]
        d = [b.xor(c[(x - 1) % 5], rotl(c[(x + 1) % 5], 1)) for x in range(5)]
        # rho and pi: lane (x, y) rotated, to position (y, 2x + 3y).
        p = [a[0]] * 25
        for x in range(5):
            for y in range(5):
                p[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(b.xor(a[x + 5 * y], d[x]), _ROT[x + 5 * y])
        # chi along each row, then iota.
        a = [
            b.xor(p[x + 5 * y], b.and_(b.not_(p[(x + 1) % 5 + 5 * y]), p[(x + 2) % 5 + 5 * y]))
            for y in range(5)
            for x in range(5)
        ]
        a[0] = b.xor(a[0], _splat(rc))
    return a


@intrinsic
def _keccak_x4(typingctx, src, src_offset, dst, dst_offset):
    """``dst[dst_offset + 32m:][:32] = keccak256(src[src_offset + 64m:][:64])`` for ``m < LANES``.

    No bounds checks: the caller guarantees both ranges lie in the arrays.
    """

    def codegen(context, builder, sig, args):
        def words(array_type, array, offset):
            data = context.make_array(array_type)(context, builder, array).data
            return builder.bitcast(builder.gep(data, [offset]), _I64.as_pointer())

        src_words = words(sig.args[0], args[0], args[1])
        dst_words = words(sig.args[2], args[2], args[3])

        def message_lane(i: int):
            lane = _splat(0)
            for m in range(LANES):
                word = builder.load(builder.gep(src_words, [ir.Constant(_I64, 8 * m + i)]), align=1)
                lane = builder.insert_element(lane, word, ir.Constant(_I32, m))
            return lane

        state = [message_lane(i) for i in range(8)] + [_splat(0x01)] + [_splat(0)] * 7
        state += [_splat(0x80 << 56)] + [_splat(0)] * 8
        state = _keccak_f(builder, state)
        for m in range(LANES):
            for i in range(4):
                word = builder.extract_element(state[i], ir.Constant(_I32, m))
                builder.store(word, builder.gep(dst_words, [ir.Constant(_I64, 4 * m + i)]), align=1)
        return context.get_dummy_value()

    return types.void(src, types.intp, dst, types.intp), codegen


@njit(cache=True)
def _hash_groups(src, dst):
    """Digest ``k`` of ``src``'s 64-byte messages into ``dst[32k:][:32]``; ``len(src)`` is a multiple of
    ``64 · LANES`` and ``dst`` holds half as many bytes."""
    for g in range(len(src) // (MESSAGE * LANES)):
        # numba's stub of an intrinsic's call counts the typing context as an argument.
        _keccak_x4(src, MESSAGE * LANES * g, dst, NODE_SIZE * LANES * g)  # type: ignore[call-arg]


def _readonly_bytes(data) -> np.ndarray:
    """A read-only ``uint8`` view of a C-contiguous buffer, without copying: every call of the kernel
    has the same argument types, so numba compiles (or loads) it once."""
    view = np.frombuffer(data, dtype=np.uint8)
    view.flags.writeable = False
    return view


def hash_messages(messages) -> np.ndarray:
    """``keccak256`` of each 64-byte message of a buffer of ``64·n`` bytes: ``32·n`` bytes of digests."""
    src = _readonly_bytes(messages)
    if len(src) % MESSAGE:
        raise ValueError(f"{len(src)} bytes is not a whole number of 64-byte messages")
    n = len(src) // MESSAGE
    out = np.empty(NODE_SIZE * n, dtype=np.uint8)
    full = n - n % LANES
    if full:
        _hash_groups(src[: MESSAGE * full], out)
    # The last n mod LANES messages, fewer than a vector: pysha3 costs less than a padded group.
    for k in range(full, n):
        out[NODE_SIZE * k : NODE_SIZE * (k + 1)] = np.frombuffer(
            keccak256(src[MESSAGE * k : MESSAGE * (k + 1)]), np.uint8
        )
    return out


def parents(nodes, zero: bytes) -> bytes:
    """The level above the 32-byte ``nodes``: ``keccak256(left ‖ right)`` of each pair in order, an odd
    last node paired with ``zero`` (the root of an all-zero sibling)."""
    src = _readonly_bytes(nodes)
    if len(src) % NODE_SIZE:
        raise ValueError(f"{len(src)} bytes is not a whole number of 32-byte nodes")
    even = len(src) - len(src) % MESSAGE
    out = hash_messages(src[:even]).tobytes()
    if even != len(src):
        out += keccak256(src[even:].tobytes() + zero)
    return out
