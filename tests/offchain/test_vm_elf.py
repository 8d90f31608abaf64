"""The loader (§6), the `opml vm` commands, and toolchain programs against qemu-mipsel."""

import json
import resource
import shutil
import struct
import subprocess
from pathlib import Path

import eth_abi
import pytest
import sha3
from _ci import missing_tool
from _toolchain import plain_program_params
from click.testing import CliRunner

from opml.cli import main
from opml.vm.asm import encode
from opml.vm.constants import MMAP_BASE, STACK_TOP
from opml.vm.elf import load_elf
from opml.vm.errors import ElfLoadError
from opml.vm.run import run
from opml.vm.state import encode_state
from opml.vm.witness import apply_step_proof

TEXT, DATA = 0x00400000, 0x00410000


def make_elf(segments, entry=TEXT, *, elf_class=1, data_encoding=1, machine=8, elf_type=2) -> bytes:
    """A minimal ELF32 executable: ``segments`` are ``(vaddr, file bytes, memsz)`` PT_LOADs."""
    e = "<" if data_encoding == 1 else ">"
    header_size, ph_size = 52, 32
    offset = header_size + ph_size * len(segments)
    headers, payload = b"", b""
    for vaddr, data, memsz in segments:
        headers += struct.pack(e + "8I", 1, offset + len(payload), vaddr, vaddr, len(data), memsz, 7, 0x1000)
        payload += data
    ident = b"\x7fELF" + bytes([elf_class, data_encoding, 1]) + bytes(9)
    header = ident + struct.pack(
        e + "HHIIIIIHHHHHH",
        elf_type,
        machine,
        1,
        entry,
        header_size,
        0,
        0,
        header_size,
        ph_size,
        len(segments),
        40,
        0,
        0,
    )
    return header + headers + payload


def words(*insns) -> bytes:
    return b"".join(struct.pack("<I", encode(*insn)) for insn in insns)


# write(1, "hello\n", 6); write(2, "hello\n", 6); exit(3)
HELLO_TEXT = words(
    ("lui", 5, DATA >> 16),
    ("addiu", 6, 0, 6),
    ("addiu", 4, 0, 1),
    ("addiu", 2, 0, 4004),
    ("syscall",),
    ("addiu", 4, 0, 2),
    ("addiu", 2, 0, 4004),
    ("syscall",),
    ("addiu", 4, 0, 3),
    ("addiu", 2, 0, 4001),
    ("syscall",),
)
HELLO = make_elf([(TEXT, HELLO_TEXT, len(HELLO_TEXT)), (DATA, b"hello\n", 0x2345)])


def test_loader_builds_the_initial_state():
    state = load_elf(HELLO)
    assert (state.pc, state.next_pc) == (TEXT, TEXT + 4)
    assert state.registers[29] == STACK_TOP and sum(state.registers) == STACK_TOP
    assert state.brk == 0x00413000  # DATA + 0x2345 rounded up to a page
    assert state.heap == MMAP_BASE
    assert (state.lo, state.hi, state.exited, state.exit_code, state.step) == (0, 0, False, 0, 0)
    assert state.preimage_key == bytes(32)
    assert state.memory.read_bytes(TEXT, len(HELLO_TEXT)) == HELLO_TEXT
    assert state.memory.read_bytes(DATA, 8) == b"hello\n\x00\x00"  # the rest is .bss
    assert state.memory.read_u32(STACK_TOP) == 0  # argc = 0


def test_loader_accepts_a_path(tmp_path):
    path = tmp_path / "hello.elf"
    path.write_bytes(HELLO)
    assert encode_state(load_elf(path)) == encode_state(load_elf(HELLO))


@pytest.mark.parametrize(
    "elf, message",
    [
        (b"not an elf at all, just some bytes" * 3, "not a valid ELF"),
        (make_elf([(TEXT, b"\0" * 4, 4)], data_encoding=2), "big-endian"),
        (make_elf([(TEXT, b"\0" * 4, 4)], machine=3), "EM_386"),
        (make_elf([(TEXT, b"\0" * 4, 4)], elf_type=3), "ET_DYN"),
        (make_elf([]), "no PT_LOAD"),
        (make_elf([(MMAP_BASE - 4, b"\0" * 4, 8)]), "below MMAP_BASE"),
        (make_elf([(TEXT, b"\0" * 8, 4)]), "filesz"),
    ],
)
def test_loader_rejects(elf, message):
    with pytest.raises(ElfLoadError, match=message):
        load_elf(elf)


def test_loader_rejects_elf64():
    header = struct.pack("<HHIQQQIHHHHHH", 2, 8, 1, TEXT, 0, 0, 0, 64, 56, 0, 64, 0, 0)
    elf64 = b"\x7fELF\x02\x01\x01" + bytes(9) + header
    with pytest.raises(ElfLoadError, match="ELFCLASS64"):
        load_elf(elf64)


def test_loader_reports_a_missing_file(tmp_path):
    with pytest.raises(ElfLoadError, match="cannot read"):
        load_elf(tmp_path / "missing.elf")


# --- CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def hello_path(tmp_path) -> Path:
    path = tmp_path / "hello.elf"
    path.write_bytes(HELLO)
    return path


def test_cli_run_forwards_output_and_exit_code(hello_path):
    result = CliRunner(mix_stderr=False).invoke(main, ["vm", "run", str(hello_path), "--steps"])
    assert result.exit_code == 3
    assert result.stdout_bytes == b"hello\n"
    assert result.stderr_bytes == b"hello\nsteps: 11\n"


