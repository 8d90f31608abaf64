"""The long differential run: random single-step states through the Python reference VM and `MIPS.sol`
in an in-process revm; prints one JSON object (count, mismatches, rate, states per instruction form).

    .venv/bin/python bench/diff_volume.py [--states 1000000] [--seed 1]      (from the repository root)

Every instruction form of tests/diff/strategies.py is drawn with equal weight (plus fully random
words, which must panic alike), with random registers, `hi`/`lo`, and `pc`/`nextPC` (sometimes in a
delay slot); loads and stores hit a random offset of a random data page; system calls include
`write`, `brk`, `mmap`, unknown numbers and the oracle's `preimage_select`/`length`/`read` of keccak,
chunk-Merkle and local preimages that the contract's oracle holds. For each state the contract's
post-state hash must equal the reference's (or both must reject the state). Mismatches are counted
and the first ones listed in the JSON, and each writes a replay fixture to tests/diff/failures/ as the
gate does (tests/diff/harness.py); the exit status is 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "diff"), str(ROOT / "tests")]

from harness import Expected, write_fixture  # noqa: E402
from strategies import (  # noqa: E402
    FORMS,
    IMMEDIATE,
    MEMORY,
    REGIMM,
    SPECIAL,
    SPECIAL2,
    SYSCALL_NUMBERS,
    TRAPS,
    OracleCase,
)

from opml.chain.revm import DEFAULT_CALLER, InProcessEVM, RevmCallError  # noqa: E402
from opml.errors import OpmlError  # noqa: E402
from opml.oracle import PreimageStore  # noqa: E402
from opml.oracle.keys import local_ident_key  # noqa: E402
from opml.vm.memory import Memory  # noqa: E402
from opml.vm.preimage import OracleView  # noqa: E402
from opml.vm.state import VMState, encode_state, state_hash  # noqa: E402
from opml.vm.step import step  # noqa: E402
from opml.vm.witness import step_witness  # noqa: E402

TEXT = 0x00400000
DATA_PAGES = [0x10000000, 0x10001000, 0x7FFFF000, 0x00410000]
ORACLE_CALLS = [9001, 9002, 9003]
PREIMAGE_SIZES = {
    "keccak": [0, 1, 31, 32, 33, 100],
    "chunk-merkle": [0, 1, 32, 33, 100, 300],
    "local": [0, 1, 20, 32],
}
# The caller and context of the contract's `step(bytes,bytes)` in revm: local keys are localized with them.
CALLER, CONTEXT = bytes.fromhex(DEFAULT_CALLER[2:]), bytes(32)


def _encoding(rng: random.Random, name: str) -> int:
    """A random word of form ``name`` (the same families as tests/diff/strategies.py)."""
    reg = lambda: rng.randrange(32)  # noqa: E731
    if name in SPECIAL:
        return (reg() << 21) | (reg() << 16) | (reg() << 11) | (rng.randrange(32) << 6) | SPECIAL[name]
    if name in TRAPS:
        return (reg() << 21) | (reg() << 16) | (rng.randrange(0x400) << 6) | TRAPS[name]
    if name in IMMEDIATE:
        return (IMMEDIATE[name] << 26) | (reg() << 21) | (reg() << 16) | rng.randrange(1 << 16)
    if name in REGIMM:
        return (1 << 26) | (reg() << 21) | (REGIMM[name] << 16) | rng.randrange(1 << 16)
    if name in SPECIAL2:
        return (0x1C << 26) | (reg() << 21) | (reg() << 16) | (reg() << 11) | SPECIAL2[name]
    if name in MEMORY:
        return (MEMORY[name][0] << 26) | (reg() << 21) | (reg() << 16) | rng.randrange(1 << 16)
    if name in ("j", "jal"):
        return ((2 if name == "j" else 3) << 26) | rng.randrange(1 << 26)
    if name == "break":
        return (rng.randrange(1 << 20) << 6) | 13
    if name == "syscall":
        return 12
    return rng.randrange(1 << 32)  # "random"


def random_state(rng: random.Random, name: str, keys: list[bytes]) -> VMState:
    """A state whose next instruction is a random word of form ``name``."""
    memory = Memory()
    pc = TEXT + 4 * rng.randrange(1 << 10)
    word = _encoding(rng, name)
    memory.write_u32(pc, word)
    for page in rng.sample(DATA_PAGES, 2):
        memory.write_bytes(page + 32 * rng.randrange(128), rng.randbytes(64))
    regs = [0] + [rng.choice([rng.randrange(1 << 32), rng.randrange(256), 0xFFFFFFFF]) for _ in range(31)]
    if name in MEMORY_FORMS:  # aim the address at a data page (an aligned one most of the time)
        base = (word >> 21) & 31
        imm = word & 0xFFFF
        imm -= (imm & 0x8000) << 1
        target = rng.choice(DATA_PAGES) + rng.randrange(4096)
        if rng.random() < 0.8:
            target -= target % MEMORY_SIZES[name]
        if base:
            regs[base] = (target - imm) & 0xFFFFFFFF
    key = rng.choice(keys)
    if name == "syscall":
        regs[2] = rng.choice(SYSCALL_NUMBERS + ORACLE_CALLS * 3)
        if regs[2] == 9001:  # select: the key in a leaf of a data page (sometimes unaligned)
            at = rng.choice(DATA_PAGES) + 32 * rng.randrange(100)
            memory.write_bytes(at, key)
            regs[4] = at + (rng.randrange(1, 32) if rng.random() < 0.1 else 0)
        elif regs[2] == 9003:
            regs[4], regs[5] = rng.randrange(120), rng.choice(DATA_PAGES) + rng.randrange(4096)
            regs[6] = rng.choice([0, 1, 7, 32, 100, rng.randrange(1 << 32)])
    in_delay_slot = rng.random() < 0.15
    next_pc = (pc + 4 * rng.randrange(2, 1 << 10)) & 0xFFFFFFFF if in_delay_slot else pc + 4
    return VMState(
        memory=memory,
        preimage_key=key if rng.random() < 0.9 else rng.randbytes(32),
        pc=pc,
        next_pc=next_pc,
        lo=rng.randrange(1 << 32),
        hi=rng.randrange(1 << 32),
        brk=0x10100000,
        heap=0x20000000 + 4096 * rng.randrange(1 << 10),
        exited=rng.random() < 0.01,
        exit_code=rng.randrange(256),
        registers=regs,
        stdout=None,
        stderr=None,
    )


MEMORY_SIZES = {name: size for name, (_, size) in MEMORY.items()}
MEMORY_FORMS = set(MEMORY_SIZES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from ape import project

    evm = InProcessEVM()
    oracle_contract = evm.deploy(project.PreimageOracle.contract_type)
    mips = evm.deploy(project.MIPS.contract_type, oracle_contract.address)
    store = PreimageStore(tempfile.mkdtemp(prefix="opml-diff-volume-"))
    rng = random.Random(args.seed)
    preimages = load_preimages(rng, store, oracle_contract)
    keys = list(preimages)
    oracle = OracleView(store, CALLER, CONTEXT)
    names = sorted(FORMS)
    histogram: Counter[str] = Counter()
    oracle_calls: Counter[str] = Counter()  # preimage syscalls by the type of the selected key
    rejected = 0  # states both sides refuse (the reference raises, the contract reverts)
    mismatches = []
    started = time.perf_counter()
    for i in range(args.states):
        name = names[i % len(names)]
        state = random_state(rng, name, keys)
        witness, want, got = outcomes(state, oracle, mips)
        histogram[name] += 1
        if state.registers[2] in ORACLE_CALLS and state.preimage_key in preimages and name == "syscall":
            oracle_calls[preimages[state.preimage_key].kind] += 1
        rejected += want is None and got is None
        if got != want:
            mismatches.append(
                {"form": name, "index": i, "state": witness.state_data.hex(), "proof": witness.proof.hex()}
            )
            write_mismatch_fixture(
                f"volume-{args.seed}-{i}-{name}", state, witness, want, got, preimages, oracle
            )
        if (i + 1) % 100_000 == 0:
            print(f"{i + 1} states, {len(mismatches)} mismatches", file=sys.stderr)
    seconds = time.perf_counter() - started
    report = {
        "states": args.states,
        "seed": args.seed,
        "mismatches": len(mismatches),
        "rejected_by_both": rejected,
        "seconds": round(seconds, 1),
        "states_per_second": round(args.states / seconds),
        "forms": dict(sorted(histogram.items())),
        "oracle_calls_by_key_type": dict(sorted(oracle_calls.items())),
        "first_mismatches": mismatches[:5],
    }
    print(json.dumps(report, indent=2))
    return 1 if mismatches else 0


def load_preimages(rng: random.Random, store: PreimageStore, oracle_contract) -> dict[bytes, OracleCase]:
    """Random preimages of every key type (PREIMAGE_SIZES), in ``store`` and wholly in the contract's
    oracle (local values stored by CALLER for CONTEXT); returns the key a guest selects (for a local
    value its identifier key) → what it names (an OracleCase without a state)."""
    cases = {}
    for kind, sizes in PREIMAGE_SIZES.items():
        for size in sizes:
            data = rng.randbytes(size)
            ident = rng.randrange(1, 1 << 32)
            cases[_load(kind, data, ident, store, oracle_contract)] = OracleCase(None, 0, kind, data, ident)
    return cases


def _load(kind: str, data: bytes, ident: int, store: PreimageStore, oracle_contract) -> bytes:
    """Put ``data`` in ``store`` and on-chain under a ``kind`` key; return the key a guest selects."""
    if kind == "local":
        store.put_local(ident, CALLER, CONTEXT, data)
        word = data + bytes(32 - len(data))
        oracle_contract.call(
            "loadLocalData(uint256,bytes32,bytes32,uint256)",
            ["uint256", "bytes32", "bytes32", "uint256"],
            [ident, CONTEXT, word, len(data)],
        )
        return local_ident_key(ident)
    if kind == "keccak":
        key = store.put_keccak(data)
        for part in range(0, max(len(data), 1), 32):
            oracle_contract.call(
                "loadKeccak256PreimagePart(uint256,bytes)", ["uint256", "bytes"], [part, data]
            )
        return key
    key = store.put_chunk_merkle(data)
    for part in range(0, max(len(data), 1), 32):
        oracle_contract.call(
            "loadChunkMerklePart(bytes32,bytes32,uint256,uint256,bytes32,bytes32[])",
            ["bytes32", "bytes32", "uint256", "uint256", "bytes32", "bytes32[]"],
            list(store.proof(key, part).args()),
        )
    return key


def outcomes(state: VMState, oracle: OracleView, mips) -> tuple:
    """``(witness, reference post-state hash, contract post-state hash)`` of ``state``'s step; a side
    that refuses the state gives None."""
    witness = step_witness(state)
    try:
        post = state.copy()
        step(post, oracle)
        want: bytes | None = state_hash(encode_state(post))
    except OpmlError:
        want = None
    try:
        got: bytes | None = evm_step(mips, witness.state_data, witness.proof)
    except RevmCallError:
        got = None
    return witness, want, got


def write_mismatch_fixture(label, state, witness, want, got, preimages, oracle) -> Path:
    """A replay fixture in tests/diff/failures/, as the gate writes them (tests/diff/harness.py)."""
    post = state.copy()
    try:
        step(post, oracle)
        post_state = encode_state(post)
    except OpmlError:
        post_state = b""
    expected = Expected(witness.state_data, witness.proof, post_state, want or b"")
    syscall = state.registers[2] if state.memory.read_u32(state.pc) == 12 else None
    case = None
    if syscall in (9001, 9002, 9003) and state.preimage_key in preimages:
        named = preimages[state.preimage_key]
        case = OracleCase(state, syscall, named.kind, named.data, named.ident)
    return write_fixture(label, state, expected, "revert" if got is None else got.hex(), case)


def evm_step(mips, state_data: bytes, proof: bytes) -> bytes:
    return mips.call("step(bytes,bytes)", ["bytes", "bytes"], [state_data, proof])


if __name__ == "__main__":
    sys.exit(main())
