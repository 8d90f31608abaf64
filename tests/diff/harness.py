"""Step one state through the Python reference VM and through MIPS.sol, and compare.

A mismatch writes a replay fixture (JSON: the pre-state, its memory pages and the witness) to
``tests/diff/failures/``; ``test_replay.py`` re-checks every fixture there and in ``fixtures/``.
Move a fixed failure into ``fixtures/`` to keep it as a regression test.
"""

import importlib.util
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strategies import SYS_PREIMAGE_LENGTH, SYS_PREIMAGE_SELECT, UNKNOWN_KIND, OracleCase

from opml.oracle import PreimageStore
from opml.oracle.keys import local_ident_key
from opml.vm.memory import Memory
from opml.vm.preimage import OracleView
from opml.vm.state import VMState, decode_state, encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

HERE = Path(__file__).parent
COMPARED: Counter[str] = Counter()
"""States compared so far in this session, by label (instruction form or oracle case); ``make fuzz``
prints it (tests/conftest.py)."""
FAILURES = HERE / "failures"
FIXTURES = HERE / "fixtures"


@dataclass(frozen=True)
class Expected:
    state_data: bytes
    proof: bytes
    post_state: bytes
    post_hash: bytes


def python_step(state: VMState) -> Expected:
    """The witness for ``state``'s next step and the post-state the reference VM computes."""
    witness = step_witness(state)
    post = state.copy()
    step(post)
    post_state = encode_state(post)
    return Expected(witness.state_data, witness.proof, post_state, state_hash(post_state))


def contract_step(mips, sender, state_data: bytes, proof: bytes) -> tuple[bytes, bytes]:
    """Send ``step`` as a transaction; return the post-state hash and the post-state.

    A step from an exited state changes nothing and emits no event (vm-spec §4.1): its post-state
    is the pre-state, and the hash is what ``step`` returns.
    """
    receipt = mips.step(state_data, proof, sender=sender)
    logs = receipt.decode_logs(mips.StepExecuted)
    if not logs:
        return bytes(mips.step.call(state_data, proof)), state_data
    (log,) = logs
    return bytes(log.postStateHash), bytes(log.postState)


def write_fixture(label: str, state: VMState, expected: Expected, got: str, oracle_case=None) -> Path:
    """Write a replay fixture; ``oracle_case`` (an OracleCase) adds the preimage the step reads."""
    FAILURES.mkdir(exist_ok=True)
    fixture = {
        "label": label,
        "state_data": expected.state_data.hex(),
        "proof": expected.proof.hex(),
        "pages": {str(n): bytes(p).hex() for n, p in state.memory.pages.items() if any(p)},
        "expected_post_state": expected.post_state.hex(),
        "got": got,
    }
    if oracle_case is not None:
        fixture["oracle"] = {
            "syscall": oracle_case.syscall,
            "kind": oracle_case.kind,
            "data": oracle_case.data.hex(),
            "ident": oracle_case.ident,
        }
    # Hypothesis re-runs the minimal failing example last, so the file ends up holding that one.
    path = FAILURES / f"{label}.json"
    path.write_text(json.dumps(fixture, indent=1))
    return path


def load_fixture(path: Path) -> VMState | OracleCase:
    """The pre-state stored in a replay fixture, memory included (an OracleCase for oracle steps)."""
    fixture = json.loads(path.read_text())
    memory = Memory()
    for page_no, data in fixture["pages"].items():
        memory.write_bytes(int(page_no) << 12, bytes.fromhex(data))
    state = decode_state(bytes.fromhex(fixture["state_data"]), memory)
    state.stdout = state.stderr = None
    if "oracle" in fixture:
        case = fixture["oracle"]
        return OracleCase(state, case["syscall"], case["kind"], bytes.fromhex(case["data"]), case["ident"])
    return state


