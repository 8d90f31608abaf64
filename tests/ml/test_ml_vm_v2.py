"""The version-2 ops (ml-spec §10) through the node program (mips-toolchain/build/ml_node) in the VM.

For every op, seeded random single-op graphs (seed 0 the smallest shapes the format allows, seed 1
extreme values: ±32767 and −32768, int32 exponents at both ends, full-range int32): the node program's
output key is the native runner's, it accepts the native ``S_k`` (exit 0) and rejects it with one byte
changed (exit 1), its steps are within ``node_step_bound`` and its memory within the bound of
ml-spec §7.3. A one-layer tiny LLaMA generation runs node by node and through the whole-model program.

The malformed cases put manifests and tensors that the Python reader rejects straight into the store:
the node program must exit 3 for each (and never for a model the reader accepts). ``OPML_ML_SEEDS`` sets
the number of random seeds per op (default 4).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml import blocks as bl
from opml.ml import errors, gguf_quant, ops
from opml.ml.cost import model_step_bound, node_step_bound
from opml.ml.format import (
    NODE_SIZE,
    DType,
    GraphBuilder,
    Model,
    Op,
    TensorDesc,
    decode_manifest,
    int8,
    int32,
    node_offset,
    r8,
    r16,
    tensor_key,
)
from opml.ml.llama import generation_graph
from opml.ml.llama_tables import attention_scale, exp2_table, rope_table, sigmoid_table
from opml.ml.phase import (
    EXIT_INVALID,
    EXIT_MALFORMED,
    EXIT_VALID,
    NODE_PROGRAM,
    ProgramSetup,
    model_memory_bound,
    model_program_setup,
    node_local_values,
    node_memory_bound,
    node_program_setup,
    put_state,
    run_program,
)
from opml.ml.runner import RunResult, run_model, value_bytes
from opml.ml.tiny_llama import TINY, tiny_llama
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.preimage import ZERO_CALLER, ZERO_CONTEXT, OracleView

SEEDS = range(int(os.environ.get("OPML_ML_SEEDS", "4")))
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
ML_MEMORY_BASE = 128 * 1024
V2_OPS = {op for op in Op if op >= Op.QDENSE}


@pytest.fixture(scope="module", autouse=True)
def built():
    build_toolchain()


def check_node(
    model: Model, x: Any, k: int, tmp_path, *, run: RunResult | None = None, flip: bool = True
) -> int:
    """Node ``k`` in the VM: numpy's key, exit 0 on the native claim (and 1 on a changed byte),
    within its step and memory bounds; returns the steps."""
    run = run_model(model, x) if run is None else run
    store = PreimageStore(tmp_path)
    result = run_program(node_program_setup(model, x, k, run.state(k), store, run=run))
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == [run.keys[k + 1]]
    assert result.steps <= node_step_bound(model, k)
    assert result.memory_bytes <= node_memory_bound(model, k)
    if flip:
        claim = bytearray(run.state(k))
        claim[7] ^= 0x20
        bad = run_program(node_program_setup(model, x, k, bytes(claim), store, run=run))
        assert bad.exit_code == EXIT_INVALID and bad.keys == result.keys
    return result.steps


# --- random single-op graphs: (model, input, k) ------------------------------------------------------


def pick(rng, *choices):
    return choices[int(rng.integers(len(choices)))]


def rows(rng, t: int, k: int, size: int, extremes: bool, elo: int = -24, ehi: int = 0) -> np.ndarray:
    """``t`` row-scaled rows of ``k`` values (r16: size 2, r8: size 1)."""
    hi = 32767 if size == 2 else 127
    if extremes:
        e = rng.choice(np.array([I32_MIN, I32_MAX, 0, -30], np.int64), t)
        q = rng.choice(np.array([-hi - 1, hi, -hi, 0, 1, -1], np.int64), (t, k))
    else:
        e = rng.integers(elo, ehi + 1, t)
        q = rng.integers(-hi - 1, hi + 1, (t, k))
    return ops.rows_value(e, q, size)


def ints(rng, shape, extremes: bool) -> np.ndarray:
    if extremes:
        return rng.choice(np.array([I32_MIN, I32_MAX, 0, -1, 1], np.int64), shape).astype(np.int32)
    return (rng.integers(I32_MIN, I32_MAX + 1, shape) >> rng.integers(0, 31, shape)).astype(np.int32)


def block_weights(rng, m: int, k: int, wtype: DType, extremes: bool) -> tuple[bytes, int]:
    """GGUF blocks of float weights (``extremes``: the largest scales, ``|D|`` just below 2^24)."""
    if extremes:
        nb = m * (k // 32)
        if wtype is DType.Q4_1:
            blk = b"\xff\x7b\xff\xfb" + bytes(rng.integers(0, 256, 16, dtype=np.uint8))
        else:
            blk = b"\xff\xfb" + bytes(rng.integers(0, 256, 32, dtype=np.uint8))
        return blk * nb, 8  # 65504 · 2^8 = 2047 · 2^13
    w = rng.normal(0, 0.1, (m, k))
    data = gguf_quant.quantize_q4_1(w) if wtype is DType.Q4_1 else gguf_quant.quantize_q8_0(w)
    return data, bl.smallest_f(data, wtype is DType.Q4_1)


def case_qdense(rng, seed):
    small, ext = seed == 0, seed == 1
    wt = pick(rng, DType.Q4_1, DType.Q8_0)
    size = pick(rng, 1, 2)
    t = 1 if small else int(rng.integers(1, 5))
    k = 32 if small else 32 * int(rng.integers(1, 40))
    m = 1 if small else int(rng.integers(1, 60))
    row0 = 0 if small else int(rng.integers(0, 3))
    data, f = block_weights(rng, row0 + m + (0 if small else int(rng.integers(0, 3))), k, wt, ext)
    out = pick(rng, DType.R16, DType.INT32)
    g = GraphBuilder((r16 if size == 2 else r8)(t, k), version=2)
    g.qdense(0, data, wt, f, out=out, r=int(rng.integers(0, 31)) if out is DType.INT32 else 0, row0=row0, m=m)
    return g.build(), rows(rng, t, k, size, ext), 0


def case_qdense_argmax(rng, seed):
    small, ext = seed == 0, seed == 1
    wt = pick(rng, DType.Q4_1, DType.Q8_0)
    size = pick(rng, 1, 2)
    t = 1 if small else int(rng.integers(1, 4))
    k = 32 if small else 32 * int(rng.integers(1, 30))
    m = 1 if small else int(rng.integers(1, 80))
    row0 = 0 if small else int(rng.integers(0, 3))
    data, f = block_weights(rng, row0 + m, k, wt, ext)
    g = GraphBuilder((r16 if size == 2 else r8)(t, k), version=2)
    g.qdense_argmax(0, data, wt, f, row0=row0, m=m)
    return g.build(), rows(rng, t, k, size, ext), 0


def case_argmax_merge(rng, seed):
    t = 1 if seed == 0 else int(rng.integers(1, 20))
    g = GraphBuilder(int32(2 * t, 3), version=2)
    g.argmax_merge(g.slice(0, 0, t), g.slice(0, t, t))
    x = ints(rng, (2 * t, 3), seed == 1)
    x[t:, 1:] = np.where(rng.integers(0, 2, (t, 2)) == 1, x[:t, 1:], x[t:, 1:])  # ties on value
    return g.build(), x, 2


def case_embedding(rng, seed):
    small, ext = seed == 0, seed == 1
    wt = pick(rng, DType.Q4_1, DType.Q8_0)
    h = 32 if small else 32 * int(rng.integers(1, 20))
    v = 1 if small else int(rng.integers(1, 40))
    t = 1 if small else int(rng.integers(1, 8))
    data, f = block_weights(rng, v, h, wt, ext)
    records = not small and bool(rng.integers(2))
    g = GraphBuilder(int32(t, 3) if records else int32(t), version=2)
    g.embedding(0, data, wt, f, h, int(rng.integers(0, 31)))
    ids = rng.integers(-2, v + 2, t).astype(np.int32)
    if ext:
        ids[0] = I32_MIN
    x = np.stack([ids, ids + 1, ids - 1], 1).astype(np.int32) if records else ids
    return g.build(), x, 0


def case_rmsnorm(rng, seed):
    t = 1 if seed == 0 else int(rng.integers(1, 6))
    h = 1 if seed == 0 else int(rng.integers(1, 600))
    g = GraphBuilder(int32(t, h), version=2)
    gv = rng.choice(np.array([-32768, 32767], np.int16), h) if seed == 1 else rng.integers(-32768, 32768, h)
    g.rmsnorm(0, np.asarray(gv, np.int16), int(rng.integers(0, 31)), int(rng.integers(0, 65537)))
    x = ints(rng, (t, h), seed == 1)
    if t > 1:
        x[1] = 0  # a zero row
    return g.build(), x, 0


def case_rope(rng, seed):
    hd = 2 if seed == 0 else 2 * int(rng.integers(1, 65))
    w = hd * (1 if seed == 0 else int(rng.integers(1, 5)))
    t = 1 if seed == 0 else int(rng.integers(1, 6))
    pos0 = 0 if seed == 0 else int(rng.integers(0, 30))
    table = rope_table(pos0 + t + (0 if seed == 0 else int(rng.integers(0, 4))), hd, 10000.0)
    g = GraphBuilder(r16(t, w), version=2)
    g.rope(0, table, hd, pos0)
    return g.build(), rows(rng, t, w, 2, seed == 1, -40, 40), 0


def attention_graph(rng, t: int, n_kv: int, nh: int, nkv: int, hd: int, extremes: bool):
    """int32 input → slices, reshapes, quantize → q r16 [T, nh·hd], kv r16 [L, 2, nkv·hd] → attention."""
    wq, wkv = nh * hd, nkv * hd
    n = t * wq + 2 * n_kv * wkv
    g = GraphBuilder(int32(n), version=2)
    q = g.quantize(g.reshape(g.slice(0, 0, t * wq), (t, wq)), DType.R16, int(rng.integers(0, 24)))
    kv = g.quantize(
        g.reshape(g.slice(0, t * wq, 2 * n_kv * wkv), (n_kv, 2, wkv)), DType.R16, int(rng.integers(0, 24))
    )
    mul, sa = attention_scale(hd)
    if extremes:
        mul, sa = pick(rng, ((1 << 23) - 1, 0), ((1 << 23) - 1, 62), (1, 0))
    g.attention(q, kv, exp2_table(), hd, mul, sa)
    return g.build(), ints(rng, n, extremes), len(g.nodes) - 1


def case_attention(rng, seed):
    if seed == 0:
        return attention_graph(rng, 1, 1, 1, 1, 1, False)
    hd = int(pick(rng, 1, 2, 8, 16, 64))
    nkv = int(rng.integers(1, 3))
    nh = nkv * int(rng.integers(1, 4))
    t = int(rng.integers(1, 5))
    return attention_graph(rng, t, t + int(rng.integers(0, 12)), nh, nkv, hd, seed == 1)


def case_swiglu(rng, seed):
    t = 1 if seed == 0 else int(rng.integers(1, 5))
    f = 1 if seed == 0 else int(rng.integers(1, 300))
    g = GraphBuilder(r16(2 * t, f), version=2)
    g.swiglu(g.slice(0, 0, t), g.slice(0, t, t), sigmoid_table())
    return g.build(), rows(rng, 2 * t, f, 2, seed == 1, -20, -8), 2


def case_quantize(rng, seed):
    shape = (1,) if seed == 0 else tuple(int(d) for d in rng.integers(1, 12, int(rng.integers(1, 4))))
    if rng.integers(2) or seed == 0:
        g = GraphBuilder(int32(*shape), version=2)
        g.quantize(0, pick(rng, DType.R16, DType.R8), int(rng.integers(-62, 63)))
        return g.build(), ints(rng, shape, seed == 1), 0
    shape = shape if len(shape) > 1 else (1, *shape)
    g = GraphBuilder(r16(*shape), version=2)
    g.quantize(0, DType.R8)
    n = int(np.prod(shape[:-1]))
    return g.build(), rows(rng, n, shape[-1], 2, seed == 1).reshape(shape[:-1]), 0


def case_add32(rng, seed):
    n = 1 if seed == 0 else int(rng.integers(1, 300))
    g = GraphBuilder(int32(2 * n), version=2)
    g.add32(g.slice(0, 0, n), g.slice(0, n, n))
    return g.build(), ints(rng, 2 * n, seed == 1), 2


def plain_or_rows(rng, seed, min_rank: int = 1):
    """A version-2 input of any value dtype: (builder, input array)."""
    dt = pick(rng, DType.INT8, DType.INT16, DType.INT32, DType.R16, DType.R8)
    lo_rank = 2 if dt.is_rows else min_rank
    shape = (
        [1] * lo_rank if seed == 0 else [int(d) for d in rng.integers(1, 7, int(rng.integers(lo_rank, 5)))]
    )
    g = GraphBuilder(TensorDesc(dt, tuple(shape)), version=2)
    if dt.is_rows:
        n = int(np.prod(shape[:-1]))
        x = rows(rng, n, shape[-1], 2 if dt is DType.R16 else 1, seed == 1).reshape(shape[:-1])
    else:
        x = rng.integers(dt.lo, dt.hi + 1, shape).astype(dt.np)
    return g, x, dt, shape


def case_concat(rng, seed):
    g, x, dt, shape = plain_or_rows(rng, seed)
    axis = int(rng.integers(0, len(shape) - (1 if dt.is_rows else 0)))
    g.concat(0, 0, axis)
    return g.build(), x, 0


def case_slice(rng, seed):
    g, x, _, shape = plain_or_rows(rng, seed)
    r0 = int(rng.integers(0, shape[0]))
    g.slice(0, r0, int(rng.integers(1, shape[0] - r0 + 1)))
    return g.build(), x, 0


def case_emit(rng, seed):
    s = int(rng.integers(4, 12))
    x = ints(rng, (s,), seed % 2 == 1)
    if seed % 2 == 0:  # a task's transcript: P, n in range, so that some positions are written
        x[0], x[1] = rng.integers(1, s - 2), rng.integers(1, s - 1)
    g = GraphBuilder(int32(s), version=2)
    record = g.reshape(g.slice(0, 1, 3), (1, 3))
    g.emit(0, record, int(rng.integers(0, s - 3)))
    return g.build(), x, 2


def case_reshape(rng, seed):
    g, x, dt, shape = plain_or_rows(rng, seed)
    new = (int(np.prod(shape[:-1])), shape[-1]) if dt.is_rows else (int(np.prod(shape)),)
    g.reshape(0, new)
    return g.build(), x, 0


CASES: dict[Op, Callable[[Any, int], tuple[Model, Any, int]]] = {
    Op.QDENSE: case_qdense,
    Op.QDENSE_ARGMAX: case_qdense_argmax,
    Op.ARGMAX_MERGE: case_argmax_merge,
    Op.EMBEDDING: case_embedding,
    Op.RMSNORM: case_rmsnorm,
    Op.ROPE: case_rope,
    Op.ATTENTION: case_attention,
    Op.SWIGLU: case_swiglu,
    Op.QUANTIZE: case_quantize,
    Op.ADD32: case_add32,
    Op.CONCAT: case_concat,
    Op.SLICE: case_slice,
    Op.EMIT: case_emit,
    Op.RESHAPE: case_reshape,
}


def test_every_v2_op_has_cases():
    assert set(CASES) >= V2_OPS


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", list(CASES), ids=lambda op: op.name.lower())
def test_v2_op_in_vm_equals_numpy(op, seed, tmp_path):
    rng = np.random.default_rng(7000 + 100 * int(op) + seed)
    model, x, k = CASES[op](rng, seed)
    assert model.nodes[k].op is op
    check_node(model, x, k, tmp_path)


def test_qdense_at_the_overflow_bound(tmp_path):
    """K = 2^16 at the largest scales: |acc| = 2^62 − 2^51 (ml-spec §10.2), then r16 and saturated int32."""
    k = 1 << 16
    data = (b"\xff\xfb" + b"\x80" * 32) * (k // 32)  # d = −2047·2^13 at F = 8, q = −128
    x = ops.rows_value(np.array([I32_MAX]), np.full((1, k), -32768), 2)
    for out in (DType.R16, DType.INT32):
        g = GraphBuilder(r16(1, k), version=2)
        g.qdense(0, data, DType.Q8_0, 8, out=out, r=30 if out is DType.INT32 else 0)
        model = g.build()
        check_node(model, x, 0, tmp_path, flip=False)


@pytest.mark.parametrize(
    "block, wtype",
    [
        (b"\x00\x00\x00\x80" + bytes(range(16)), DType.Q4_1),  # ±0 scales
        (b"\x00\x3c\x00\xbc" + bytes(range(16)), DType.Q4_1),  # ±1.0 at F = 0: a right shift by 10
        (b"\x00\x3c" + bytes(range(32)), DType.Q8_0),
    ],
    ids=["q4_1 zero scales", "q4_1 scales 1.0", "q8_0 scale 1.0"],
)
def test_qdense_scales_off_the_fast_path(block, wtype, tmp_path):
    """Scales that the kernels decode on their slow path (zero, or a right shift): within the bound."""
    rng = np.random.default_rng(11)
    g = GraphBuilder(r16(2, 256), version=2)
    g.qdense(0, block * (30 * 256 // 32), wtype, 0, out=DType.INT32, r=3)
    check_node(g.build(), rows(rng, 2, 256, 2, False), 0, tmp_path, flip=False)


# --- a one-layer tiny LLaMA ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_generation():
    weights = tiny_llama(0, DType.Q4_1, replace(TINY, layers=1))
    gen = generation_graph(weights, 3, 2, chunks=[2, 1])
    x = np.array([17, 200, 3], np.int32)
    return gen.model, x, run_model(gen.model, x)


def test_tiny_llama_every_node_in_vm(tiny_generation, tmp_path):
    model, x, run = tiny_generation
    # emit is in the registrations' task graphs: tests/ml/test_llm_task.py runs every one in the VM
    assert {n.op for n in model.nodes} >= V2_OPS - {Op.QUANTIZE, Op.ARGMAX_MERGE, Op.EMIT}
    for k in range(len(model.nodes)):
        check_node(model, x, k, tmp_path, run=run, flip=k == len(model.nodes) - 1)


def test_tiny_llama_whole_model_program(tiny_generation, tmp_path):
    model, x, run = tiny_generation
    store = PreimageStore(tmp_path)
    result = run_program(model_program_setup(model, x, run.state(len(model.nodes) - 1), store))
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == list(run.keys[1:])
    assert result.steps <= model_step_bound(model)
    assert result.memory_bytes <= model_memory_bound(model)


# --- requantize's half-to-even mode (ml-spec §4, p5 = 1: version 2 only) ------------------------------


def requantize_even_model():
    """Requantize nodes in mode 1 (and one in mode 0) over accumulators full of exact ties, positive and
    negative, on both parities, with both clamps; then an add of the mode-1 and the mode-0 quarters."""
    x = np.array(
        [I32_MIN, I32_MAX, 1 << 30, -(1 << 30), 3 << 29, -(3 << 29), *range(-40, 41)]
        + [int(v) for v in np.random.default_rng(3).integers(I32_MIN, I32_MAX + 1, 41)],
        np.int32,
    )
    g = GraphBuilder(int32(len(x)), version=2)
    quarter = g.requantize(0, 1, 2, 0, mode=1)  # x/4: ties at x ≡ 2 (mod 4)
    g.requantize(0, 1, 1, -10, lo=-20, hi=0, mode=1)  # x/2 − 10, both clamps
    g.requantize(0, 1 << 30, 60, 3, mode=1)  # x/2^30: ±3·2^29 → ±2
    g.requantize(0, 1 << 30, 62, 0, mode=1)  # −2^31·2^30 / 2^62 = −0.5 → 0
    g.requantize(0, 1518500250, 38, -5, mode=1)
    up = g.requantize(0, 1, 2, 0)  # mode 0: half up
    g.add_(quarter, up, 0, 1 << 30, 0, 1 << 30, 31, 0, -128, 127)
    return g.build(), x


def test_requantize_half_to_even_in_vm(tmp_path):
    """Every node in the node program: the native key (mode 1 and mode 0 differ on these ties, so a
    kernel that ignored p5 would give another key), exit 0 on the native claim and 1 on a changed byte,
    steps and memory within their bounds; the whole-model program too."""
    model, x = requantize_even_model()
    run = run_model(model, x)
    even, up = run.values[1], run.values[6]
    assert (even != up).sum() == 10  # the ties x = 4k + 2 with k even, k = −10 … 8
    assert even.tolist()[6 + 38 : 6 + 43] == [0, 0, 0, 0, 0] and even.tolist()[6 + 46] == 2  # −2 … 2; 6/4
    for k in range(len(model.nodes)):
        check_node(model, x, k, tmp_path, run=run)
    store = PreimageStore(tmp_path / "model")
    result = run_program(model_program_setup(model, x, run.state(len(model.nodes) - 1), store))
    assert result.exit_code == EXIT_VALID and result.keys == list(run.keys[1:])
    assert result.steps <= model_step_bound(model)


def requantize_channels_model():
    """conv2d → per-channel requantize (C = 4, mode 1) → dense → per-channel requantize (C = 7, mode 0):
    each channel its own (M0_c, t_c), far enough apart that a kernel which used one channel's pair for
    all, or another element-to-channel map, gives another output; the conv's channel 2 has ties, where
    the modes differ."""
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (6, 5, 3)).astype(np.int8)
    g = GraphBuilder(int8(6, 5, 3), version=2)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    w[2] = rng.integers(-1, 2, (3, 3, 3))  # channel 2: small accumulators, x/2 ties (mode 1 ≠ mode 0)
    conv = g.conv2d(0, w, np.array([-999, 500, 2, 9]))
    conv_t = np.array([[1518500250, 38], [1 << 30, 39], [1, 1], [2147483647, 42]], np.int32)
    q = g.requantize(conv, 0, 0, -3, mode=1, channels=conv_t)
    d = g.dense(q, rng.integers(-128, 128, (7, 48)).astype(np.int8), rng.integers(-9999, 9999, 7), zx=-3)
    dense_t = np.array([[1 << 20, 30], [1, 10], [3, 12], [1 << 30, 41], [5, 13], [1518500250, 41], [7, 13]])
    g.requantize(d, 0, 0, 5, lo=-100, hi=120, channels=dense_t.astype(np.int32))
    return g.build(), x, (conv_t, dense_t)


def test_requantize_channels_in_vm(tmp_path):
    """Both per-channel nodes (and the others) in the node program: numpy's key, exit 0 on the native
    claim and 1 on a changed byte, within the step and memory bounds; the whole-model program too."""
    model, x, tables = requantize_channels_model()
    run = run_model(model, x)
    for k, table, mode in ((1, tables[0], 1), (3, tables[1], 0)):
        acc = run.values[k]
        want = ops.requantize_channels(acc, table, *model.nodes[k].p[2:6])
        assert np.array_equal(run.values[k + 1], want)
        c = acc.shape[-1]
        for j in range(c):  # a single pair for every channel would give another output
            assert not np.array_equal(want, ops.requantize(acc, *table[j], *model.nodes[k].p[2:6]))
        assert len(np.unique(want)) > 4
        other = ops.requantize_channels(acc, table, *model.nodes[k].p[2:5], 1 - mode)
        assert mode == 0 or not np.array_equal(want, other)  # the conv's ties: a kernel ignoring p5 fails
    assert_every_node_and_the_model_program(model, x, run, tmp_path)


def assert_every_node_and_the_model_program(model, x, run, tmp_path) -> None:
    """Every node's program gives the native key (a changed claim exits 1), and the whole-model program
    gives every key within its bound."""
    for k in range(len(model.nodes)):
        check_node(model, x, k, tmp_path / str(k), run=run)
    store = PreimageStore(tmp_path / "model")
    result = run_program(model_program_setup(model, x, run.state(len(model.nodes) - 1), store))
    assert result.exit_code == EXIT_VALID and result.keys == list(run.keys[1:])
    assert result.steps <= model_step_bound(model)


def assert_tensor_rejected(model, x, k: int, corrupt, why: str, tmp_path) -> None:
    """Node ``k``'s first tensor replaced by ``corrupt(bytes)`` (its key in the record updated): the
    reader rejects the model and the node program exits 3."""
    old = model.nodes[k].tensor_keys[0]
    assert old is not None
    data = corrupt(model.tensors[old])
    key = tensor_key(data)
    manifest = model.manifest[: field(k, "key")] + key + model.manifest[field(k, "key") + 32 :]
    tensors = {**model.tensors, key: data}
    input_desc, nodes_ = decode_manifest(manifest)
    with pytest.raises(errors.ModelFormatError):
        Model.create(input_desc, nodes_, tensors, version=2)
    result = raw_run(tmp_path, model, x, k, manifest, tensors)
    assert result.exit_code == EXIT_MALFORMED, (why, result.stderr)


CHANNEL_CASES = [
    ("t_c = 63", lambda d: d[:12] + struct.pack("<i", 63) + d[16:]),
    ("t_c = 0", lambda d: d[:-4] + struct.pack("<i", 0)),
    ("M0_c = 0", lambda d: d[:8] + struct.pack("<i", 0) + d[12:]),
    ("M0_c = −1", lambda d: struct.pack("<i", -1) + d[4:]),
    ("a channel short", lambda d: d[:-8]),
    ("a channel more", lambda d: d + d[:8]),
]


@pytest.mark.parametrize("why, corrupt", CHANNEL_CASES, ids=[c[0] for c in CHANNEL_CASES])
def test_malformed_requantize_channels_exits_3(why, corrupt, tmp_path):
    """The conv's per-channel table replaced by a corrupt one (its key in the record updated): the
    reader rejects the model, the node program exits 3."""
    model, x, _ = requantize_channels_model()
    k = 1
    assert_tensor_rejected(model, x, k, corrupt, why, tmp_path)


@pytest.mark.parametrize("why", ["p0 = 1", "p1 = 1", "version 1", "a second key"])
def test_malformed_requantize_channels_record_exits_3(why, tmp_path):
    """A per-channel record with M0 or t set, in a version-1 manifest, or with a second tensor key."""
    model, x, _ = requantize_channels_model()
    k, manifest = 1, model.manifest
    if why == "p0 = 1":
        manifest = put_u32(manifest, field(k, "p", 0), 1)
    elif why == "p1 = 1":
        manifest = put_u32(manifest, field(k, "p", 1), 1)
    elif why == "version 1":
        manifest = put_u32(manifest, 4, 1)
    else:
        manifest = manifest[: field(k, "key", 1)] + b"\x03" * 32 + manifest[field(k, "key", 1) + 32 :]
    with pytest.raises(errors.ModelFormatError, match=rf"node {k} \(requantize\)"):
        decode_manifest(manifest)
    result = raw_run(tmp_path, model, x, k, manifest, dict(model.tensors))
    assert result.exit_code == EXIT_MALFORMED, (why, result.stderr)


@pytest.mark.parametrize(
    "why, mode, version",
    [("mode 1 in version 1", 1, 1), ("mode 2 in version 1", 2, 1), ("mode 3", 3, 2), ("mode −1", -1, 2)],
)
def test_malformed_requantize_mode_exits_3(why, mode, version, tmp_path):
    model, x = requantize_even_model()
    k = 5  # the mode-0 node: in version 1 only its p5 is wrong
    manifest = put_u32(model.manifest, field(k, "p", 5), mode)
    if version == 1:
        manifest = put_u32(manifest, 4, 1)
        for j in range(k):  # the mode-1 nodes before it to mode 0, so that node k alone is wrong
            manifest = put_u32(manifest, field(j, "p", 5), 0)
    with pytest.raises(errors.ParamRangeError, match=rf"node {k} \(requantize\): mode"):
        decode_manifest(manifest)
    result = raw_run(tmp_path, model, x, k, manifest, dict(model.tensors))
    assert result.exit_code == EXIT_MALFORMED, (why, result.stderr)
    assert result.stderr.startswith(b"ml: malformed: a param outside its range")


# --- requantize's float32 mode (ml-spec §4, p5 = 2: version 2 only, M0 < 2^24) ----------------------

F32_TABLE = np.array([[1, 25], [377, 26], [3313, 26], [2**24 - 1, 40]], np.int32)


def requantize_f32_model():
    """Mode-2 requantize nodes, scalar and per channel, over accumulators [16, 4] with the crafted values
    where float32's product (or fl(x)) lands on a tie, so that mode 1 gives other outputs; with clamps."""
    crafted = [83886081, -83886081, 445019, -445019, 91153, -91153, 4242 * 158201 // 377, I32_MIN, I32_MAX]
    rng = np.random.default_rng(4)
    x = np.array(crafted + [int(v) for v in rng.integers(-(2**27), 2**27, 64 - len(crafted))], np.int32)
    x = x.reshape(16, 4)
    x[:, 1] = [445019, -445019, 91153 * 3313 // 377, *rng.integers(-(2**26), 2**26, 13)]
    x[:, 2] = [91153, -91153, 445019, *rng.integers(-(2**26), 2**26, 13)]
    g = GraphBuilder(int32(16, 4), version=2)
    g.requantize(0, 1, 25, 0, mode=2)  # fl(x)/2^25
    g.requantize(0, 377, 26, -3, lo=-100, hi=90, mode=2)
    g.requantize(0, 2**24 - 1, 36, 5, mode=2)
    g.requantize(0, 0, 0, 1, mode=2, channels=F32_TABLE)
    g.requantize(0, 0, 0, -7, lo=-50, hi=50, mode=2, channels=F32_TABLE)
    return g.build(), x


def test_requantize_float32_mode_in_vm(tmp_path):
    """Every mode-2 node in the node program: the native key (mode 1 gives other outputs on these
    inputs, so a kernel rounding the exact product would give another key), exit 0 on the native claim
    and 1 on a changed byte, steps and memory within their bounds; the whole-model program too."""
    model, x = requantize_f32_model()
    run = run_model(model, x)
    for k, node in enumerate(model.nodes):
        p = node.p
        table = model.param(k, 0)
        if table is None:
            want = ops.requantize(x, p[0], p[1], *p[2:5], 2)
            even = ops.requantize(x, p[0], p[1], *p[2:5], 1)
        else:
            want = ops.requantize_channels(x, table, *p[2:5], 2)
            even = ops.requantize_channels(x, table, *p[2:5], 1)
        assert np.array_equal(run.values[k + 1], want)
        assert len(np.unique(want)) > 4
        if k != 2:
            assert not np.array_equal(want, even), k
    assert_every_node_and_the_model_program(model, x, run, tmp_path)


@pytest.mark.parametrize("m0", [2**24, 2**31 - 1])
def test_malformed_requantize_float32_m0_exits_3(m0, tmp_path):
    """A mode-2 record with M0 ≥ 2^24 (not exact in float32): the reader rejects, the node program exits 3."""
    model, x = requantize_f32_model()
    k = 1
    manifest = put_u32(model.manifest, field(k, "p", 0), m0)
    with pytest.raises(errors.ParamRangeError, match=rf"node {k} \(requantize\): M0 = {m0}"):
        decode_manifest(manifest)
    result = raw_run(tmp_path, model, x, k, manifest, dict(model.tensors))
    assert result.exit_code == EXIT_MALFORMED, result.stderr
    assert result.stderr.startswith(b"ml: malformed: a param outside its range")


@pytest.mark.parametrize("c", [0, 3])
def test_malformed_requantize_float32_table_exits_3(c, tmp_path):
    """A mode-2 per-channel table with a row's M0_c = 2^24: rejected by the reader and the node program."""
    model, x = requantize_f32_model()

    def corrupt(d: bytes) -> bytes:
        return d[: 8 * c] + struct.pack("<i", 2**24) + d[8 * c + 4 :]

    assert_tensor_rejected(model, x, 3, corrupt, f"M0_{c} = 2^24", tmp_path)


# --- malformed: the reader rejects, the node program exits 3 ------------------------------------------


def raw_run(tmp_path, model: Model, x: Any, k: int, manifest: bytes, tensors: dict[bytes, bytes]):
    """The node program on node ``k`` of ``manifest`` (a mutation of ``model``'s), its input values and
    ``S_{k−1}`` those of ``model`` on ``x``, the tensors as given; the claim is ``model``'s ``S_k``."""
    run = run_model(model, x)
    store = PreimageStore(tmp_path)
    commitment = store.put_chunk_merkle(manifest)
    for data in tensors.values():
        store.put_chunk_merkle(data)
    for v in model.nodes[k].inputs:
        store.put_chunk_merkle(value_bytes(run.values[v], model.values[v]))
    prev = put_state(store, run.state_preimage(k - 1))
    for ident, value in node_local_values(commitment, k, prev, run.state(k)).items():
        store.put_local(ident, ZERO_CALLER, ZERO_CONTEXT, value)
    oracle = OracleView(store, ZERO_CALLER, ZERO_CONTEXT)
    return run_program(ProgramSetup(NODE_PROGRAM, load_elf(NODE_PROGRAM), {}, oracle))


def put_u32(manifest: bytes, offset: int, value: int) -> bytes:
    return manifest[:offset] + struct.pack("<i" if value < 0 else "<I", value) + manifest[offset + 4 :]


def field(k: int, name: str, j: int = 0) -> int:
    """The offset of a field of node ``k``'s record."""
    return (
        node_offset(k)
        + {"op": 0, "dtype": 16, "rank": 20, "dims": 24 + 4 * j, "p": 40 + 4 * j, "key": 96 + 32 * j}[name]
    )


def small_v2_model():
    """One node of each op that reads a tensor or has a rule worth breaking, on small shapes."""
    rng = np.random.default_rng(5)
    w4 = gguf_quant.quantize_q4_1(rng.normal(0, 0.1, (6, 64)))
    w8 = gguf_quant.quantize_q8_0(rng.normal(0, 0.1, (5, 64)))
    f4, f8 = bl.smallest_f(w4, True), bl.smallest_f(w8, False)
    g = GraphBuilder(int32(2), version=2)
    nodes = {}
    e = nodes["embedding"] = g.embedding(0, w8, DType.Q8_0, f8, 64, 12)
    h = nodes["rmsnorm"] = g.rmsnorm(e, np.full(64, 4096, np.int16), 12, 168)
    q = nodes["qdense"] = g.qdense(h, w4, DType.Q4_1, f4, row0=1, m=4)
    nodes["qdense_argmax"] = g.qdense_argmax(h, w4, DType.Q4_1, f4, row0=0, m=6)
    r = nodes["rope"] = g.rope(q, rope_table(4, 4, 1e4), 4, 1)
    kv = g.concat(g.reshape(r, (2, 1, 4)), g.reshape(r, (2, 1, 4)), 1)
    nodes["attention"] = g.attention(r, kv, exp2_table(), 4, *attention_scale(4))
    nodes["swiglu"] = g.swiglu(r, r, sigmoid_table())
    nodes["slice"] = g.slice(r, 1, 1)
    record = g.slice(nodes["qdense_argmax"], 0, 1)
    nodes["emit"] = g.emit(g.concat(0, 0, 0), record, 0)
    nodes["quantize"] = g.quantize(r, DType.R8)
    nodes["concat"] = g.concat(r, r, 0)
    model = g.build()
    return model, np.array([3, 1], np.int32), {name: v - 1 for name, v in nodes.items()}


@pytest.fixture(scope="module")
def small():
    return small_v2_model()


def test_the_small_model_is_accepted(small, tmp_path):
    model, x, nodes = small
    for k in nodes.values():
        assert raw_run(tmp_path, model, x, k, model.manifest, dict(model.tensors)).exit_code == EXIT_VALID


RECORD_CASES = [
    ("v2 op in a version-1 manifest", "qdense", lambda m, k: put_u32(m, 4, 1)),
    ("rows past the weight", "qdense", lambda m, k: put_u32(m, field(k, "p", 3), 3)),
    ("Mt 0", "qdense", lambda m, k: put_u32(m, field(k, "p", 2), 0)),
    ("wtype 5", "qdense", lambda m, k: put_u32(m, field(k, "p", 0), 5)),
    ("F 25", "qdense", lambda m, k: put_u32(m, field(k, "p", 1), 25)),
    ("R on an r16 output", "qdense", lambda m, k: put_u32(m, field(k, "p", 4), 1)),
    ("r8 output", "qdense", lambda m, k: put_u32(m, field(k, "dtype"), int(DType.R8))),
    ("q4_1 output", "qdense", lambda m, k: put_u32(m, field(k, "dtype"), int(DType.Q4_1))),
    (
        "a second tensor key",
        "qdense",
        lambda m, k: m[: field(k, "key", 1)] + b"\x03" * 32 + m[field(k, "key", 1) + 32 :],
    ),
    ("no tensor key", "rmsnorm", lambda m, k: m[: field(k, "key")] + bytes(32) + m[field(k, "key") + 32 :]),
    ("argmax M 0", "qdense_argmax", lambda m, k: put_u32(m, field(k, "p", 4), 0)),
    ("argmax rows past the weight", "qdense_argmax", lambda m, k: put_u32(m, field(k, "p", 3), 1)),
    ("embedding H not whole blocks", "embedding", lambda m, k: put_u32(m, field(k, "dims", 1), 33)),
    ("embedding R 31", "embedding", lambda m, k: put_u32(m, field(k, "p", 3), 31)),
    ("rmsnorm eps 2^16 + 1", "rmsnorm", lambda m, k: put_u32(m, field(k, "p", 1), 65537)),
    ("rmsnorm Gf 31", "rmsnorm", lambda m, k: put_u32(m, field(k, "p", 0), 31)),
    ("rope hd odd", "rope", lambda m, k: put_u32(m, field(k, "p", 0), 3)),
    ("rope P < pos0 + T", "rope", lambda m, k: put_u32(m, field(k, "p", 2), 2)),
    ("attention mul 2^23", "attention", lambda m, k: put_u32(m, field(k, "p", 1), 1 << 23)),
    ("attention sa 63", "attention", lambda m, k: put_u32(m, field(k, "p", 2), 63)),
    ("attention hd not a head", "attention", lambda m, k: put_u32(m, field(k, "p", 0), 3)),
    ("slice past the rows", "slice", lambda m, k: put_u32(m, field(k, "p", 0), 2)),
    ("quantize r16 to r16", "quantize", lambda m, k: put_u32(m, field(k, "dtype"), int(DType.R16))),
    ("concat on the row axis", "concat", lambda m, k: put_u32(m, field(k, "p", 0), 1)),
    ("emit t past the last position", "emit", lambda m, k: put_u32(m, field(k, "p", 0), 1)),
    ("emit t negative", "emit", lambda m, k: put_u32(m, field(k, "p", 0), -1)),
    ("non-zero unused param", "swiglu", lambda m, k: put_u32(m, field(k, "p", 0), 1)),
]


@pytest.mark.parametrize("why, name, mutate", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_malformed_v2_record_exits_3(small, why, name, mutate, tmp_path):
    model, x, nodes = small
    k = nodes[name]
    manifest = mutate(model.manifest, k)
    with pytest.raises(errors.ModelFormatError):
        decode_manifest(manifest)
    result = raw_run(tmp_path, model, x, k, manifest, dict(model.tensors))
    assert result.exit_code == EXIT_MALFORMED, (why, result.stderr)
    assert result.stderr.startswith(b"ml: malformed: ")


def _scale_at(data: bytes, block: int, bs: int, offset: int, bits: int) -> bytes:
    at = block * bs + offset
    return data[:at] + struct.pack("<H", bits) + data[at + 2 :]


def _table(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, "<i4").tobytes()


TENSOR_CASES = [
    ("Inf scale", "qdense", lambda d: _scale_at(d, 4, 20, 0, 0x7C00)),
    ("NaN offset", "qdense", lambda d: _scale_at(d, 5, 20, 2, 0x7E01)),
    ("subnormal scale", "qdense", lambda d: _scale_at(d, 4, 20, 0, 0x0001)),
    ("scale of 2^24 at F", "qdense", lambda d: _scale_at(d, 6, 20, 0, 0x7BFF)),
    ("scale finer than 2^-F", "qdense", lambda d: _scale_at(d, 7, 20, 0, 0x0401)),
    ("q8_0 Inf in the row read", "embedding", lambda d: _scale_at(d, 3, 34, 0, 0xFC00)),
    ("a weight tensor one block short", "qdense", lambda d: d[:-20]),
    ("a weight tensor one byte long", "qdense_argmax", lambda d: d + b"\x00"),
    (
        "rope value 2^30 + 1 at a position read",
        "rope",
        lambda d: d[:20] + struct.pack("<i", (1 << 30) + 1) + d[24:],
    ),
    ("exp2 table X[0] = 2^30 − 1", "attention", lambda d: struct.pack("<i", (1 << 30) - 1) + d[4:]),
    ("exp2 table value −1", "attention", lambda d: d[:400] + struct.pack("<i", -1) + d[404:]),
    ("sigmoid value 2^30 + 1", "swiglu", lambda d: d[:-4] + struct.pack("<i", (1 << 30) + 1)),
    ("rmsnorm weights short", "rmsnorm", lambda d: d[:-2]),
]


@pytest.mark.parametrize("why, name, corrupt", TENSOR_CASES, ids=[c[0] for c in TENSOR_CASES])
def test_malformed_v2_tensor_exits_3(small, why, name, corrupt, tmp_path):
    """A node's tensor replaced by a corrupt one (its key in the record updated): the reader rejects
    the model, the node program exits 3."""
    model, x, nodes = small
    k = nodes[name]
    assert_tensor_rejected(model, x, k, corrupt, why, tmp_path)


def test_a_node_above_the_cap_exits_3_before_its_tensor(tmp_path):
    """qdense T = 1, K = 2^16, M = 8192 q8_0: above 2^31 steps; the program refuses it before reading
    the (absent) weight tensor."""
    g = GraphBuilder(r16(1, 64), version=2)
    g.qdense(0, (b"\x00\x3c" + bytes(32)) * 2 * 4, DType.Q8_0, 0)
    model = g.build()
    manifest = bytearray(model.manifest)
    struct.pack_into("<I", manifest, 24, 1 << 16)  # input r16 [1, 2^16]
    struct.pack_into("<I", manifest, field(0, "dims", 1), 8192)
    struct.pack_into("<I", manifest, field(0, "p", 2), 8192)
    with pytest.raises(errors.NodeCostError):
        decode_manifest(bytes(manifest))
    x = ops.rows_value(np.zeros(1), np.zeros((1, 64)), 2)
    result = raw_run(tmp_path, model, x, 0, bytes(manifest), {})
    assert result.exit_code == EXIT_MALFORMED and b"2^31" in result.stderr
    assert result.steps < 50_000


def test_block_dtype_as_the_input_exits_3(tmp_path):
    g = GraphBuilder(int32(4), version=2)
    g.add32(0, 0)
    model = g.build()
    manifest = put_u32(model.manifest, 12, int(DType.Q8_0))
    with pytest.raises(errors.ModelFormatError):
        decode_manifest(manifest)
    result = raw_run(tmp_path, model, np.zeros(4, np.int32), 0, manifest, {})
    assert result.exit_code == EXIT_MALFORMED


def test_record_size_is_unchanged():
    assert NODE_SIZE == 160 and int8(1).nbytes == 1 and int32(1).nbytes == 4
