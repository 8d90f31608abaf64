"""The guest side of the oracle (mips-toolchain/runtime/oracle.[ch], program/stream_checksum.c).

qemu-mipsel has no oracle, so these tests run the ELF in unicorn with a small host that implements the
system calls of vm-spec §5 and §5.5 (write, exit_group, preimage_select/length/read) over a
:class:`PreimageStore`, with the same per-call limits as the VM: one memory leaf and one oracle part per
``preimage_read``. The VM itself is checked against these programs once it implements §5.5.
"""

import random

import pytest
from _toolchain import build_toolchain

from opml.oracle import PreimageStore, SparseChunkTree, local_ident_key, localize
from opml.oracle.checksum import stream_checksum

unicorn = pytest.importorskip("unicorn")
elffile = pytest.importorskip("elftools.elf.elffile")
from unicorn import mips_const as M  # noqa: E402

STACK_TOP = 0x7FFFF000
HALT = 0x80000000  # a page holding `b .`: exit jumps there and stops
EBADF, EINVAL, EFBIG, ENOSYS = 9, 22, 27, 89
CALLER = "0x" + "ab" * 20
CONTEXT = bytes.fromhex("5c" * 32)


@pytest.fixture(scope="module")
def program():
    return (build_toolchain() / "stream_checksum").read_bytes()


class OracleHost:
    """A mipsel process in unicorn with the VM's oracle system calls (vm-spec §5.5)."""

    def __init__(self, elf: bytes, store: PreimageStore, caller=CALLER, local_context=CONTEXT):
        import io

        self.store, self.caller, self.local_context = store, caller, local_context
        self.uc = unicorn.Uc(unicorn.UC_ARCH_MIPS, unicorn.UC_MODE_MIPS32 + unicorn.UC_MODE_LITTLE_ENDIAN)
        elf_file = elffile.ELFFile(io.BytesIO(elf))
        for seg in elf_file.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            start = seg["p_vaddr"] & ~0xFFF
            end = (seg["p_vaddr"] + seg["p_memsz"] + 0xFFF) & ~0xFFF
            self.uc.mem_map(start, end - start)
            self.uc.mem_write(seg["p_vaddr"], seg.data())
        self.uc.mem_map(STACK_TOP - (1 << 20), (1 << 20) + 0x1000)
        self.uc.reg_write(M.UC_MIPS_REG_SP, STACK_TOP)
        self.uc.mem_map(HALT, 0x1000)
        self.uc.mem_write(HALT, bytes.fromhex("ffff001000000000"))  # b . ; nop
        self.entry = elf_file.header["e_entry"]
        self.key = bytes(32)
        self.stdout, self.stderr = bytearray(), bytearray()
        self.exit_code = None
        self.syscalls = 0
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._intr)

    def run(self):
        self.uc.emu_start(self.entry, HALT, count=50_000_000)
        assert self.exit_code is not None, "the program did not exit"
        return self

    def _effective_key(self):
        return localize(self.key, self.caller, self.local_context)

    def _preimage(self):
        key = self._effective_key()
        if key[0] == 1:
            return self.store.local_value(key).value
        return self.store.get(key)

    def _intr(self, uc, intno, _):
        assert intno == 17, f"unexpected exception {intno}"
        self.syscalls += 1
        reg = uc.reg_read
        n, a0, a1, a2 = (
            reg(M.UC_MIPS_REG_V0),
            reg(M.UC_MIPS_REG_A0),
            reg(M.UC_MIPS_REG_A1),
            reg(M.UC_MIPS_REG_A2),
        )
        ret, err = 0, 0
        if n in (4001, 4246):
            self.exit_code = a0 & 0xFF
            uc.reg_write(M.UC_MIPS_REG_PC, HALT)  # emu_start(until=HALT) stops there
            uc.emu_stop()
            return
        if n == 4004:
            if a0 in (1, 2):
                (self.stdout if a0 == 1 else self.stderr).extend(uc.mem_read(a1, a2))
                ret = a2
            else:
                err = EBADF
        elif n == 9001:
            if a0 % 32:
                err = EINVAL
            else:
                self.key = bytes(uc.mem_read(a0, 32))
        elif n == 9002:
            length = len(self._preimage())
            if length >= 1 << 32:
                err = EFBIG
            ret = length
        elif n == 9003:
            data = self._preimage()
            offset, buf, count = a0, a1, a2
            if count and offset < len(data):
                ret = min(count, 32 - offset % 32, 32 - buf % 32, len(data) - offset)
                uc.mem_write(buf, data[offset : offset + ret])
        else:
            err = ENOSYS
        uc.reg_write(M.UC_MIPS_REG_V0, err if err else ret)
        uc.reg_write(M.UC_MIPS_REG_A3, 1 if err else 0)
        # unicorn has already moved pc past the syscall instruction.


def run_checksum(program, tmp_path, data=None, tree=None, local=None):
    store = PreimageStore(tmp_path / "store")
    key = store.put_chunk_merkle(tree if tree is not None else data)
    store.put_local(1, CALLER, CONTEXT, key if local is None else local)
    return OracleHost(program, store).run()


@pytest.mark.parametrize("size", [0, 1, 3, 4, 31, 32, 33, 4095, 4096, 4097, 3 * 4096 + 17])
def test_stream_checksum_matches_numpy(program, tmp_path, size):
    data = random.Random(size).randbytes(size)
    host = run_checksum(program, tmp_path, data=data)
    assert host.exit_code == 0, host.stderr
    assert host.stdout.decode() == f"checksum 0x{stream_checksum(data):08x} bytes {size}\n"
    # Aligned 32-byte reads: one preimage_read per part, plus a few calls around them.
    assert host.syscalls <= (size + 31) // 32 + 16


def test_stream_checksum_of_sparse_tensor(program, tmp_path):
    size = 40_000 + 5
    chunks = {7: b"\x01" * 32, 500: bytes(range(32)), size // 32: b"\xee" * 5 + bytes(27)}
    tree = SparseChunkTree(size, chunks)
    data = bytearray(size)
    for index, chunk in chunks.items():
        data[32 * index : 32 * index + 32] = chunk[: size - 32 * index]
    host = run_checksum(program, tmp_path, tree=tree)
    assert host.stdout.decode() == f"checksum 0x{stream_checksum(bytes(data)):08x} bytes {size}\n"


def test_local_value_not_a_key(program, tmp_path):
    host = run_checksum(program, tmp_path, data=b"x", local=b"short")
    assert host.exit_code == 1
    assert b"not a 32-byte key" in host.stderr


class _NoOracleHost(OracleHost):
    """A host without the oracle, like qemu-mipsel: 9001–9003 answer ENOSYS."""

    def _intr(self, uc, intno, data):
        if uc.reg_read(M.UC_MIPS_REG_V0) in (9001, 9002, 9003):
            uc.reg_write(M.UC_MIPS_REG_V0, 4999)  # an unknown number
        super()._intr(uc, intno, data)


def test_oracle_failure_exits_2(program, tmp_path):
    host = _NoOracleHost(program, PreimageStore(tmp_path / "store")).run()
    assert host.exit_code == 2
    assert host.stderr == b"oracle: syscall 9001 failed: errno 89\n"


def test_local_key_layout():
    assert local_ident_key(1) == bytes([1]) + bytes(30) + b"\x01"