def assert_same_step(mips, sender, state: VMState, label: str) -> None:
    """Fail (and write a replay fixture) unless both VMs produce the same post-state."""
    expected = python_step(state)
    try:
        got_hash, got_state = contract_step(mips, sender, expected.state_data, expected.proof)
    except Exception as err:  # a revert on an honest witness is a disagreement too
        path = write_fixture(label, state, expected, f"revert: {err!r}")
        raise AssertionError(f"MIPS.sol reverted on an honest witness ({label}); replay: {path}") from err
    if (got_hash, got_state) != (expected.post_hash, expected.post_state):
        path = write_fixture(label, state, expected, got_state.hex())
        raise AssertionError(f"post-states differ for {label}; replay fixture: {path}")
    COMPARED[label] += 1


# --- Preimage oracle steps ---------------------------------------------------------------------------

LOCAL_CONTEXT = bytes.fromhex("c0" * 32)


def prepare_oracle_case(case, store, client) -> tuple[VMState, bytes]:
    """Put the case's preimage in ``store`` and on-chain (exactly what the step needs, through
    ``client``); return the pre-state and the local context the step runs with."""
    state = case.state.copy()
    if case.kind == "local":
        key = local_ident_key(case.ident)
        effective, _ = client.load_local(case.ident, LOCAL_CONTEXT, case.data)
    elif case.kind == UNKNOWN_KIND:
        key = bytes([(case.ident - 1) * 50]) + bytes(range(31))  # types 0, 50, 100, 150, 200
        state.preimage_key = key
        if case.syscall == SYS_PREIMAGE_SELECT and state.registers[4] % 32 == 0:
            state.memory.write_bytes(state.registers[4], key)
        return state, LOCAL_CONTEXT
    else:
        key = store.put_keccak(case.data) if case.kind == "keccak" else store.put_chunk_merkle(case.data)
        effective = key
    if case.syscall == SYS_PREIMAGE_SELECT:
        if state.registers[4] % 32 == 0:
            state.memory.write_bytes(state.registers[4], key)
    else:
        state.preimage_key = key
        if case.syscall == SYS_PREIMAGE_LENGTH:
            client.ensure_length(effective)
        elif state.registers[6] != 0:
            client.ensure_read(effective, state.registers[4])
    return state, LOCAL_CONTEXT


def assert_same_oracle_step(mips, sender, case, store, client, label: str) -> VMState:
    """Fail unless both VMs produce the same post-state for a preimage syscall step; return it."""
    state, local_context = prepare_oracle_case(case, store, client)
    oracle = OracleView(store, sender.address, local_context)
    witness = step_witness(state)
    post = state.copy()
    step(post, oracle)
    post_state = encode_state(post)
    receipt = mips.step(witness.state_data, witness.proof, local_context, sender=sender)
    (log,) = receipt.decode_logs(mips.StepExecuted)
    if (bytes(log.postStateHash), bytes(log.postState)) != (state_hash(post_state), post_state):
        expected = Expected(witness.state_data, witness.proof, post_state, state_hash(post_state))
        path = write_fixture(label, state, expected, bytes(log.postState).hex(), case)
        raise AssertionError(f"post-states differ for {label} ({case.kind}); replay fixture: {path}")
    COMPARED[label] += 1
    return post


@dataclass
class VolumeRun:
    """What a seeded CI subset of ``bench/diff_volume.py`` draws from: the bench module, its random
    generator, the keys of the preimages it loaded (into a store and the revm oracle) and the view
    of that store the reference VM asks."""

    bench: Any
    rng: random.Random
    keys_to_cases: dict[bytes, OracleCase]
    oracle: OracleView

    @property
    def keys(self) -> list[bytes]:
        return list(self.keys_to_cases)


def volume_run(revm, store_dir: Path, seed: int) -> VolumeRun:
    """Load ``bench/diff_volume.py`` and its preimages (into a store at ``store_dir`` and ``revm``'s
    oracle) with the random generator seeded by ``seed``."""
    spec = importlib.util.spec_from_file_location("diff_volume", HERE.parents[1] / "bench" / "diff_volume.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = random.Random(seed)
    store = PreimageStore(store_dir)
    cases = bench.load_preimages(rng, store, revm.oracle)
    return VolumeRun(bench, rng, cases, OracleView(store, bench.CALLER, bench.CONTEXT))
