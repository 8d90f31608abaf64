"""The C kernels (mips-toolchain/ml/ops.c) in the oracle-free program tests/ml_kernels.c: numpy
(opml.ml.ops) gives the same bytes as the program under qemu-mipsel, in the project's VM, and as its
pinned expected output (acceptance: the same C kernels give the same bytes under qemu and ``opml vm run``).

The program draws its inputs from xorshift32; :class:`XorShift` draws the same numbers here, and each
case below rebuilds the program's inputs in the order the C code fills its arrays."""

from __future__ import annotations

import numpy as np
import pytest
from _toolchain import TOOLCHAIN, build_toolchain, qemu_lines, vm_lines

from opml.ml import ops

EXPECTED = TOOLCHAIN / "tests" / "expected" / "ml_kernels.out"
MAX_PRODUCT = 255 * 128


class XorShift:
    """xorshift32 as tests/ml_kernels.c runs it (seed 0x2545F491)."""

    def __init__(self) -> None:
        self.x = 0x2545F491

    def u32(self) -> int:
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def i8(self, n: int) -> np.ndarray:
        return np.array([((self.u32() >> 24) ^ 0x80) - 0x80 for _ in range(n)], dtype=np.int8)

    def i32(self, n: int, shift: int = 0) -> np.ndarray:
        return np.array([((self.u32() ^ 0x80000000) - 0x80000000) >> shift for _ in range(n)], dtype=np.int32)


def hexb(a: np.ndarray, dtype: str) -> str:
    return np.ascontiguousarray(a, dtype=dtype).tobytes().hex()