def test_cli_reports_a_bad_elf(tmp_path):
    path = tmp_path / "bad.elf"
    path.write_bytes(b"garbage" * 10)
    result = CliRunner(mix_stderr=False).invoke(main, ["vm", "run", str(path)])
    assert result.exit_code == 1 and "not a valid ELF" in result.stderr


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _naive_root(contents: dict[int, bytes]) -> bytes:
    """§3.1 from scratch: the memory root over ``{address: bytes}`` (everything else zero)."""
    leaves: dict[int, bytearray] = {}
    for addr, blob in contents.items():
        for k, byte in enumerate(blob):
            leaves.setdefault((addr + k) >> 5, bytearray(32))[(addr + k) & 31] = byte
    nodes, zero = {index: bytes(leaf) for index, leaf in leaves.items()}, bytes(32)
    for _ in range(27):
        nodes = {
            k: _keccak(nodes.get(2 * k, zero) + nodes.get(2 * k + 1, zero)) for k in {i >> 1 for i in nodes}
        }
        zero = _keccak(zero + zero)
    return nodes[0]


def _hello_state_data(steps: int, registers: dict[int, int], pc: int) -> bytes:
    """stateData of HELLO after ``steps`` (< 11) steps, laid out by hand from §2.1 (no store ran)."""
    regs = [0] * 32
    regs[29] = STACK_TOP
    for reg, value in registers.items():
        regs[reg] = value
    mem_root = _naive_root({TEXT: HELLO_TEXT, DATA: b"hello\n"})
    fields = struct.pack(">IIIIII", pc, pc + 4, 0, 0, 0x00413000, MMAP_BASE)  # pc nextPC lo hi brk heap
    return mem_root + bytes(32) + fields + b"\x00\x00" + steps.to_bytes(8, "big") + struct.pack(">32I", *regs)


# After 4 steps: $5 = DATA (lui), $6 = 6, $4 = 1, $2 = 4004; the 5th step is write(1, DATA, 6).
HELLO_AT_4 = {5: DATA, 6: 6, 4: 1, 2: 4004}


def test_cli_state(hello_path):
    result = CliRunner(mix_stderr=False).invoke(main, ["vm", "state", str(hello_path), "--at", "4"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.stdout)
    state_data = _hello_state_data(4, HELLO_AT_4, TEXT + 16)
    assert fields["step"] == 4 and fields["pc"] == TEXT + 16 and fields["nextPC"] == TEXT + 20
    assert fields["registers"] == [HELLO_AT_4.get(r, STACK_TOP if r == 29 else 0) for r in range(32)]
    assert (fields["brk"], fields["heap"], fields["lo"], fields["hi"]) == (0x00413000, MMAP_BASE, 0, 0)
    assert (fields["exited"], fields["exitCode"], fields["preimageKey"]) == (0, 0, "0x" + "00" * 32)
    assert fields["stateData"] == "0x" + state_data.hex()
    assert fields["stateHash"] == "0x03" + _keccak(state_data)[1:].hex()  # status 3: UNFINISHED
    assert fields["memRoot"] == "0x" + state_data[:32].hex()
    assert encode_state(run(load_elf(hello_path), 4)) == state_data  # the reference VM agrees


def test_cli_proof(hello_path):
    result = CliRunner(mix_stderr=False).invoke(main, ["vm", "proof", str(hello_path), "--at", "4"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.stdout)
    state_data, proof = bytes.fromhex(fields["stateData"][2:]), bytes.fromhex(fields["proof"][2:])
    assert state_data == _hello_state_data(4, HELLO_AT_4, TEXT + 16)
    selector = _keccak(b"step(bytes,bytes)")[:4]
    calldata = selector + eth_abi.encode(["bytes", "bytes"], [state_data, proof])
    assert fields["calldata"] == "0x" + calldata.hex()
    assert fields["preStateHash"] == "0x03" + _keccak(state_data)[1:].hex()
    # write(1, DATA, 6) returns 6 in $v0 with $a3 = 0 and advances pc.
    post = _hello_state_data(5, {**HELLO_AT_4, 2: 6, 7: 0}, TEXT + 20)
    assert apply_step_proof(state_data, proof) == post
    assert encode_state(run(load_elf(hello_path), 5)) == post
    assert fields["postStateHash"] == "0x03" + _keccak(post)[1:].hex()


# --- Toolchain programs against qemu-mipsel ----------------------------------------------------------------


def _run_qemu(path: Path, cwd: Path) -> tuple[bytes, bytes, int]:
    """Run ``path`` under qemu-mipsel; a guest killed by signal s reports 128 + s, as the VM does."""

    def no_core_dumps():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    proc = subprocess.run(
        ["qemu-mipsel", str(path)], capture_output=True, timeout=300, cwd=cwd, preexec_fn=no_core_dumps
    )
    code = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
    # qemu adds its own report of a fatal signal to the guest's stderr.
    stderr = b"".join(
        line
        for line in proc.stderr.splitlines(keepends=True)
        if not line.startswith(b"qemu: uncaught target signal")
    )
    return proc.stdout, stderr, code


@pytest.mark.parametrize("path", plain_program_params())
def test_toolchain_program_matches_qemu(path, tmp_path):
    if shutil.which("qemu-mipsel") is None:
        missing_tool("qemu-mipsel is not installed (apt install qemu-user)")
    state = run(load_elf(path))
    assert (bytes(state.stdout), bytes(state.stderr), state.exit_code) == _run_qemu(path, tmp_path)
