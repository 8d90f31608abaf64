"""Speed of chunk-Merkle keys of large data and of run commitments; prints one JSON object.

    nice .venv/bin/python bench/commit_speed.py [--mib 256] [--repeat 3] [--seed 1]    (repository root)

Times are CPU seconds of this process (``time.process_time``, one core: the kernel is single-threaded),
so that other load on a shared machine does not count; ``wall_s`` is given next to them.

- ``kernel``: the first call of the compiled Keccak kernel (``opml.hashing.bulk``) in this process:
  a compile when numba has no cached copy yet (``cached_before`` false), else the cache load.
- ``chunk_key``: ``ChunkTree.from_bytes(data).key`` (what ``tensor_key`` computes) of ``--mib`` MiB of
  random data held in a numpy array, best of ``--repeat``; ``chunk_key_file``: the same from a file
  through ``ChunkTree.from_file`` (a read-only memory map, hashed in place; the file is in the page
  cache, having just been written), best of ``--repeat``.
- ``pysha3``: keccak256 of 64-byte messages, one Python call each: messages per second, and the MiB/s
  a chunk tree would get at that rate (one message per 32 bytes of data).
- ``python_tree``: the chunk root computed as before the compiled kernel (each level a ``b"".join`` of
  pysha3 digests) of 8 MiB, checked against the compiled root.
- ``run_commitments``: every ``S_i`` of a run of N nodes (the N + 1 prefix keys of N + 1 random keys):
  ``prefix_keys`` (incremental) for N = 1k … 64k, with ``t / (N log2 N)`` normalised to the first N
  (flat for O(N log N)); and one ``tensor_key`` per prefix (the former runner, from scratch, now on
  the compiled kernel) for N = 1k and 4k, with ``t / N²`` normalised to N = 1k (flat for O(N²); its
  fixed cost per prefix still weighs at 1k). Both give the same keys; each time is the best of
  ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import sha3

from opml.hashing import ZERO_HASHES
from opml.hashing.bulk import LANES, hash_messages
from opml.hashing.bulk import __file__ as bulk_file
from opml.ml.format import tensor_key
from opml.oracle.chunk_tree import ChunkTree, prefix_keys

MIB = 1 << 20


def machine() -> dict[str, Any]:
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("model name")), ""
    )
    flags = next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), [])
    return {
        "cpu": model or platform.processor(),
        "flags": [f for f in ("sse2", "avx", "avx2", "bmi1", "bmi2", "avx512f") if f in flags],
        "python": platform.python_version(),
        "numba": numba.__version__,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU and wall seconds of one call, and its result."""
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - c0, time.perf_counter() - w0, result


def bench_kernel() -> dict[str, Any]:
    cached = any(Path(bulk_file).parent.glob("__pycache__/bulk._hash_groups-*.nbi"))
    _, wall, _ = timed(lambda: hash_messages(bytes(64 * LANES)))
    return {"cached_before": cached, "first_call_s": round(wall, 3)}


def bench_chunk_key(mib: int, repeat: int, seed: int) -> dict[str, Any]:
    data = np.random.default_rng(seed).integers(0, 256, mib * MIB, dtype=np.uint8)
    runs = [timed(lambda: ChunkTree.from_bytes(data).key) for _ in range(repeat)]
    cpu, wall, key = min(runs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.bin"
        data.tofile(path)
        fcpu, fwall, fkey = min(timed(lambda: ChunkTree.from_file(path).key) for _ in range(repeat))
    assert fkey == key
    return {
        "chunk_key": {
            "mib": mib,
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "mib_per_s": round(mib / cpu, 1),
            "all_cpu_s": sorted(round(r[0], 3) for r in runs),
        },
        "chunk_key_file": {
            "mib": mib,
            "cpu_s": round(fcpu, 3),
            "wall_s": round(fwall, 3),
            "mib_per_s": round(mib / fcpu, 1),
        },
    }


def bench_pysha3(messages: int, seed: int) -> dict[str, Any]:
    mv = memoryview(np.random.default_rng(seed).integers(0, 256, 64 * messages, dtype=np.uint8))
    k = sha3.keccak_256
    cpu, _, _ = timed(lambda: [k(mv[i : i + 64]).digest() for i in range(0, 64 * messages, 64)])
    rate = messages / cpu
    return {
        "messages": messages,
        "messages_per_s": round(rate),
        "chunk_tree_mib_per_s": round(32 * rate / MIB, 1),
    }


def python_root(data: bytes) -> bytes:
    """The chunk root level by level with one pysha3 call per parent (the former ``hash_level``)."""
    nodes = data + bytes(-len(data) % 32)
    level = 0
    while len(nodes) > 32:
        mv = memoryview(nodes)
        even = len(mv) - len(mv) % 64
        out = b"".join([sha3.keccak_256(mv[i : i + 64]).digest() for i in range(0, even, 64)])
        if even != len(mv):
            out += sha3.keccak_256(bytes(mv[even:]) + ZERO_HASHES[level]).digest()
        nodes, level = out, level + 1
    return nodes


def bench_python_tree(mib: int, seed: int) -> dict[str, Any]:
    data = np.random.default_rng(seed).integers(0, 256, mib * MIB, dtype=np.uint8).tobytes()
    cpu, _, root = timed(lambda: python_root(data))
    assert root == ChunkTree.from_bytes(data).root
    return {"mib": mib, "cpu_s": round(cpu, 3), "mib_per_s": round(mib / cpu, 1)}


def bench_run_commitments(repeat: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    incremental, scratch = [], []
    for n in (1024, 4096, 16384, 65536):
        keys = [rng.bytes(32) for _ in range(n + 1)]
        cpu, _, states = min(timed(lambda keys=keys: prefix_keys(keys)) for _ in range(repeat))
        incremental.append({"nodes": n, "cpu_s": round(cpu, 4), "per_n_log2_n": cpu / (n * math.log2(n))})
        if n <= 4096:
            joined = b"".join(keys)
            prefixes = [joined[: 32 * m] for m in range(1, n + 2)]
            scpu, _, want = min(timed(lambda p=prefixes: [tensor_key(d) for d in p]) for _ in range(repeat))
            assert want == states
            scratch.append({"nodes": n, "cpu_s": round(scpu, 4), "per_n_squared": scpu / n**2})
    for rows, unit in ((incremental, "per_n_log2_n"), (scratch, "per_n_squared")):
        first = rows[0][unit]
        for row in rows:
            row[unit] = round(row[unit] / first, 3)
    return {"incremental": incremental, "from_scratch": scratch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = {"machine": machine(), "kernel": bench_kernel()}
    report.update(bench_chunk_key(args.mib, args.repeat, args.seed))
    report["pysha3"] = bench_pysha3(1 << 19, args.seed)
    report["python_tree"] = bench_python_tree(8, args.seed)
    report["run_commitments"] = bench_run_commitments(args.repeat, args.seed)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
