"""The guest side of the oracle (mips-toolchain/runtime/oracle.[ch], program/stream_checksum.c).

The programs run in the project's own reference VM (``opml.vm.step``, the implementation of vm-spec
§5.5 that MIPS.sol mirrors), with an :class:`OracleView` over a :class:`PreimageStore`, so there is one
implementation of the oracle system calls. The expected outputs come from numpy
(``opml.oracle.checksum``) and from hand-derived counts; the "no oracle" case runs under qemu-mipsel,
which has no oracle system calls (ENOSYS), as an independent reference.
"""

import random
import shutil
import subprocess

import pytest
from _toolchain import build_toolchain

from opml.oracle import PreimageStore, SparseChunkTree, local_ident_key
from opml.oracle.checksum import stream_checksum
from opml.vm.elf import load_elf
from opml.vm.preimage import OracleView
from opml.vm.state import VMState
from opml.vm.step import step

SYSCALL = 0x0000000C
CALLER = "0x" + "ab" * 20
CONTEXT = bytes.fromhex("5c" * 32)


@pytest.fixture(scope="module")
def program():
    return build_toolchain() / "stream_checksum"


def run_counting_syscalls(state: VMState, oracle: OracleView) -> tuple[VMState, int]:
    """Run ``state`` to its exit in the reference VM; return it and the number of system calls."""
    syscalls = 0
    while not state.exited:
        syscalls += state.memory.read_u32(state.pc) == SYSCALL
        step(state, oracle)
    return state, syscalls


def run_checksum(program, tmp_path, data=None, tree=None, local=None):
    store = PreimageStore(tmp_path / "store")
    key = store.put_chunk_merkle(tree if tree is not None else data)
    store.put_local(1, CALLER, CONTEXT, key if local is None else local)
    return run_counting_syscalls(load_elf(program), OracleView(store, CALLER, CONTEXT))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 31, 32, 33, 4095, 4096, 4097, 3 * 4096 + 17])
def test_stream_checksum_matches_numpy(program, tmp_path, size):
    data = random.Random(size).randbytes(size)
    final, syscalls = run_checksum(program, tmp_path, data=data)
    assert final.exit_code == 0, bytes(final.stderr)
    assert bytes(final.stdout) == f"checksum 0x{stream_checksum(data):08x} bytes {size}\n".encode()
    # Aligned 32-byte reads: one preimage_read per part, plus a few calls around them.
    assert (size + 31) // 32 <= syscalls <= (size + 31) // 32 + 16


def test_stream_checksum_of_sparse_tensor(program, tmp_path):
    size = 40_000 + 5
    chunks = {7: b"\x01" * 32, 500: bytes(range(32)), size // 32: b"\xee" * 5 + bytes(27)}
    tree = SparseChunkTree(size, chunks)
    data = bytearray(size)
    for index, chunk in chunks.items():
        data[32 * index : 32 * index + 32] = chunk[: size - 32 * index]
    final, _ = run_checksum(program, tmp_path, tree=tree)
    assert bytes(final.stdout) == f"checksum 0x{stream_checksum(bytes(data)):08x} bytes {size}\n".encode()


def test_local_value_not_a_key(program, tmp_path):
    final, _ = run_checksum(program, tmp_path, data=b"x", local=b"short")
    assert final.exit_code == 1
    assert b"not a 32-byte key" in bytes(final.stderr)


def test_oracle_failure_exits_2_under_qemu(program):
    """qemu-mipsel answers 9001–9003 with ENOSYS (89): the runtime reports it and exits 2."""
    qemu = shutil.which("qemu-mipsel")
    assert qemu is not None, "qemu-mipsel is not installed: run `make -C mips-toolchain check-tools`"
    proc = subprocess.run([qemu, str(program)], capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == b"oracle: syscall 9001 failed: errno 89\n"


def test_local_key_layout():
    assert local_ident_key(1) == bytes([1]) + bytes(30) + b"\x01"
