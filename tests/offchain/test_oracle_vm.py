"""The preimage system calls of vm-spec §5.5 in the reference VM, the verifier and the fast executor.

* every edge of ``preimage_select`` / ``preimage_length`` / ``preimage_read`` runs one step in the
  reference ``step``, in ``apply_step_proof`` fed ``step_witness`` (recorded without an oracle:
  the step touches its leaves before it asks), and in ``FastVM`` with the read in the numba kernel
  (oracle with ``preimage_array``) and in Python (oracle without); all must agree on the encoded state
  and memory;
* keccak, chunk-Merkle and local keys through :class:`OracleView` over a :class:`PreimageStore`;
* ``mips-toolchain/build/stream_checksum`` in lockstep (reference vs fast) on a small tensor, and the
  acceptance run: a 64 MiB tensor streamed through ``opml vm run`` (fast executor, a subprocess).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import _by_hand
import eth_abi
import numpy as np
import pytest
from _toolchain import build_toolchain
from click.testing import CliRunner
from test_fast_asm import assert_same_memory, lockstep

from opml.cli import main
from opml.hashing import keccak256
from opml.oracle import PreimageStore, SparseChunkTree, chunk_merkle_key
from opml.oracle.checksum import stream_checksum
from opml.oracle.errors import PreimageNotFoundError
from opml.oracle.keys import local_ident_key
from opml.vm.asm import encode, load_program
from opml.vm.elf import load_elf
from opml.vm.fast import FastVM, Trace
from opml.vm.preimage import OracleView, PreimageOracle
from opml.vm.state import VMState, encode_state
from opml.vm.step import step
from opml.vm.witness import (
    STEP_WITH_CONTEXT_SELECTOR,
    apply_step_proof,
    decode_memory_proof,
    encode_step_calldata,
    step_witness,
)

BASE = 0x00400000
DATA = 0x10000000  # another leaf (and page) than the code
V0, A0, A1, A2, A3 = 2, 4, 5, 6, 7
EINVAL, EFBIG = 22, 27
CALLER = bytes.fromhex("ab" * 20)
CONTEXT = bytes.fromhex("5c" * 32)


# --- oracles -----------------------------------------------------------------------------------------


class FakeOracle:
    """Preimages by key (bytes, or an int: a length with no data); every question is recorded."""

    def __init__(self, preimages: dict):
        self.preimages = preimages
        self.asked: list[tuple] = []

    def effective_key(self, key: bytes) -> bytes:
        return bytes(key)

    def _get(self, key: bytes):
        if key not in self.preimages:
            raise PreimageNotFoundError(f"fake oracle: no preimage for {key.hex()}")
        return self.preimages[key]

    def preimage_length(self, effective_key: bytes) -> int:
        self.asked.append(("length", effective_key))
        value = self._get(effective_key)
        return value if isinstance(value, int) else len(value)

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes:
        self.asked.append(("part", effective_key, part_offset))
        data = self._get(effective_key)
        assert part_offset % 32 == 0 and part_offset < len(data)
        part = data[part_offset : part_offset + 32]
        return part + bytes(32 - len(part))


class ArrayOracle(FakeOracle):
    """A FakeOracle that also hands the fast executor whole arrays (reads run in the kernel)."""

    def preimage_array(self, effective_key: bytes):
        value = self._get(effective_key)
        return None if isinstance(value, int) else np.frombuffer(value, dtype=np.uint8)


class PythonOnly:
    """Hides ``preimage_array`` of an oracle: the fast executor then reads through Python per call."""

    def __init__(self, oracle):
        self.oracle = oracle

    def effective_key(self, key):
        return self.oracle.effective_key(key)

    def preimage_length(self, key):
        return self.oracle.preimage_length(key)

    def preimage_part(self, key, part_offset):
        return self.oracle.preimage_part(key, part_offset)


KEY = bytes([3]) + bytes(range(1, 32))  # a chunk-Merkle-typed key (the fake oracle ignores types)
DATA_100 = bytes((7 * i + 3) & 0xFF for i in range(100))


def oracles(preimages: dict) -> list:
    return [FakeOracle(preimages), ArrayOracle(preimages)]


# --- one step everywhere -------------------------------------------------------------------------------


def syscall_state(number: int, *args: int, key: bytes = KEY, data: dict | None = None) -> VMState:
    state = load_program([encode("syscall")], BASE)
    state.preimage_key = key
    state.registers[V0] = number
    for reg, value in zip((A0, A1, A2), args, strict=False):
        state.registers[reg] = value
    state.registers[9] = 0x99  # unrelated
    for addr, blob in (data or {}).items():
        state.memory.write_bytes(addr, blob)
    return state


def touched_leaves(state: VMState) -> tuple[int, ...]:
    """The leaves the next step of ``state`` touches, as its witness records them."""
    return step_witness(state).leaves


def data_proof(proof: bytes) -> bytes:
    _, _, end = decode_memory_proof(proof, 0, 27)
    return proof[end:]


def one_step(state: VMState, preimages: dict) -> tuple[VMState, bytes]:
    """Run the step from ``state`` in the reference, the verifier and the fast VM (kernel and Python
    reads); assert they agree; return (reference post-state, proof)."""
    ref = state.copy()
    step(ref, FakeOracle(preimages))
    witness = step_witness(state)
    assert apply_step_proof(witness.state_data, witness.proof, FakeOracle(preimages)) == encode_state(ref)
    for oracle in oracles(preimages):
        vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
        vm.run(state.step + 1)
        got = vm.to_state()
        assert encode_state(got) == encode_state(ref), type(oracle).__name__
        assert_same_memory(ref.memory, vm)
    return ref, witness.proof


def ok(state: VMState, value: int) -> None:
    assert (state.registers[V0], state.registers[A3]) == (value, 0)
    assert state.pc == BASE + 4 and state.registers[9] == 0x99 and not state.exited


def failed(state: VMState, errno: int) -> None:
    assert (state.registers[V0], state.registers[A3]) == (errno, 1)
    assert state.pc == BASE + 4 and not state.exited


# --- preimage_select -----------------------------------------------------------------------------------


def test_select_reads_the_key_leaf_with_a_data_proof():
    new_key = bytes([2]) + bytes(range(100, 131))
    state = syscall_state(9001, DATA + 64, data={DATA + 64: new_key, DATA + 96: b"\xff" * 32})
    assert touched_leaves(state) == (BASE >> 5, (DATA + 64) >> 5)
    ref, proof = one_step(state, {})
    ok(ref, 0)
    assert ref.preimage_key == new_key  # the leaf in address order is the key in EVM order
    assert data_proof(proof)  # another leaf than the instruction's


def test_select_in_the_instruction_leaf_needs_no_data_proof():
    state = syscall_state(9001, BASE)
    ref, proof = one_step(state, {})
    ok(ref, 0)
    assert ref.preimage_key == b"\x0c" + bytes(31)  # the leaf: the syscall word 0x0000000C, little-endian
    assert data_proof(proof) == b""


@pytest.mark.parametrize("offset", [1, 4, 16, 31])
def test_select_unaligned_is_einval_without_data_proof(offset):
    state = syscall_state(9001, DATA + offset, data={DATA: b"\x01" * 64})
    assert touched_leaves(state) == (BASE >> 5,)
    ref, proof = one_step(state, {})
    failed(ref, EINVAL)
    assert ref.preimage_key == KEY and data_proof(proof) == b""


# --- preimage_length -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, errno",
    [
        (0, 0),
        (1, 0),
        (100, 0),
        ((1 << 32) - 1, 0),
        (1 << 32, EFBIG),
        ((1 << 32) + 5, EFBIG),
        (1 << 40, EFBIG),
    ],
)
def test_length(length, errno):
    state = syscall_state(9002)
    preimages = {KEY: DATA_100[:length] if length <= 100 else length}
    ref, proof = one_step(state, preimages)
    if errno:
        failed(ref, errno)
    else:
        ok(ref, length)
    assert data_proof(proof) == b""


# --- preimage_read -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, buf_offset, count, n",
    [
        (0, 0, 32, 32),
        (0, 0, 100, 32),  # at most one part
        (0, 0, 5, 5),  # count
        (30, 0, 10, 2),  # crosses a part boundary: truncated at the part's end
        (64, 28, 10, 4),  # buf near the end of its leaf: truncated at the leaf's end
        (5, 31, 10, 1),  # the last byte of the leaf
        (33, 1, 31, 31),
        (96, 0, 32, 4),  # the last, partial part: truncated at the length
        (99, 7, 5, 1),  # the very last byte
        (100, 0, 5, 0),  # offset == len: end of data
        (101, 0, 5, 0),  # offset > len
        (4096, 0, 32, 0),
        ((1 << 32) - 1, 0, 0xFFFFFFFF, 0),
    ],
)
def test_read(offset, buf_offset, count, n):
    buf = DATA + 0x40 + buf_offset
    fill = bytes([0xAA]) * 96
    state = syscall_state(9003, offset, buf, count, data={DATA + 0x20: fill})
    assert touched_leaves(state) == (BASE >> 5, buf >> 5)
    ref, proof = one_step(state, {KEY: DATA_100})
    ok(ref, n)
    want = bytearray(fill)
    want[0x20 + buf_offset : 0x20 + buf_offset + n] = DATA_100[offset : offset + n]
    assert ref.memory.read_bytes(DATA + 0x20, 96) == bytes(want)  # nothing else changes
    assert data_proof(proof)  # the data proof of buf's leaf, even when nothing is read


def test_read_count_zero_asks_nothing_and_has_no_data_proof():
    state = syscall_state(9003, 0, DATA + 3, 0)
    assert touched_leaves(state) == (BASE >> 5,)
    oracle = FakeOracle({})  # holds nothing: a question would raise
    step(state, oracle)
    ok(state, 0)
    assert oracle.asked == []
    state = syscall_state(9003, 0, DATA + 3, 0)
    _, proof = one_step(state, {})
    assert data_proof(proof) == b""
    step(syscall_state(9003, 5, DATA, 0))  # and needs no oracle at all


def test_read_asks_length_then_the_one_part():
    oracle = FakeOracle({KEY: DATA_100})
    step(syscall_state(9003, 70, DATA, 32), oracle)
    assert oracle.asked == [("length", KEY), ("part", KEY, 64)]
    oracle = FakeOracle({KEY: DATA_100})
    step(syscall_state(9003, 100, DATA, 32), oracle)
    assert oracle.asked == [("length", KEY)]  # at the end: the length alone


def test_read_of_an_empty_preimage_and_into_the_instruction_leaf():
    ref, _ = one_step(syscall_state(9003, 0, DATA, 32), {KEY: b""})
    ok(ref, 0)
    ref, proof = one_step(syscall_state(9003, 3, BASE + 8, 32), {KEY: DATA_100})  # overwrites code
    ok(ref, 24)
    assert ref.memory.read_bytes(BASE + 8, 24) == DATA_100[3:27]
    assert data_proof(proof) == b""


def test_read_beyond_4_gib_offsets_of_a_huge_preimage_via_python():
    # A length of 2^33 with no array: the fast VM reads through preimage_part; offsets stay u32.
    class Huge(FakeOracle):
        def preimage_part(self, key, part_offset):
            self.asked.append(("part", key, part_offset))
            return part_offset.to_bytes(32, "little")

    state = syscall_state(9003, 0xFFFFFFF0, DATA, 32)
    ref = state.copy()
    step(ref, Huge({KEY: 1 << 33}))
    ok(ref, 16)
    assert ref.memory.read_bytes(DATA, 16) == (0xFFFFFFE0).to_bytes(32, "little")[16:]
    vm = FastVM.from_state(state, copy_memory=True, oracle=Huge({KEY: 1 << 33}))
    vm.run(1)
    assert encode_state(vm.to_state()) == encode_state(ref)


# --- missing data and no oracle --------------------------------------------------------------------------


@pytest.mark.parametrize("number, args", [(9002, ()), (9003, (0, DATA, 32))])
def test_missing_oracle_data_raises_and_leaves_the_state_unchanged(number, args):
    state = syscall_state(number, *args)
    before = encode_state(state)
    with pytest.raises(PreimageNotFoundError, match="no oracle was given: pass one"):
        step(state)
    assert encode_state(state) == before and state.step == 0
    with pytest.raises(PreimageNotFoundError, match="fake oracle"):
        step(state, FakeOracle({}))
    assert encode_state(state) == before
    witness = step_witness(state)
    with pytest.raises(PreimageNotFoundError):
        apply_step_proof(witness.state_data, witness.proof)
    for oracle in (None, *oracles({})):
        vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
        with pytest.raises(PreimageNotFoundError):
            vm.run(1)
        assert encode_state(vm.to_state()) == before
    # Once the data is there, the same state steps.
    step(state, FakeOracle({KEY: DATA_100}))
    assert state.step == 1


def test_select_needs_no_oracle():
    state = syscall_state(9001, DATA, data={DATA: KEY})
    step(state)
    ok(state, 0)
    assert state.preimage_key == KEY


# --- OracleView over a PreimageStore: the three key types -------------------------------------------------


@pytest.fixture
def store(tmp_path):
    return PreimageStore(tmp_path / "store")


def test_oracle_view_key_types(store):
    blob = bytes(range(256)) * 3
    keccak = store.put_keccak(blob[:77])
    merkle = store.put_chunk_merkle(blob)
    local_value = b"\x11" * 20
    localized = store.put_local(7, CALLER, CONTEXT, local_value)
    view = OracleView(store, CALLER, CONTEXT)
    assert isinstance(view, PreimageOracle)
    assert keccak == _by_hand.keccak_key(blob[:77]) and merkle == _by_hand.chunk_merkle_key(blob)
    assert localized == _by_hand.local_key(7, CALLER, CONTEXT)
    cases = [(keccak, blob[:77]), (merkle, blob), (local_ident_key(7), local_value)]
    for key, data in cases:
        effective = view.effective_key(key)
        assert effective == (localized if key[0] == 1 else key)
        assert view.preimage_length(effective) == len(data)
        assert view.preimage_part(effective, 0) == data[:32] + bytes(max(0, 32 - len(data)))
        for offset in (0, 5, 40, len(data) - 1, len(data), len(data) + 40):
            state = syscall_state(9003, offset, DATA + 8, 64, key=key)
            for oracle in (view, PythonOnly(view)):
                ref = state.copy()
                step(ref, oracle)
                n = max(0, min(64, 32 - offset % 32, 24, len(data) - offset))
                ok(ref, n)
                assert ref.memory.read_bytes(DATA + 8, n) == data[offset : offset + n]
                vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
                vm.run(1)
                assert encode_state(vm.to_state()) == encode_state(ref)
            witness = step_witness(state)
            assert apply_step_proof(witness.state_data, witness.proof, view) == encode_state(ref)


def test_oracle_view_localizes_with_its_caller_and_context(store):
    store.put_local(1, CALLER, CONTEXT, b"\x42" * 32)
    state = syscall_state(9002, key=local_ident_key(1))
    ref = state.copy()
    step(ref, OracleView(store, CALLER, CONTEXT))
    ok(ref, 32)
    assert ref.preimage_key == local_ident_key(1)  # the state keeps the key as selected
    for caller, context in ((bytes(20), CONTEXT), (CALLER, bytes(32))):
        view = OracleView(store, caller, context)
        assert view.effective_key(local_ident_key(1)) == _by_hand.local_key(1, caller, context)
        with pytest.raises(PreimageNotFoundError, match="put_local"):
            step(state.copy(), view)


def test_a_replaced_local_value_is_read_anew_by_the_fast_vm(store):
    """The caller may overwrite a local value (oracle-spec §2); the reference reads the store on every
    access, so the fast VM must not keep the old bytes in its kernel from one run to the next."""
    buf = DATA + 0x40
    reread = [encode("syscall"), encode("addiu", V0, 0, 9003), encode("syscall")]
    state = load_program(reread, BASE)
    state.preimage_key = local_ident_key(1)
    state.registers[V0], state.registers[A0], state.registers[A1], state.registers[A2] = 9003, 0, buf, 4
    store.put_local(1, CALLER, CONTEXT, b"\x11" * 32)
    oracle = OracleView(store, CALLER, CONTEXT)
    vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
    reference = state.copy()
    vm.run(1)
    step(reference, oracle)
    assert vm.to_state().memory.read_bytes(buf, 4) == b"\x11" * 4
    store.put_local(1, CALLER, CONTEXT, b"\x22" * 32)  # replaced between the two reads
    vm.run(3)
    step(reference, oracle)
    step(reference, oracle)
    assert reference.memory.read_bytes(buf, 4) == b"\x22" * 4
    assert encode_state(vm.to_state()) == encode_state(reference)


def test_oracle_view_messages(store):
    view = OracleView(store)
    with pytest.raises(PreimageNotFoundError, match="opml oracle put"):
        view.preimage_length(chunk_merkle_key(bytes(32), 5))
    with pytest.raises(PreimageNotFoundError, match="no known type"):
        view.preimage_length(bytes(32))  # the key of a state that never selected one
    assert view.effective_key(bytes(32)) == bytes(32)
    assert str(PreimageNotFoundError("plain")) == "plain"  # not KeyError's repr


def test_step_calldata_with_local_context():
    state_data, proof = b"\x01" * 226, b"\x02" * 40
    calldata = encode_step_calldata(state_data, proof, CONTEXT)
    assert keccak256(b"step(bytes,bytes,bytes32)")[:4] == STEP_WITH_CONTEXT_SELECTOR
    assert calldata[:4] == STEP_WITH_CONTEXT_SELECTOR
    assert eth_abi.decode(["bytes", "bytes", "bytes32"], calldata[4:]) == (state_data, proof, CONTEXT)
    assert encode_step_calldata(state_data, proof)[:4] == keccak256(b"step(bytes,bytes)")[:4]
    with pytest.raises(ValueError):
        encode_step_calldata(state_data, proof, b"\x00" * 31)


# --- stream_checksum ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream_checksum_elf():
    return build_toolchain() / "stream_checksum"


def tensor(size: int, seed: int = 2024) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def tensor_store(root: Path, data) -> tuple[PreimageStore, bytes]:
    store = PreimageStore(root)
    key = store.put_chunk_merkle(data)
    store.put_local(1, CALLER, CONTEXT, key)
    return store, key


def expected_output(data) -> bytes:
    return f"checksum 0x{stream_checksum(data):08x} bytes {len(data)}\n".encode()


def test_stream_checksum_lockstep_reference_vs_fast(stream_checksum_elf, tmp_path):
    data = tensor(100 * 1024)
    store, key = tensor_store(tmp_path / "store", data)
    oracle = OracleView(store, CALLER, CONTEXT)
    final = lockstep(load_elf(stream_checksum_elf), oracle=oracle, chunk=1 << 16)
    assert final.exit_code == 0 and bytes(final.stdout) == expected_output(data)
    assert final.preimage_key == key


def test_stream_checksum_lockstep_with_python_reads(stream_checksum_elf, tmp_path):
    data = tensor(5000 + 3, seed=7)
    store, _ = tensor_store(tmp_path / "store", data)
    final = lockstep(load_elf(stream_checksum_elf), oracle=PythonOnly(OracleView(store, CALLER, CONTEXT)))
    assert bytes(final.stdout) == expected_output(data)


def test_stream_checksum_of_a_sparse_tensor_on_the_fast_vm(stream_checksum_elf, tmp_path):
    size = (3 << 20) + 5
    chunks = {7: b"\x01" * 32, 50_000: bytes(range(32)), size // 32: b"\xee" * 5 + bytes(27)}
    dense = bytearray(size)
    for index, chunk in chunks.items():
        dense[32 * index : 32 * index + 32] = chunk[: size - 32 * index]
    store, _ = tensor_store(tmp_path / "store", SparseChunkTree(size, chunks))
    vm = FastVM.from_state(load_elf(stream_checksum_elf), oracle=OracleView(store, CALLER, CONTEXT))
    assert vm.run()
    assert vm.exit_code == 0 and vm.take_output() == (expected_output(bytes(dense)), b"")


def test_stream_checksum_witnesses_and_trace(stream_checksum_elf, tmp_path):
    """Every step of a short run round-trips through the verifier; Trace.state_at agrees."""
    data = tensor(300, seed=3)
    store, _ = tensor_store(tmp_path / "store", data)
    oracle = OracleView(store, CALLER, CONTEXT)
    state = load_elf(stream_checksum_elf)
    numbers, snapshots = set(), {}
    while not state.exited:
        witness = step_witness(state)
        insn = state.memory.read_u32(state.pc)
        if insn == encode("syscall"):
            numbers.add(state.registers[V0])
        post = apply_step_proof(witness.state_data, witness.proof, oracle)
        step(state, oracle)
        assert post == encode_state(state)
        if state.step % 97 == 0:
            snapshots[state.step] = encode_state(state)
    assert {9001, 9002, 9003} <= numbers and bytes(state.stdout) == expected_output(data)
    trace = Trace(load_elf(stream_checksum_elf), checkpoint_interval=1000, oracle=oracle)
    assert trace.final_step == state.step
    for n in sorted(snapshots, reverse=True):  # restores checkpoints backwards (preimage key changes)
        assert encode_state(trace.state_at(n)) == snapshots[n]


# --- the CLI ------------------------------------------------------------------------------------------------


def _opml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opml.cli", *args], capture_output=True, timeout=300)


def test_acceptance_64_mib_tensor_through_opml_vm_run(stream_checksum_elf, tmp_path):
    data = tensor(64 << 20, seed=64)
    store, key = tensor_store(tmp_path / "store", data)
    started = time.perf_counter()
    proc = _opml(
        "vm",
        "run",
        str(stream_checksum_elf),
        "--stats",
        "--preimages",
        str(store.root),
        "--local",
        "1=" + key.hex(),
        "--caller",
        "0x" + CALLER.hex(),
        "--local-context",
        CONTEXT.hex(),
    )
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == expected_output(data)
    stats = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert stats["executor"] == "fast"
    assert stats["peak_memory_bytes"] < 1 << 20, stats
    assert stats["steps"] > (64 << 20) // 32  # at least one step per preimage_read
    print(
        f"\n64 MiB stream_checksum: {stats['steps']} steps, {stats['seconds']} s in the VM, "
        f"{wall:.2f} s for the whole `opml vm run`, peak VM memory {stats['peak_memory_bytes']} bytes"
    )
    assert wall < 60


def test_cli_run_fast_and_reference_agree(stream_checksum_elf, tmp_path):
    data = tensor(3000, seed=5)
    store, _ = tensor_store(tmp_path / "store", data)
    args = [
        "vm",
        "run",
        str(stream_checksum_elf),
        "--steps",
        "--preimages",
        str(store.root),
        "--caller",
        CALLER.hex(),
        "--local-context",
        "0x" + CONTEXT.hex(),
    ]
    fast = CliRunner(mix_stderr=False).invoke(main, args)
    ref = CliRunner(mix_stderr=False).invoke(main, [*args, "--reference"])
    assert fast.exit_code == ref.exit_code == 0, fast.stderr + ref.stderr
    assert fast.stdout_bytes == ref.stdout_bytes == expected_output(data)
    assert fast.stderr == ref.stderr and fast.stderr.startswith("steps: ")
    # --local puts the value in a temporary store when there is no --preimages.
    other = CliRunner(mix_stderr=False).invoke(
        main, ["vm", "run", str(stream_checksum_elf), "--local", "1=" + "00" * 31, "--stats"]
    )
    assert other.exit_code == 1 and b"not a 32-byte key" in other.stderr_bytes
    assert json.loads(other.stderr.splitlines()[-1])["steps"] > 0


def test_cli_reports_missing_preimages(stream_checksum_elf, tmp_path):
    for extra in ([], ["--preimages", str(tmp_path / "empty")]):
        result = CliRunner(mix_stderr=False).invoke(main, ["vm", "run", str(stream_checksum_elf), *extra])
        assert result.exit_code == 1
        assert "Error:" in result.stderr and (
            "no oracle was given" in result.stderr or "put_local" in result.stderr
        )


def test_cli_state_and_proof_with_oracle(stream_checksum_elf, tmp_path):
    data = tensor(1000, seed=9)
    store, key = tensor_store(tmp_path / "store", data)
    oracle = OracleView(store, CALLER, CONTEXT)
    state = load_elf(stream_checksum_elf)
    while True:  # the first preimage_read of the tensor (not of the local value)
        if (
            state.memory.read_u32(state.pc) == encode("syscall")
            and state.registers[V0] == 9003
            and state.preimage_key == key
        ):
            break
        step(state, oracle)
    at = state.step
    opts = ["--preimages", str(store.root), "--caller", CALLER.hex(), "--local-context", CONTEXT.hex()]
    result = CliRunner(mix_stderr=False).invoke(
        main, ["vm", "state", str(stream_checksum_elf), "--at", str(at), *opts]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stateData"] == "0x" + encode_state(state).hex()
    result = CliRunner(mix_stderr=False).invoke(
        main, ["vm", "proof", str(stream_checksum_elf), "--at", str(at), *opts]
    )
    assert result.exit_code == 0, result.stderr
    fields = json.loads(result.stdout)
    state_data, proof = bytes.fromhex(fields["stateData"][2:]), bytes.fromhex(fields["proof"][2:])
    assert state_data == encode_state(state)
    selector = _by_hand.keccak(b"step(bytes,bytes,bytes32)")[:4]
    calldata = selector + eth_abi.encode(["bytes", "bytes", "bytes32"], [state_data, proof, CONTEXT])
    assert fields["calldata"] == "0x" + calldata.hex()
    assert fields["localContext"] == "0x" + CONTEXT.hex()
    offset = state.registers[A0]
    assert offset < len(data) and state.registers[A2] > 0
    assert fields["oracle"] == {  # what the contract asks: the length, then the part holding offset
        "selectedKey": "0x" + key.hex(),
        "reads": [
            {"key": "0x" + key.hex(), "partOffset": None},
            {"key": "0x" + key.hex(), "partOffset": offset - offset % 32},
        ],
    }
    step(state, oracle)
    assert apply_step_proof(state_data, proof, oracle) == encode_state(state)  # the proof proves this step
    assert fields["postStateHash"] == "0x03" + _by_hand.keccak(encode_state(state))[1:].hex()
    # Without --local-context: the two-argument calldata (the local key then is another one).
    result = CliRunner(mix_stderr=False).invoke(
        main, ["vm", "proof", str(stream_checksum_elf), "--at", "3", "--preimages", str(store.root)]
    )
    assert result.exit_code == 0, result.stderr
    two_argument = _by_hand.keccak(b"step(bytes,bytes)")[:4]
    assert json.loads(result.stdout)["calldata"][:10] == "0x" + two_argument.hex()


def test_cli_oracle_put(tmp_path):
    blob = bytes(range(256)) * 40 + b"tail"
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    root = tmp_path / "store"
    result = CliRunner(mix_stderr=False).invoke(main, ["oracle", "put", str(path), "--preimages", str(root)])
    assert result.exit_code == 0, result.stderr
    key = bytes.fromhex(result.stdout.strip()[2:])
    assert key == _by_hand.chunk_merkle_key(blob) and PreimageStore(root).get(key) == blob
    result = CliRunner(mix_stderr=False).invoke(
        main, ["oracle", "put", str(path), "--preimages", str(root), "--kind", "keccak"]
    )
    assert result.exit_code == 0 and result.stdout.strip() == "0x" + _by_hand.keccak_key(blob).hex()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    result = CliRunner(mix_stderr=False).invoke(main, ["oracle", "put", str(empty), "--preimages", str(root)])
    empty_key = bytes([3]) + _by_hand.keccak(bytes(64))[1:]  # chunkRoot = Z[0], length 0
    assert result.exit_code == 0 and result.stdout.strip() == "0x" + empty_key.hex()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(70_000))
    result = CliRunner(mix_stderr=False).invoke(
        main, ["oracle", "put", str(big), "--preimages", str(root), "--kind", "keccak"]
    )
    assert result.exit_code == 1 and "chunk-Merkle" in result.stderr
