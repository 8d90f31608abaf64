"""Gas of MIPS.sol `step` transactions over a seeded sample of a real program's steps, as JSON.

    .venv/bin/python bench/step_gas.py [--elf PATH ...] [--samples 150] [--seed 1]
        [--network ethereum:local:test]

Every sampled step is sent as a real transaction on the chosen network (py-evm by default; anvil
with ``ethereum:local:foundry``), and its post-state hash is checked against the reference VM. The
default programs are toolchain test programs chosen so that every class occurs: ``recursion`` (ALU,
branches, stack loads and stores), ``unaligned`` (``lwl/lwr/swl/swr``) and ``hello`` (syscalls). The
output groups ``gas_used`` (intrinsic and calldata costs included, Prague rules) by instruction class
and reports the median and maximum per class, next to the witness size in bytes.
"""

import argparse
import json
import random
import statistics
from pathlib import Path

from ape import accounts, networks, project
from ape.logging import logger

from opml.chain.pyevm import lift_code_size_limit
from opml.vm.elf import load_elf
from opml.vm.fast import Trace
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "mips-toolchain" / "build"
DEFAULT_ELFS = [BUILD / "recursion", BUILD / "unaligned", BUILD / "hello"]

LOADS = {32, 33, 35, 36, 37, 48}
STORES = {40, 41, 43, 56}
UNALIGNED = {34, 38, 42, 46}
BRANCHES = {1, 2, 3, 4, 5, 6, 7}


def instruction_class(insn: int) -> str:
    """The gas-budget class of docs/vm-spec.md §9 that an instruction word belongs to."""
    opcode, funct = insn >> 26, insn & 0x3F
    if opcode == 0 and funct == 12:
        return "syscall"
    if opcode == 0 and funct in (8, 9):
        return "branch"
    if opcode in BRANCHES:
        return "branch"
    if opcode in LOADS:
        return "load"
    if opcode in STORES:
        return "store"
    if opcode in UNALIGNED:
        return "unaligned"
    return "alu"


def sample_steps(elf: Path, samples: int, seed: int) -> list:
    """Pre-states of ``samples`` distinct steps of the program, chosen by a seeded RNG."""
    initial = load_elf(elf)
    initial.stdout = initial.stderr = None
    trace = Trace(initial)
    picks = sorted(random.Random(seed).sample(range(trace.final_step), min(samples, trace.final_step)))
    states = []
    for n in picks:
        state = trace.state_at(n)
        state.stdout = state.stderr = None
        states.append(state)
    return states


def measure(states: list) -> dict[str, list[tuple[int, int]]]:
    """``(gas_used, witness bytes)`` of each sampled step, grouped by instruction class."""
    sender = accounts.test_accounts[0]
    oracle = sender.deploy(project.PreimageOracle)
    mips = sender.deploy(project.MIPS, oracle.address)
    by_class: dict[str, list[tuple[int, int]]] = {}
    for state in states:
        insn = state.memory.read_u32(state.pc)
        witness = step_witness(state)
        post = state.copy()
        step(post)
        receipt = mips.step(witness.state_data, witness.proof, sender=sender)
        (log,) = receipt.decode_logs(mips.StepExecuted)
        if bytes(log.postStateHash) != state_hash(encode_state(post)):
            raise SystemExit(f"MIPS.sol disagrees with the reference at step {state.step}")
        calldata = len(witness.state_data) + len(witness.proof)
        by_class.setdefault(instruction_class(insn), []).append((receipt.gas_used, calldata))
    return by_class


def summarize(by_class: dict[str, list[tuple[int, int]]]) -> dict:
    return {
        name: {
            "count": len(rows),
            "median_gas": int(statistics.median(g for g, _ in rows)),
            "max_gas": max(g for g, _ in rows),
            "median_witness_bytes": int(statistics.median(c for _, c in rows)),
        }
        for name, rows in sorted(by_class.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elf", type=Path, action="append", help="repeatable; default: see above")
    parser.add_argument("--samples", type=int, default=150, help="sampled steps per program")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--network", default="ethereum:local:test")
    args = parser.parse_args()

    logger.set_level("ERROR")  # stdout carries only the JSON
    lift_code_size_limit()
    elfs = args.elf or DEFAULT_ELFS
    states = [state for elf in elfs for state in sample_steps(elf, args.samples, args.seed)]
    with networks.parse_network_choice(args.network):
        by_class = measure(states)
    all_gas = [gas for rows in by_class.values() for gas, _ in rows]
    print(
        json.dumps(
            {
                "programs": [elf.name for elf in elfs],
                "network": args.network,
                "samples": len(states),
                "seed": args.seed,
                "median_gas": int(statistics.median(all_gas)),
                "max_gas": max(all_gas),
                "classes": summarize(by_class),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
