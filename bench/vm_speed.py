"""Speed of the MIPS VM executors on one program, printed as one JSON object.

    python bench/vm_speed.py [--elf PATH] [--ref-seconds 3] [--interval 1000000] [--seed 1]

Measured in one run on the same program (by default ``bench/programs/vmbench.c``, compiled here with
``mipsel-linux-gnu-gcc`` and the ``mips-toolchain/runtime``; about 15 M steps):

* ``reference``: the Python reference ``opml.vm.step.step`` (a prefix of ``--ref-seconds``);
* ``fast``: ``opml.vm.fast.FastVM`` from the initial state to the exit (numba compile excluded);
* ``unicorn``: unicorn 2.1.4 without hooks except a syscall interrupt hook, from ``_start`` to the
  ``exit_group`` syscall in ``_start`` (``emu_start(until=...)``).  Only a speed reference: its
  instruction count is taken from the fast VM (the same instruction stream);
* ``trace``: ``Trace`` construction over the whole run, then for random steps ``n``:
  ``state_at(n)`` (restore the checkpoint, run the rest), the state hash (Merkle root included), and
  ``opml.vm.witness.step_witness``.
"""

import argparse
import json
import platform
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from opml.vm.elf import load_elf
from opml.vm.fast import FastVM, Trace
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

ROOT = Path(__file__).resolve().parents[1]

RUNTIME = ROOT / "mips-toolchain" / "runtime"
CFLAGS = [
    *("-O2", "-ffreestanding", "-nostdlib", "-static"),
    *("-mno-abicalls", "-fno-pic", "-G0", "-march=mips32"),
]


