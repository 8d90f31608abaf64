"""Mutation check of the suite: each seeded mutant of the Python VM or MIPS.sol must fail a test.

    .venv/bin/python bench/mutants.py [--only NAME ...]      (also: make mutants)

Every mutant is one exact text replacement (it must match exactly once, so a refactor cannot make a
mutant vanish silently) applied to a fresh copy of the committed tree (``git archive HEAD``) in a
temporary folder; the working tree is never touched. The copy's ``offchain`` shadows the installed
``opml`` package (PYTHONPATH), the copy compiles its own contracts, and the mutant's test selection
runs there with ``-x``. A mutant is caught when a test fails; a run that errors before any test ran
(a mutant that does not compile or import) counts as broken. The unmutated copy must pass the same
selections first. Prints a table and one JSON object; exits 1 if a mutant survives or is broken.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APE = ROOT / ".venv" / "bin" / "ape"

PY_INSTR = "offchain/opml/vm/instructions.py"
PY_WITNESS = "offchain/opml/vm/witness.py"
SOL_INSTR = "contracts/vm/lib/MIPSInstructions.sol"
SOL_MEMORY = "contracts/vm/lib/MIPSMemory.sol"

PY_UNIT = ["tests/offchain/test_vm_instructions.py", "tests/offchain/test_vm_witness.py"]
SOL_UNIT = ["tests/contracts/test_mips_step.py"]
DIFF = ["tests/diff/test_step_diff.py"]
QEMU = ["tests/offchain/test_vm_elf.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    side: str  # "python", "solidity" or "both"
    edits: tuple[tuple[str, str, str], ...]  # (file, exact text, replacement)
    tests: tuple[str, ...]


MUTANTS = [
    Mutant(
        "sc-never-stores",
        "python",
        ((PY_INSTR, "56: MemoryOp(4, lambda w, b, rt: rt),", "56: MemoryOp(4, lambda w, b, rt: w),"),),
        (*PY_UNIT, *DIFF),
    ),
    Mutant(
        "sc-never-stores",
        "solidity",
        ((SOL_INSTR, "else val = rt; // sw, sc", "else val = opcode == 56 ? w : rt; // sw, sc"),),
        (*SOL_UNIT, *DIFF),
    ),
    Mutant(
        "lwl-keeps-one-byte-too-many",
        "python",
        ((PY_INSTR, "(rt & (MASK32 >> 8 * (b + 1)))", "(rt & (MASK32 >> 8 * b))"),),
        (*PY_UNIT, *DIFF),
    ),
    Mutant(
        "lwl-keeps-one-byte-too-many",
        "solidity",
        ((SOL_INSTR, "(rt & (uint32(0xffffffff) >> (sh + 8)))", "(rt & (uint32(0xffffffff) >> sh))"),),
        (*SOL_UNIT, *DIFF),
    ),
    Mutant(
        "lh-without-sign-extension",
        "python",
        (
            (
                PY_INSTR,
                "lambda w, b, rt: sign_extend_16(w >> 8 * b)),  # lh",
                "lambda w, b, rt: (w >> 8 * b) & 0xFFFF),  # lh",
            ),
        ),
        (*PY_UNIT, *DIFF),
    ),
    Mutant(
        "lh-without-sign-extension",
        "solidity",
        ((SOL_INSTR, "val = signExtend16((w >> sh) & 0xffff); // lh", "val = (w >> sh) & 0xffff; // lh"),),
        (*SOL_UNIT, *DIFF),
    ),
    Mutant(
        "zero-mask-bit-5-ignored",
        "python",
        (
            (
                PY_WITNESS,
                "        if zero_mask >> level & 1:",
                "        if zero_mask >> level & 1 and level != 5:",
            ),
        ),
        ("tests/offchain/test_vm_witness.py", "tests/contracts/test_mips_tamper.py"),
    ),
    Mutant(
        "zero-mask-bit-5-ignored",
        "solidity",
        ((SOL_MEMORY, "switch and(shr(k, mask), 1)", "switch and(and(shr(k, mask), 1), iszero(eq(k, 5)))"),),
        (*SOL_UNIT, "tests/contracts/test_mips_tamper.py"),
    ),
    Mutant(
        "addiu-without-sign-extension",
        "both",
        (
            (PY_INSTR, "9: lambda rs, imm: rs + sign_extend_16(imm),", "9: lambda rs, imm: rs + imm,"),
            (
                SOL_INSTR,
                "uint32 simm = signExtend16(imm);",
                "uint32 simm = opcode == 9 ? imm : signExtend16(imm);",
            ),
        ),
        (*PY_UNIT, *SOL_UNIT, *QEMU),
    ),
    Mutant(
        "sltu-as-signed",
        "both",
        (
            (
                PY_INSTR,
                "43: lambda rs, rt, sa: int(rs < rt),",
                "43: lambda rs, rt, sa: int(signed(rs) < signed(rt)),",
            ),
            (
                SOL_INSTR,
                "if (fun == 43) return (rs < rt ? 1 : 0, 0);",
                "if (fun == 43) return (int32(rs) < int32(rt) ? 1 : 0, 0);",
            ),
        ),
        (*PY_UNIT, *SOL_UNIT, *QEMU),
    ),
]


def copy_tree(dest: Path) -> None:
    """The committed tree (HEAD) into ``dest``, with the built MIPS programs (they are not tracked)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    shutil.copytree(ROOT / "mips-toolchain" / "build", dest / "mips-toolchain" / "build")


