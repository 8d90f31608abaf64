"""qdense on SmolLM2-135M's matrices: the compiled block kernels next to the float64 path they replaced
and a float32 matmul, and whole tokens of the integer runner next to the float32 model; prints one JSON
object.

    .venv/bin/python bench/qdense_speed.py [--repeat 30] [--skip-model]      (from the repository root)

- ``shapes``: per matrix of layer 0 (``K → M``) and the tied lm_head (``q8_0``, 49,152 rows), the
  milliseconds per call (median of ``--repeat``, weights prepared beforehand) at ``T = 1`` and
  ``T = 64`` of ``ops.qdense_acc`` (``new``: the kernels of opml.ml.qkernels on the GGUF bytes), the
  float64 path it replaced (``old_f64``: weights expanded to float64 ``[nb, 32, M]``, batched BLAS per
  block, the ``D·`` and ``M·`` terms in int64; kept here as it was), and a float32 numpy matmul of
  the same shape (``f32``). For the lm_head also ``qdense_argmax`` (``new_argmax``). The bytes each
  path reads per call are under ``bytes``; every ``new`` result is checked equal to ``old_f64``.
- ``model`` (a child process, for its own peak RSS): ``task_graph(weights, 8, 8)`` run on the prompt
  ``[504, 3575, 282, 4649]`` for 4 new tokens: load seconds, the first ``run_model`` (cold: the
  weight cache is built), the median warm one, per step (15 steps, one token each) with and without
  the keys and states (``ops_ms_per_step``: the nodes alone), the generated ids (must be
  ``[314, 7042, 30, 198]``) and the peak RSS.
- ``float32`` (a child process): the float32 reference (opml.ml.float_llama) per decoded token over a KV
  cache, and its peak RSS; ``ratio`` = integer tokens/s ÷ float32 tokens/s (the goal is ≥ 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numba
import numpy as np

from opml.ml import blocks, ops
from opml.ml.format import DType
from opml.ml.gguf_import import read_gguf
from opml.ml.llama import BlockMatrix
from opml.ml.tokenizer import smollm2_gguf

PROMPT = [504, 3575, 282, 4649]
EXPECTED = [314, 7042, 30, 198]
MAX_PROMPT = MAX_NEW = 8
STEPS = MAX_PROMPT + MAX_NEW - 1


def _ms(fn: Any, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 4)


def _rss_mb() -> float:
    """This process's peak RSS (``VmHWM``: unlike ``ru_maxrss`` it does not carry the parent's over an
    exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


# --- the float64 path as it was before opml.ml.qkernels ------------------------------------------


def _old_weights(rows: blocks.BlockRows) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    q = np.ascontiguousarray(np.asarray(rows.q).transpose(1, 2, 0), dtype=np.float64)  # [nb, 32, M]
    return q, rows.d, rows.m