def build_benchmark(out_dir: Path) -> Path:
    """Compile bench/programs/vmbench.c with the mips-toolchain runtime; return the ELF path."""
    cc = shutil.which("mipsel-linux-gnu-gcc")
    if cc is None:
        raise SystemExit("mipsel-linux-gnu-gcc not found: `make -C mips-toolchain check-tools` installs it")
    src = ROOT / "bench" / "programs" / "vmbench.c"
    out = out_dir / "vmbench"
    rt = [RUNTIME / "crt0.S", RUNTIME / "syscall.c", RUNTIME / "rt.c"]
    cmd = [
        cc,
        *CFLAGS,
        f"-I{RUNTIME}",
        "-T",
        str(RUNTIME / "link.ld"),
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=0x1000",
        "-o",
        str(out),
        *map(str, rt),
        str(src),
        "-lgcc",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def bench_reference(state, seconds: float) -> dict:
    s = state.copy()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while not s.exited:
        for _ in range(10_000):
            step(s)
        if time.perf_counter() > deadline:
            break
    dt = time.perf_counter() - t0
    return {"steps": s.step, "seconds": round(dt, 3), "instr_per_s": s.step / dt}


def bench_fast(state, repeats: int) -> dict:
    warm = FastVM.from_state(state, copy_memory=True)
    warm.run(1000)  # load (or compile) the kernel
    times = []
    for _ in range(repeats):
        vm = FastVM.from_state(state, copy_memory=True)
        t0 = time.perf_counter()
        vm.run()
        times.append(time.perf_counter() - t0)
    dt = min(times)
    final = vm.to_state()
    return {
        "steps": vm.step,
        "seconds_best": round(dt, 4),
        "seconds_all": [round(t, 4) for t in times],
        "instr_per_s": vm.step / dt,
        "exit_code": vm.exit_code,
        "stdout": final.stdout.decode(errors="replace"),
    }


def bench_unicorn(elf_path: Path, steps: int, repeats: int) -> dict:
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_MIPS, UC_HOOK_INTR, UC_MODE_LITTLE_ENDIAN, UC_MODE_MIPS32, Uc
    from unicorn.mips_const import (
        UC_MIPS_REG_0,
        UC_MIPS_REG_2,
        UC_MIPS_REG_4,
        UC_MIPS_REG_5,
        UC_MIPS_REG_6,
        UC_MIPS_REG_7,
        UC_MIPS_REG_29,
        UC_MIPS_REG_HI,
        UC_MIPS_REG_LO,
    )

    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        entry = elf["e_entry"]
        segs = [
            (s["p_vaddr"], s["p_memsz"], s.data()) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"
        ]
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name("_start")[0]
        start_size = sym["st_size"]
    uc = Uc(UC_ARCH_MIPS, UC_MODE_MIPS32 + UC_MODE_LITTLE_ENDIAN)
    lo = min(v for v, _, _ in segs) & ~0xFFF
    hi = (max(v + m for v, m, _ in segs) + 0xFFF) & ~0xFFF
    uc.mem_map(lo, hi - lo)
    for vaddr, _, data in segs:
        uc.mem_write(vaddr, data)
    uc.mem_map(0x7FE00000, 0x200000)  # stack, STACK_TOP = 0x7FFFF000 (argc at $sp reads 0)
    # The exit_group syscall in _start (crt0.S): the first `syscall` word in _start.
    code = uc.mem_read(entry, start_size)
    exit_pc = next(entry + i for i in range(0, start_size, 4) if code[i : i + 4] == b"\x0c\x00\x00\x00")
    out = bytearray()

    def on_syscall(uc, intno, _):
        if uc.reg_read(UC_MIPS_REG_2) == 4004:  # write: collect it, return count
            n = uc.reg_read(UC_MIPS_REG_6)
            out.extend(uc.mem_read(uc.reg_read(UC_MIPS_REG_5), n))
            uc.reg_write(UC_MIPS_REG_2, n)
        uc.reg_write(UC_MIPS_REG_7, 0)

    uc.hook_add(UC_HOOK_INTR, on_syscall)
    times = []
    for _ in range(repeats):
        for vaddr, memsz, data in segs:  # fresh memory image and registers for every run
            uc.mem_write(vaddr, data + bytes(memsz - len(data)))
        for reg in range(1, 32):
            uc.reg_write(UC_MIPS_REG_0 + reg, 0)
        uc.reg_write(UC_MIPS_REG_29, 0x7FFFF000)
        uc.reg_write(UC_MIPS_REG_HI, 0)
        uc.reg_write(UC_MIPS_REG_LO, 0)
        out.clear()
        t0 = time.perf_counter()
        uc.emu_start(entry, exit_pc)
        times.append(time.perf_counter() - t0)
    dt = min(times)
    return {
        "steps_from_fast_vm": steps,
        "seconds_best": round(dt, 4),
        "seconds_all": [round(t, 4) for t in times],
        "instr_per_s": steps / dt,
        "exit_code": uc.reg_read(UC_MIPS_REG_4) & 0xFF,
        "stdout": out.decode(errors="replace"),
    }


def bench_trace(state, interval: int, seed: int, samples: int) -> dict:
    t0 = time.perf_counter()
    trace = Trace(state, checkpoint_interval=interval)
    build = time.perf_counter() - t0
    rng = random.Random(seed)
    queries = []
    for _ in range(samples):
        n = rng.randrange(trace.final_step)
        t1 = time.perf_counter()
        s = trace.state_at(n, copy=False)
        t2 = time.perf_counter()
        h = state_hash(encode_state(s))
        t3 = time.perf_counter()
        w = step_witness(s)
        t4 = time.perf_counter()
        queries.append(
            {
                "n": n,
                "state_at_s": round(t2 - t1, 4),
                "state_hash_s": round(t3 - t2, 4),
                "step_witness_s": round(t4 - t3, 4),
                "total_s": round(t4 - t1, 4),
                "state_hash": "0x" + h.hex(),
                "proof_bytes": len(w.proof),
            }
        )
    return {
        "final_step": trace.final_step,
        "checkpoint_interval": interval,
        "checkpoints": len(trace.checkpoint_steps),
        "build_s": round(build, 3),
        "checkpoint_mib": round(trace.memory_bytes() / 2**20, 2),
        "queries": queries,
        "median_total_s": sorted(q["total_s"] for q in queries)[len(queries) // 2],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elf", type=Path, help="program to measure (default: build bench/programs/vmbench.c)")
    ap.add_argument("--ref-seconds", type=float, default=3.0)
    ap.add_argument("--interval", type=int, default=1_000_000, help="Trace checkpoint interval")
    ap.add_argument("--samples", type=int, default=5, help="random state_at queries")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="runs of fast and unicorn (best is reported)")
    ap.add_argument("--no-unicorn", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        elf = args.elf or build_benchmark(Path(tmp))
        state = load_elf(elf)
        result = {
            "program": str(args.elf or "bench/programs/vmbench.c"),
            "machine": platform.processor() or platform.machine(),
        }
        result["fast"] = bench_fast(state, args.repeats)
        result["reference"] = bench_reference(state, args.ref_seconds)
        if not args.no_unicorn:
            result["unicorn"] = bench_unicorn(elf, result["fast"]["steps"], args.repeats)
        result["trace"] = bench_trace(state, args.interval, args.seed, args.samples)
    result["speedup_fast_vs_reference"] = result["fast"]["instr_per_s"] / result["reference"]["instr_per_s"]
    if "unicorn" in result:
        result["fast_vs_unicorn"] = result["fast"]["instr_per_s"] / result["unicorn"]["instr_per_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
