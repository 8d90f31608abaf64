"""Native inference next to the MIPS VM, and the native dense product next to BLAS; prints one JSON object.

    .venv/bin/python bench/ml_native_vs_vm.py [--repeat 5] [--int32-rows 128]      (from the repository root)

- ``models``: for each committed digits model, the native runner's time for one input (``run_model``:
  every value, key and state, median of ``--repeat``) and for the whole 540-image test split
  (``run_batch``), and the accuracy that batch gives.
- ``vm``: for each digits model on test image 0, per node and in total, the node program's VM
  instructions and fast-executor seconds (ml-spec §7.1, the game's phase 2; the run only, after a
  warm-up run has compiled the executor), its peak VM memory against the bound of §7.3, and the same
  for the whole-model program (§7.2, the single-phase mode). Every VM key is checked against the
  native one.
- ``dense_2048``: one ``dense`` node with int8 weights ``[2048, 2048]`` over a batch of 2048 int8
  inputs through the native runner (``run_batch``, weights already converted: ``warm``; and the first
  call, which converts them: ``cold``), numpy's int32 matmul of the same matrices (on the first
  ``--int32-rows`` rows of the batch, as it is slow; its rate is per multiply-accumulate, like the
  others) and a plain float64 BLAS matmul of the same matrices. Rates are multiply-accumulates per
  second; ``vs_float64_blas`` = native warm rate / BLAS rate (the goal is ≥ 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from opml.ml.format import GraphBuilder, Model, int8, read_model
from opml.ml.phase import (
    ProgramResult,
    ProgramSetup,
    model_memory_bound,
    model_program_setup,
    node_memory_bound,
    node_program_setup,
    run_program,
)
from opml.ml.runner import run_batch, run_model
from opml.oracle.store import PreimageStore

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"digits_mlp": (64,), "digits_cnn": (8, 8, 1)}
N = 2048


def _median_seconds(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _test_pixels() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    y = digits.target
    _, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    return digits.images[test].astype(np.int8), y[test]


def bench_models(repeat: int) -> dict[str, Any]:
    pixels, labels = _test_pixels()
    out: dict[str, Any] = {}
    for name, shape in MODELS.items():
        model = read_model(ROOT / "models" / f"{name}.opml")
        xs = pixels.reshape(len(labels), *shape)
        run_model(model, xs[0])  # warm the weight cache
        one = _median_seconds(lambda m=model, x=xs[0]: run_model(m, x), repeat)
        t0 = time.perf_counter()
        pred = np.asarray(run_batch(model, xs)).reshape(-1)
        batch = time.perf_counter() - t0
        out[name] = {
            "nodes": len(model.nodes),
            "native_single_seconds": round(one, 6),
            "native_single_note": "run_model: all values, keys and states S_-1 … S_N-1",
            "native_batch_seconds": round(batch, 4),
            "native_batch_images": len(labels),
            "native_batch_images_per_second": round(len(labels) / batch),
            "test_accuracy": round(float(np.mean(pred == labels)), 4),
        }
    return out


def _timed_run(setup: ProgramSetup) -> tuple[ProgramResult, float]:
    t0 = time.perf_counter()
    result = run_program(setup)
    return result, time.perf_counter() - t0


def bench_vm() -> dict[str, Any]:
    pixels, _ = _test_pixels()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="opml-bench-") as tmp:
        store = PreimageStore(tmp)
        for name, shape in MODELS.items():
            model = read_model(ROOT / "models" / f"{name}.opml")
            x = pixels[0].reshape(shape)
            run = run_model(model, x)
            n = len(model.nodes)
            run_program(node_program_setup(model, x, 0, run.state(0), store, run=run))  # compile
            nodes = []
            for k, node in enumerate(model.nodes):
                result, seconds = _timed_run(node_program_setup(model, x, k, run.state(k), store, run=run))
                assert result.exit_code == 0 and result.keys == [run.keys[k + 1]], (name, k)
                nodes.append(
                    {
                        "node": k,
                        "op": node.op.name.lower(),
                        "instructions": result.steps,
                        "seconds": round(seconds, 5),
                        "memory_bytes": result.memory_bytes,
                        "memory_bound_bytes": node_memory_bound(model, k),
                    }
                )
            whole, seconds = _timed_run(model_program_setup(model, x, run.state(n - 1), store))
            assert whole.exit_code == 0 and whole.keys == list(run.keys[1:]), name
            total_steps = sum(r["instructions"] for r in nodes)
            total_seconds = sum(r["seconds"] for r in nodes)
            out[name] = {
                "node_program": {
                    "nodes": nodes,
                    "total_instructions": total_steps,
                    "total_seconds": round(total_seconds, 4),
                    "instructions_per_second": round(total_steps / total_seconds),
                },
                "model_program": {
                    "instructions": whole.steps,
                    "seconds": round(seconds, 4),
                    "memory_bytes": whole.memory_bytes,
                    "memory_bound_bytes": model_memory_bound(model),
                },
            }
    return out


def _dense_model(w: np.ndarray) -> Model:
    g = GraphBuilder(int8(w.shape[1]))
    g.dense(0, w, None, zx=0)
    return g.build()


def bench_dense(repeat: int, int32_rows: int) -> dict[str, Any]:
    rng = np.random.default_rng(2048)
    w = rng.integers(-128, 128, size=(N, N), dtype=np.int64).astype(np.int8)
    x = rng.integers(-128, 128, size=(N, N), dtype=np.int64).astype(np.int8)
    macs = N * N * N

    model = _dense_model(w)
    t0 = time.perf_counter()
    native = np.asarray(run_batch(model, x))
    cold = time.perf_counter() - t0
    warm = _median_seconds(lambda: run_batch(model, x), repeat)

    wf, xf = w.astype(np.float64), x.astype(np.float64)
    blas = _median_seconds(lambda: xf @ wf.T, repeat)

    rows = min(int32_rows, N)
    x32, w32 = x[:rows].astype(np.int32), w.astype(np.int32)
    t0 = time.perf_counter()
    ref = x32 @ w32.T
    int32 = time.perf_counter() - t0
    assert np.array_equal(native[:rows], ref), "native dense differs from numpy's int32 matmul"

    def rate(seconds: float, n_macs: int) -> float:
        return n_macs / seconds

    native_rate, blas_rate = rate(warm, macs), rate(blas, macs)
    return {
        "shape": {"weights": [N, N], "batch": N, "macs": macs},
        "native_runner": {
            "warm_seconds": round(warm, 4),
            "cold_seconds": round(cold, 4),
            "warm_macs_per_second": round(native_rate),
        },
        "float64_blas": {"seconds": round(blas, 4), "macs_per_second": round(blas_rate)},
        "numpy_int32_matmul": {
            "rows": rows,
            "seconds": round(int32, 4),
            "macs_per_second": round(rate(int32, rows * N * N)),
        },
        "vs_float64_blas": round(native_rate / blas_rate, 3),
        "vs_float64_blas_cold": round(rate(cold, macs) / blas_rate, 3),
        "vs_numpy_int32": round(native_rate / rate(int32, rows * N * N), 1),
        "exact_vs_int32_rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--int32-rows", type=int, default=128)
    args = parser.parse_args()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
        "models": bench_models(args.repeat),
        "vm": bench_vm(),
        "dense_2048": bench_dense(args.repeat, args.int32_rows),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