def expected_lines() -> list[str]:
    """What tests/ml_kernels.c must print, computed with numpy from the same inputs."""
    r = XorShift()
    out: list[str] = []

    def emit(name: str, a: np.ndarray, dtype: str) -> None:
        out.append(f"{name} {hexb(a, dtype)}")

    xa = np.zeros(512, np.int8)
    xb = np.zeros(512, np.int8)
    w8 = np.zeros(2048, np.int8)
    x32 = np.zeros(256, np.int32)
    bias = np.zeros(64, np.int32)

    xa[:37] = r.i8(37)
    w8[: 37 * 5] = r.i8(37 * 5)
    bias[:5] = r.i32(5, 8)
    emit("dense", ops.dense(xa[:37], w8[:185].reshape(5, 37), bias[:5], -3), "<i4")
    emit("dense_nobias", ops.dense(xa[:37], w8[:185].reshape(5, 37), None, 0), "<i4")
    xa[:100] = -128
    w8[:200] = -128
    bias[0] = 2**31 - 1 - 100 * MAX_PRODUCT
    bias[1] = -bias[0]
    extreme = ops.dense(xa[:100], w8[:200].reshape(2, 100), bias[:2], 127)
    assert int(extreme[0]) == 2**31 - 1  # the overflow bound, reached exactly
    emit("dense_extreme", extreme, "<i4")

    xa[:90] = r.i8(90)
    w8[:72] = r.i8(72)
    bias[:4] = r.i32(4, 12)
    x, w = xa[:90].reshape(5, 6, 3), w8[:72].reshape(4, 3, 2, 3)
    emit("conv2d", ops.conv2d(x, w, bias[:4], 5, (2, 1), (1, 0, 1, 1)), "<i4")
    emit("conv2d_nobias", ops.conv2d(x, w, None, 5, (2, 1), (1, 0, 1, 1)), "<i4")

    x32[:60] = r.i32(60)
    x32[:5] = [-(2**31), 2**31 - 1, 0, -1, 1]
    emit("requantize", ops.requantize(x32[:64], 1518500250, 38, -5, -128, 127), "i1")
    emit("requantize_saturate", ops.requantize(x32[:64], 2**31 - 1, 31, 127, -128, 127), "i1")
    emit("requantize_clamp", ops.requantize(x32[:64], 1, 1, 0, -20, 30), "i1")
    x32[5:9] = [3, -3, 2, -2]
    ties = ops.requantize(x32[:64], 1, 2, 0, -128, 127)
    assert [int(v) for v in ties[5:9]] == [1, -1, 1, 0]  # half up: 0.75, −0.75, 0.5, −0.5
    emit("requantize_ties", ties, "i1")

    # mode 1 (half to even): the accumulators above, then the extremes, ±2^30, ±3·2^29 and −26 … 31
    emit("requantize_even", ops.requantize(x32[:64], 1518500250, 38, -5, -128, 127, 1), "i1")
    emit("requantize_even_saturate", ops.requantize(x32[:64], 2**31 - 1, 31, 127, -128, 127, 1), "i1")
    t62 = ops.requantize(x32[:64], 2**30, 62, 0, -128, 127, 1)
    assert int(x32[0]) == -(2**31) and int(t62[0]) == 0  # −2^61 / 2^62 = −0.5 → 0
    emit("requantize_even_t62", t62, "i1")
    xt = x32[64:128]
    xt[:] = [-(2**31), 2**31 - 1, 2**30, -(2**30), 3 << 29, -(3 << 29), *range(-26, 32)]
    even = ops.requantize(xt, 1, 2, 0, -128, 127, 1)
    up = ops.requantize(xt, 1, 2, 0, -128, 127)
    # x/4 at the ties −26, −22, −2, 2, 6, 10: −6.5, −5.5, −0.5, 0.5, 1.5, 2.5
    at = [v + 32 for v in (-26, -22, -2, 2, 6, 10)]
    assert [int(even[i]) for i in at] == [-6, -6, 0, 0, 2, 2]
    assert [int(up[i]) for i in at] == [-6, -5, 0, 1, 2, 3]
    emit("requantize_even_ties", even, "i1")
    clamp = ops.requantize(xt, 1, 1, -10, -20, 0, 1)
    assert {int(clamp.min()), int(clamp.max())} == {-20, 0}
    emit("requantize_even_clamp", clamp, "i1")
    emit("requantize_even_t33", ops.requantize(xt, 2**30, 33, 0, -128, 127, 1), "i1")
    t60 = ops.requantize(xt, 2**30, 60, 0, -128, 127, 1)
    assert [int(v) for v in t60[:6]] == [-2, 2, 1, -1, 2, -2]  # 3·2^29 / 2^30 = 1.5 → 2
    emit("requantize_even_t60", t60, "i1")
    t61 = ops.requantize(xt, 2**30, 61, 0, -128, 127, 1)
    assert [int(v) for v in t61[:6]] == [-1, 1, 0, 0, 1, -1]  # 2^30 / 2^31 = 0.5 → 0
    emit("requantize_even_t61", t61, "i1")

    mt4 = np.array([[1518500250, 38], [1, 1], [1, 2], [2**30, 60]], np.int32)
    up, even = (ops.requantize_channels(xt.reshape(16, 4), mt4, -5, -128, 127, mode) for mode in (0, 1))
    assert (up != even).sum(axis=0).tolist() == [0, 14, 7, 0]  # the ties with an even floor
    emit("requantize_channels", up, "i1")
    emit("requantize_channels_even", even, "i1")
    c = np.arange(64)
    mt = np.stack([1 + c * 33554431, 22 + c % 10], axis=1).astype(np.int32)
    emit("requantize_channels_m", ops.requantize_channels(xt, mt, 3, -100, 100, 1), "i1")
    piece = np.zeros((8, 8), np.int8)
    piece[:, 2:5] = ops.requantize_channels(x32[:64].reshape(8, 8)[:, 2:5], mt4[:3], 0, -128, 127, 1)
    emit("requantize_channels_piece", piece, "i1")

    # mode 2 (float32 product, half to even), each line against a float32 numpy reference too
    def f32(x, m0, t, zy, lo, hi):
        x = np.asarray(x)
        prod = x.astype(np.float32) * np.asarray(np.asarray(m0) * 2.0 ** -np.asarray(t), np.float32)
        return np.clip(np.rint(prod).astype(np.float64) + zy, lo, hi).astype(np.int8)

    xf = np.array([(i - 32) * 2**23 + i % 5 - 2 for i in range(64)], np.int32)
    scalar = [
        ("requantize_f32", x32[:64], (11863283, 31, -5, -128, 127)),
        ("requantize_f32_ext", xt, (2**24 - 1, 26, 0, -128, 127)),
        ("requantize_f32_clamp", xt, (3, 2, -10, -20, 0)),
        ("requantize_f32_ties", xf, (1, 25, 0, -128, 127)),
    ]
    for name, x, (m0, t, zy, lo, hi) in scalar:
        y = ops.requantize(x, m0, t, zy, lo, hi, 2)
        assert (y == f32(x, m0, t, zy, lo, hi)).all(), name
        emit(name, y, "i1")
    ties_even = ops.requantize(xf, 1, 25, 0, -128, 127, 1)
    assert (ties_even != ops.requantize(xf, 1, 25, 0, -128, 127, 2)).sum() == 4  # fl(x) drops ±1, ±2 at a tie
    xc = np.array([83886081, -83886081, 445019, -445019, 91153, 1194144765, 4242, 2**31 - 1], np.int32)
    mc = np.array(
        [[1, 25], [1, 25], [377, 26], [377, 26], [3313, 26], [1974093, 46], [158201, 28], [2**24 - 1, 55]],
        np.int32,
    )
    yc = ops.requantize_channels(xc, mc, 0, -128, 127, 2)
    assert (yc == f32(xc, mc[:, 0], mc[:, 1], 0, -128, 127)).all()
    assert yc.tolist() == [2, -2, 2, -2, 4, 34, 2, 1]
    assert ops.requantize_channels(xc, mc, 0, -128, 127, 1).tolist() == [3, -3, 3, -3, 5, 33, 3, 1]
    emit("requantize_channels_f32", yc, "i1")
    mf4 = np.array([[11863283, 31], [1, 1], [5, 4], [2**23, 53]], np.int32)
    y4 = ops.requantize_channels(xt.reshape(16, 4), mf4, -5, -128, 127, 2)
    assert (y4 == f32(xt.reshape(16, 4), mf4[:, 0], mf4[:, 1], -5, -128, 127)).all()
    emit("requantize_channels_f32_4", y4, "i1")

    xa[:100] = r.i8(100)
    xb[:100] = r.i8(100)
    xa[:2] = [-128, 127]
    xb[:2] = [-128, 127]
    emit("add", ops.add(xa[:100], xb[:100], -7, 1073741824, 12, 1518500250, 31, 3, -128, 127), "i1")
    emit("add_saturate", ops.add(xa[:100], xb[:100], 127, 2**31 - 1, -128, 2**31 - 1, 1, 0, -100, 100), "i1")

    emit("relu_i8", ops.relu(xa[:100], -3), "i1")
    emit("relu_i32", ops.relu(x32[:64], -1000), "<i4")

    xa[:105] = r.i8(105)
    x = xa[:105].reshape(7, 5, 3)
    emit("maxpool", ops.maxpool(x, (3, 2), (2, 2)), "i1")
    emit("avgpool", ops.avgpool(x, (3, 2), (2, 2)), "i1")
    emit("avgpool_min", ops.avgpool(np.full((7, 5, 3), -128, np.int8), (3, 2), (2, 2)), "i1")

    xa[:50] = r.i8(50)
    xa[10] = xa[30] = 127
    emit("argmax_i8", ops.argmax(xa[:50]), "<i4")
    x32[20] = x32[40] = 2**31 - 1
    emit("argmax_i32", ops.argmax(x32[:64]), "<i4")

    w8[:256] = r.i8(256)
    emit("lut", ops.lut(np.arange(-128, 128, dtype=np.int8), w8[:256]), "i1")

    j = np.arange(256)
    table = ((65536 >> ((255 - j) // 16)) - (255 - j) % 16 * 7).astype(np.int32)
    table[255] = 65536
    xa[:40] = r.i8(40)
    emit("softmax", ops.softmax(xa[:40], table), "i1")
    emit("softmax_zero", ops.softmax(xa[:40], np.zeros(256, np.int32)), "i1")
    return out


@pytest.fixture(scope="module")
def program():
    return build_toolchain() / "ml_kernels"


@pytest.fixture(scope="module")
def numpy_lines():
    return expected_lines()


def names(lines: list[str]) -> list[str]:
    return [line.split(" ", 1)[0] for line in lines]


def test_numpy_equals_the_pinned_output(numpy_lines):
    pinned = EXPECTED.read_text().splitlines()
    assert names(pinned) == names(numpy_lines)
    for want, got in zip(numpy_lines, pinned, strict=True):
        assert got == want


def test_qemu_equals_numpy(program, numpy_lines):
    assert qemu_lines(program) == numpy_lines


def test_vm_equals_numpy(program, numpy_lines):
    assert vm_lines(program) == numpy_lines