def _old_acc(xq: np.ndarray, w: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> np.ndarray:
    q, d, m = w
    x = np.asarray(xq).astype(np.int64)
    t = x.shape[0]
    nb, mrows = q.shape[0], q.shape[2]
    xb = x.reshape(t, nb, 32)
    acc = np.empty((t, mrows), np.int64)
    step = max(1, (1 << 22) // max(1, nb * mrows))
    for t0 in range(0, t, step):
        part = xb[t0 : t0 + step]
        sums = np.matmul(part.transpose(1, 0, 2).astype(np.float64), q).astype(np.int64)
        acc[t0 : t0 + step] = (sums * d.T[:, None, :]).sum(axis=0)
    if m is not None:
        acc += xb.sum(axis=2) @ m.T
    return acc


# --- per shape --------------------------------------------------------------------------------------


def _shape(name: str, mat: BlockMatrix, repeat: int, rng: np.random.Generator) -> dict[str, Any]:
    is_q4_1 = mat.wtype is DType.Q4_1
    k, mrows = mat.cols, mat.rows
    new = ops.QWeights.read(mat.data, is_q4_1, k, slice(None), mat.f, name)
    old = _old_weights(blocks.decode_rows(mat.data, is_q4_1, k, slice(None), mat.f, name))
    rows = blocks.decode_rows(mat.data, is_q4_1, k, slice(None), mat.f, name)
    wint = rows.q.astype(np.float64) * rows.d[..., None] + (0 if rows.m is None else rows.m[..., None])
    wf32 = np.ascontiguousarray((wint.reshape(mrows, k) * 2.0**-mat.f).T, dtype=np.float32)  # [K, M]
    del rows, wint
    out: dict[str, Any] = {
        "k": k,
        "m": mrows,
        "wtype": mat.wtype.name.lower(),
        "bytes": {
            "new": new.blocks.nbytes + new.d.nbytes + (0 if new.m is None else new.m.nbytes),
            "old_f64": old[0].nbytes,
            "f32": wf32.nbytes,
        },
    }
    for t in (1, 64):
        x = rng.integers(-32768, 32768, (t, k)).astype(np.int16)
        xf = x.astype(np.float32)
        got = ops.qdense_acc(x, new)
        assert np.array_equal(got, _old_acc(x, old)), (name, t)
        n = repeat if t == 1 else max(3, repeat // 10)
        row: dict[str, float] = {
            "new": _ms(lambda x=x: ops.qdense_acc(x, new), n),
            "old_f64": _ms(lambda x=x: _old_acc(x, old), max(3, n // 5)),
            "f32": _ms(lambda xf=xf: xf @ wf32, n),
        }
        if name == "lm_head":
            rv = ops.rows_value(np.zeros(t, np.int64), x)
            rec = ops.qdense_argmax(rv, new, 0)
            assert rec[:, 0].tolist() == np.argmax(got, axis=1).tolist()
            row["new_argmax"] = _ms(lambda rv=rv: ops.qdense_argmax(rv, new, 0), n)
        out[f"T{t}_ms"] = row
    return out


def shapes(repeat: int) -> dict[str, Any]:
    weights = read_gguf(smollm2_gguf())
    layer = weights.layers[0]
    mats = {
        "attn_q": layer.wq,
        "attn_k": layer.wk,
        "ffn_gate": layer.gate,
        "ffn_down": layer.down,
        "lm_head": weights.embedding,
    }
    rng = np.random.default_rng(0)
    return {name: _shape(name, mat, repeat, rng) for name, mat in mats.items()}


# --- whole tokens (child processes) ----------------------------------------------------------------


def model_part(repeat: int) -> dict[str, Any]:
    from opml.ml import runner
    from opml.ml.llama import task_graph, task_input

    t0 = time.perf_counter()
    tg = task_graph(read_gguf(smollm2_gguf()), MAX_PROMPT, MAX_NEW)
    load = time.perf_counter() - t0
    x = task_input(PROMPT, len(EXPECTED), MAX_PROMPT, MAX_NEW)
    t0 = time.perf_counter()
    first = runner.run_model(tg.model, x)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = runner.run_model(tg.model, x)
        warm.append(time.perf_counter() - t0)
    assert np.array_equal(result.output, first.output)
    ops_only = []
    model = tg.model
    for _ in range(repeat):
        values = [model.check_input(x)]
        t0 = time.perf_counter()
        for i, node in enumerate(model.nodes):
            values.append(runner.apply_node(model, i, [values[r] for r in node.inputs]))
        ops_only.append(time.perf_counter() - t0)
    start = 2 + len(PROMPT)
    ids = np.asarray(first.output)[start : start + len(EXPECTED)].tolist()
    return {
        "load_s": round(load, 3),
        "cold_run_s": round(cold, 3),
        "warm_run_s": round(statistics.median(warm), 3),
        "ms_per_step": round(statistics.median(warm) / STEPS * 1e3, 2),
        "ops_ms_per_step": round(statistics.median(ops_only) / STEPS * 1e3, 2),
        "ids": ids,
        "ids_ok": ids == EXPECTED,
        "peak_rss_mb": _rss_mb(),
    }


def float_part(repeat: int) -> dict[str, Any]:
    from opml.ml.float_llama import FloatLlama, KVCache

    ref = FloatLlama(read_gguf(smollm2_gguf()), np.float32)
    per_token = []
    for _ in range(repeat):
        cache = KVCache()
        ref._forward(PROMPT, cache)
        t0 = time.perf_counter()
        for token in EXPECTED * 4:
            ref._head(ref._forward([token], cache))
        per_token.append((time.perf_counter() - t0) / (4 * len(EXPECTED)))
    return {"ms_per_token": round(statistics.median(per_token) * 1e3, 2), "peak_rss_mb": _rss_mb()}


def _child(part: str, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", part, "--repeat", str(repeat)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--part", choices=["model", "float32"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part == "model":
        print(json.dumps(model_part(args.repeat)))
        return
    if args.part == "float32":
        print(json.dumps(float_part(args.repeat)))
        return
    out: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "numba": numba.__version__,
        },
        "shapes": shapes(args.repeat),
    }
    if not args.skip_model:
        reps = max(3, args.repeat // 10)
        model = out["model"] = _child("model", reps)
        flt = out["float32"] = _child("float32", reps)
        out["ratio"] = round(flt["ms_per_token"] / model["ms_per_step"], 3)
        out["ratio_ops_only"] = round(flt["ms_per_token"] / model["ops_ms_per_step"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
