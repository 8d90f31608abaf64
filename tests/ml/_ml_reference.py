"""Pure-Python integer reference of docs/ml-spec.md §4: nested loops over flat lists of ints.

Written from the spec text, independently of ``opml.ml.ops`` (no numpy in the arithmetic): Python ints
are unbounded, so nothing here can overflow, and ``>>`` / ``//`` are the spec's floor operations.
Tensors are ``(flat list, shape)`` pairs in row-major order.
"""

from __future__ import annotations

import math
import struct


def clamp(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


def prod(shape) -> int:
    return math.prod(shape)


def dense(x: list[int], w: list[int], bias: list[int] | None, zx: int, m: int) -> list[int]:
    k = len(x)
    assert len(w) == m * k
    out = []
    for i in range(m):
        acc = bias[i] if bias is not None else 0
        for j in range(k):
            acc += (x[j] - zx) * w[i * k + j]
        out.append(acc)
    return out


def conv2d(x, xshape, w, wshape, bias, zx, strides, pads) -> tuple[list[int], tuple[int, int, int]]:
    h, wd, c = xshape
    oc, kh, kw, c2 = wshape
    assert c == c2
    sh, sw = strides
    pt, pl, pb, pr = pads
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    out = []
    for a in range(oh):
        for b in range(ow):
            for o in range(oc):
                acc = bias[o] if bias is not None else 0
                for i in range(kh):
                    for j in range(kw):
                        r, s = a * sh - pt + i, b * sw - pl + j
                        for ch in range(c):
                            xv = x[(r * wd + s) * c + ch] if 0 <= r < h and 0 <= s < wd else zx
                            acc += (xv - zx) * w[((o * kh + i) * kw + j) * c + ch]
                out.append(acc)
    return out, (oh, ow, oc)


def requantize(x: list[int], m0: int, t: int, zy: int, lo: int, hi: int) -> list[int]:
    return [clamp(zy + ((v * m0 + (1 << (t - 1))) >> t), lo, hi) for v in x]


def add(a, b, za, ma, zb, mb, t, zy, lo, hi) -> list[int]:
    return [
        clamp(zy + (((u - za) * ma + (v - zb) * mb + (1 << (t - 1))) >> t), lo, hi)
        for u, v in zip(a, b, strict=True)
    ]


def relu(x: list[int], z: int) -> list[int]:
    return [max(v, z) for v in x]


def _pool(x, xshape, kernel, strides, reduce):
    h, wd, c = xshape
    kh, kw = kernel
    sh, sw = strides
    oh = (h - kh) // sh + 1
    ow = (wd - kw) // sw + 1
    out = []
    for a in range(oh):
        for b in range(ow):
            for ch in range(c):
                window = [
                    x[((a * sh + i) * wd + (b * sw + j)) * c + ch] for i in range(kh) for j in range(kw)
                ]
                out.append(reduce(window))
    return out, (oh, ow, c)


def maxpool(x, xshape, kernel, strides):
    return _pool(x, xshape, kernel, strides, max)


def avgpool(x, xshape, kernel, strides):
    n = kernel[0] * kernel[1]
    return _pool(x, xshape, kernel, strides, lambda win: (2 * sum(win) + n) // (2 * n))


def argmax(x: list[int]) -> list[int]:
    best = 0
    for i, v in enumerate(x):
        if v > x[best]:
            best = i
    return [best]


def lut(x: list[int], table: list[int]) -> list[int]:
    return [table[v + 128] for v in x]


def softmax(x: list[int], table: list[int]) -> list[int]:
    top = max(x)
    e = [table[v - top + 255] for v in x]
    s = sum(e)
    if s == 0:
        return [-128] * len(x)
    return [clamp(-128 + (256 * ei + (s >> 1)) // s, -128, 127) for ei in e]


# --- a reference interpreter over a model's raw manifest ------------------------------------------


def _unpack(data: bytes, code: int) -> list[int]:
    fmt = "b" if code == 1 else "i"
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt}", data))


def _pack(values: list[int], code: int) -> bytes:
    return struct.pack(f"<{len(values)}{'b' if code == 1 else 'i'}", *values)


def run_manifest(manifest: bytes, tensors: dict[bytes, bytes], x: bytes) -> list[bytes]:
    """Every value's bytes for input bytes ``x``, decoding the manifest with plain struct offsets
    (as the C side does) and computing each node with the loops above."""
    n = struct.unpack_from("<I", manifest, 8)[0]
    in_dtype, in_rank = struct.unpack_from("<2I", manifest, 12)
    shapes = [tuple(struct.unpack_from("<4I", manifest, 20)[:in_rank])]
    dtypes = [in_dtype]
    values = [_unpack(x, in_dtype)]
    for i in range(n):
        rec = manifest[64 + 160 * i : 64 + 160 * (i + 1)]
        op, _, i0, i1, out_dtype, out_rank = struct.unpack_from("<6I", rec, 0)
        out_shape = tuple(struct.unpack_from("<4I", rec, 24)[:out_rank])
        p = struct.unpack_from("<14i", rec, 40)
        keys = [rec[96:128], rec[128:160]]
        t0 = _unpack(tensors[keys[0]], 1 if op in (1, 2, 10) else 2) if any(keys[0]) else None
        t1 = _unpack(tensors[keys[1]], 2) if any(keys[1]) else None
        x0, s0 = values[i0], shapes[i0]
        if op == 1:
            y = dense(x0, t0, t1, p[0], out_shape[0])
        elif op == 2:
            wshape = (out_shape[2], p[1], p[2], s0[2])
            y, _ = conv2d(x0, s0, t0, wshape, t1, p[0], (p[3], p[4]), (p[5], p[6], p[7], p[8]))
        elif op == 3:
            y = requantize(x0, *p[:5])
        elif op == 4:
            y = add(x0, values[i1], *p[:8])
        elif op == 5:
            y = relu(x0, p[0])
        elif op == 6:
            y, _ = maxpool(x0, s0, (p[0], p[1]), (p[2], p[3]))
        elif op == 7:
            y, _ = avgpool(x0, s0, (p[0], p[1]), (p[2], p[3]))
        elif op == 8:
            y = list(x0)
        elif op == 9:
            y = argmax(x0)
        elif op == 10:
            y = lut(x0, t0)
        elif op == 11:
            y = softmax(x0, t0)
        else:
            raise AssertionError(op)
        assert len(y) == prod(out_shape)
        values.append(y)
        shapes.append(out_shape)
        dtypes.append(out_dtype)
    return [_pack(v, d) for v, d in zip(values, dtypes, strict=True)]