def apply(dest: Path, mutant: Mutant) -> None:
    for file, old, new in mutant.edits:
        path = dest / file
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(
                f"mutant {mutant.name} ({mutant.side}): {file} holds {old!r} {text.count(old)} times"
            )
        path.write_text(text.replace(old, new))


def run_tests(dest: Path, tests: tuple[str, ...]) -> tuple[str, str]:
    """``("passed" | "caught" | "broken", first failing test or message)`` of the selection in ``dest``."""
    env = dict(os.environ, PYTHONPATH=str(dest / "offchain"), CI="")
    proc = subprocess.run(
        [str(APE), "test", *tests, "-x", "-q", "-p", "no:cacheprovider"],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^FAILED (\S+)", out, re.M)
    if proc.returncode == 0:
        return "passed", ""
    if failed:
        return "caught", failed[0]
    return "broken", out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="opml-mutants-") as tmp:
        baseline = Path(tmp) / "baseline"
        baseline.mkdir()
        copy_tree(baseline)
        import_check = subprocess.run(
            [sys.executable, "-c", "import opml; print(opml.__file__)"],
            env=dict(os.environ, PYTHONPATH=str(baseline / "offchain")),
            capture_output=True,
            text=True,
            check=True,
        )
        assert import_check.stdout.startswith(str(baseline)), (
            "the copy's opml does not shadow the installed one"
        )
        selection = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        status, detail = run_tests(baseline, selection)
        if status != "passed":
            print(f"the unmutated tree fails its selection: {detail}", file=sys.stderr)
            return 1
        for k, mutant in enumerate(mutants):
            dest = Path(tmp) / f"m{k}"
            dest.mkdir()
            copy_tree(dest)
            apply(dest, mutant)
            started = time.perf_counter()
            status, detail = run_tests(dest, mutant.tests)
            seconds = round(time.perf_counter() - started, 1)
            print(f"{mutant.name:>30} {mutant.side:>9}  {status:>7}  {detail}", flush=True)
            results.append(
                {
                    "name": mutant.name,
                    "side": mutant.side,
                    "caught": status == "caught",
                    "caught_by": detail if status == "caught" else None,
                    "status": status,
                    "seconds": seconds,
                }
            )
            shutil.rmtree(dest)
    caught = sum(r["caught"] for r in results)
    print(json.dumps({"mutants": results, "caught": caught, "total": len(results)}))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
