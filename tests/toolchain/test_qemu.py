"""Run the freestanding mipsel test programs under qemu-mipsel.

Each program's stdout and exit code must match mips-toolchain/tests/expected/.
Where practical the expected values are also re-derived here in Python, so that
the reference files do not rest on qemu alone. A program killed by a signal
gets exit code 128 + signal number, as a shell reports it.
"""

import resource
import shutil
import subprocess
from pathlib import Path

import pytest
import sha3
from _ci import missing_tool

from opml.vm.elf import load_elf
from opml.vm.run import run as vm_run

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "mips-toolchain"
BUILD = TOOLCHAIN / "build"
EXPECTED = TOOLCHAIN / "tests" / "expected"
PROGRAMS = sorted(p.stem for p in (TOOLCHAIN / "tests").glob("*.c"))

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def built():
    if shutil.which("make") is None:
        missing_tool("make is not installed")
    proc = subprocess.run(["make", "-C", str(TOOLCHAIN), "all"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if shutil.which("qemu-mipsel") is None:
        missing_tool("qemu-mipsel is not installed")
    return BUILD


def _no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(name, timeout=60):
    proc = subprocess.run(
        ["qemu-mipsel", str(BUILD / name)],
        capture_output=True,
        timeout=timeout,
        preexec_fn=_no_core,
    )
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return proc.stdout, proc.stderr, code


# --- generic check against the reference files ------------------------------


@pytest.mark.parametrize("name", PROGRAMS)
def test_matches_expected(built, name):
    out, _, code = run(name)
    assert out == (EXPECTED / f"{name}.out").read_bytes()
    assert code == int((EXPECTED / f"{name}.code").read_text())


def test_incremental_build_is_a_no_op(built):
    proc = subprocess.run(["make", "-C", str(TOOLCHAIN), "-q", "all"], capture_output=True)
    assert proc.returncode == 0


REQUIRED_MNEMONICS = [
    "mul",
    "mult",
    "multu",
    "madd",
    "maddu",
    "msub",
    "msubu",
    "div",
    "divu",
    "teq",
    "clz",
    "clo",
    "movz",
    "movn",
    "lwl",
    "lwr",
    "swl",
    "swr",
    "ll",
    "sc",
    "bgezal",
    "bltzal",
    "jal",
    "jalr",
    "lb",
    "lbu",
    "lh",
    "lhu",
    "sb",
    "sh",
    "sll",
    "srl",
    "sra",
    "sllv",
    "srlv",
    "srav",
    "slt",
    "sltu",
    "slti",
    "sltiu",
    "lui",
    "ori",
    "andi",
    "xori",
    "nor",
    "mfhi",
    "mflo",
    "mthi",
    "mtlo",
    "syscall",
    "break",
    "sync",
]


def test_opcode_coverage(built):
    proc = subprocess.run(["make", "-s", "-C", str(TOOLCHAIN), "opcodes"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    used = set(proc.stdout.split())
    assert not set(REQUIRED_MNEMONICS) - used


# --- programs with values re-derived in Python -------------------------------


def test_hello(built):
    out, err, code = run("hello")
    assert out == b"hello from mipsel\n"
    assert err == b"hello on stderr\n"
    assert code == 3


# Signals under qemu-mipsel 7.2 (see mips-toolchain/README.md). qemu re-raises
# the guest signal as the *host* signal, so the status uses host (x86) numbers:
# the guest's SIGBUS is 10 on MIPS but the process dies of host SIGBUS 7.
SIGILL, SIGTRAP, SIGBUS = 4, 5, 7
TRAPS = {
    "trap_div0": (b"dividing by zero\n", 128 + SIGTRAP),
    "trap_div64_0": (b"dividing 64-bit by zero\n", 128 + SIGTRAP),
    "trap_teq": (b"before teq 5\n", 128 + SIGTRAP),
    "trap_break": (b"before break\n", 128 + SIGTRAP),
    "trap_unaligned": (b"before unaligned lw\n", 128 + SIGBUS),
    "trap_illegal": (b"before illegal instruction\n", 128 + SIGILL),
}


@pytest.mark.parametrize("name", sorted(TRAPS))
def test_traps(built, name):
    out, _, code = run(name)
    want_out, want_code = TRAPS[name]
    assert out == want_out
    assert code == want_code


def _fnv_mix(h, v):
    return ((h ^ v) * 16777619) & M32


def _s64(x):
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def _tdiv(a, b):
    """C division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _div64_pairs():
    edges = [
        0,
        1,
        2,
        3,
        7,
        10,
        255,
        256,
        0x7FFFFFFF,
        0x80000000,
        0xFFFFFFFF,
        0x100000000,
        0x100000001,
        0x123456789ABCDEF,
        0x7FFFFFFFFFFFFFFF,
        0x8000000000000000,
        0x8000000000000001,
        0xFFFFFFFFFFFFFFFF,
        0xFFFFFFFFFFFFFFFE,
        0xFFFFFFFFFFFFFFF9,
        0xFFFFFFFF00000000,
        0xFFFFFFFF80000000,
        1000000007,
        0x4000000000000000,
        0x100000000 << 20,
    ]
    pairs = [(a, b) for a in edges for b in edges if b]
    for i in range(0, 64, 5):
        for j in range(0, 64, 9):
            pairs.append((1 << i, 1 << j))
            pairs.append(((M64 << i) & M64, 1 << j))
    state = 0x0123456789ABCDEF

    def lcg():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & M64
        return state

    for _ in range(200):
        a = lcg()
        b = lcg()
        b >>= lcg() & 63
        pairs.append((a, b or 3))
    return pairs


def test_div64_values(built):
    out, _, code = run("div64")
    lines = out.decode().splitlines()
    pairs = _div64_pairs()
    assert len(lines) == len(pairs) + 1
    h = 2166136261
    for line, (a, b) in zip(lines, pairs, strict=False):
        f = line.split()
        assert int(f[0], 16) == a and int(f[1], 16) == b, line
        uq, ur = a // b, a % b
        assert int(f[2], 16) == uq and int(f[3], 16) == ur, line
        for v in (uq, ur):
            h = _fnv_mix(h, (v & M32) ^ (v >> 32))
        sa, sb = _s64(a), _s64(b)
        if sa == -(1 << 63) and sb == -1:
            assert len(f) == 4
            continue
        sq = _tdiv(sa, sb)
        sr = sa - sq * sb
        assert (int(f[4]), int(f[5])) == (sq, sr), line
        for v in (sq & M64, sr & M64):
            h = _fnv_mix(h, (v & M32) ^ (v >> 32))
    assert lines[-1] == f"pairs {len(pairs)} checksum 0x{h:08x}"
    assert code == (h & 0x7F) + 1


def test_unaligned_values(built):
    out, _, code = run("unaligned")

    def reset():
        return bytearray((i * 17 + 1) & 0xFF for i in range(64))

    def le(b, o, n):
        return int.from_bytes(b[o : o + n], "little")

    want = []
    acc = 0
    buf = reset()
    for o in range(8):
        w, d, hw = le(buf, o, 4), le(buf, o, 8), le(buf, o, 2)
        want.append(f"load off={o} 0x{w:08x} 0x{w:08x} 0x{d:016x} 0x{hw:08x}")
        acc = (acc + (w ^ (d & M32) ^ (d >> 32) ^ hw)) & M32
    for o in range(8):
        buf = reset()
        buf[o : o + 4] = (0xA1B2C3D4).to_bytes(4, "little")
        want.append(f"store32 off={o} {buf[:24].hex()}")
        buf = reset()
        buf[o + 8 : o + 12] = (0x11223344).to_bytes(4, "little")
        buf[o : o + 8] = (0x0102030405060708).to_bytes(8, "little")
        want.append(f"store64 off={o} {buf[:24].hex()}")
    # struct rec { u8 tag; u32 a; i16 b; i32 c; u64 d; } packed, at buf + 1
    buf = reset()
    a, b, c, d = 0xDEADBEEF + 1, -2, -123456789 - 1, 0x8877665544332211
    buf[2:6] = a.to_bytes(4, "little")
    buf[6:8] = (b & 0xFFFF).to_bytes(2, "little")
    buf[8:12] = (c & M32).to_bytes(4, "little")
    buf[12:20] = d.to_bytes(8, "little")
    want.append(f"rec 0x{a:08x} {b} {c} 0x{d:016x}")
    want.append(f"rec bytes {buf[:24].hex()}")
    acc = (acc + a + (c & M32)) & M32
    want.append(f"acc 0x{acc:08x}")
    assert out.decode().splitlines() == want
    assert code == acc % 200 + 10


def test_recursion_values(built):
    out, _, code = run("recursion")
    got = dict(line.split(" = ") for line in out.decode().splitlines())

    def fib(n):
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a

    x, arr = 12345, []
    for _ in range(2000):
        x = (x * 1103515245 + 12345) & M32
        sx = x - (1 << 32) if x >> 31 else x
        arr.append(sx >> 3)
    arr.sort()
    h = 0
    for v in arr:
        h = (h * 31 + v) & M32
    assert got["fib(24)"] == str(fib(24))
    assert got["ack(2,3)"] == "9"  # 2n + 3
    assert got["ack(3,5)"] == str(2**8 - 3)
    assert got["link_forms(5)"] == "247"
    assert got["link_forms(-5)"] == "191"
    assert got["sum_to(3000)"] == str(3000 * 3001 // 2)
    assert got["sorted"] == "1"
    assert got["min"] == str(arr[0]) and got["max"] == str(arr[-1])
    assert got["hash"] == f"0x{h:08x}"
    assert code == fib(24) & 0xFF


def test_llsc_values(built):
    out, _, code = run("llsc")
    counter = 0
    old_sum = 0
    for i in range(1, 101):
        old_sum += counter
        counter += i
    counter -= 50
    f = 0xF0F0F0F0
    o1, f = f, f | 0x0000FFFF
    o2, f = f, f & 0x00FFFF00
    o3, f = f, f ^ 0x12345678
    o4, f = f, ~(f & 0x0FF00FF0) & M32
    small, half = [0] * 4, [0] * 2
    for i in range(300):
        small[i & 3] = (small[i & 3] + i + 1) & 0xFF
        half[i & 1] = (half[i & 1] - i * 7) & 0xFFFF
    want = [
        f"counter {counter + 50} old_sum {old_sum}",
        f"sub_and_fetch {counter}",
        "bitops " + " ".join(f"0x{v:08x}" for v in (o1, o2, o3, o4, f)),
        f"cas 1 {counter} 0 7",  # 1st CAS succeeds (5000 -> 7), 2nd sees 7
        "xchg 7 -1 99",
        "bytes " + "".join(f"{v} " for v in small) + f"halves {half[0]} {half[1]}",
    ]
    assert out.decode().splitlines() == want
    assert code == (99 + small[0] + half[1]) & 0xFF


def test_edges_values(built):
    out, _, code = run("edges")
    got = dict(line.split(" ") for line in out.decode().splitlines())

    def h64(v):
        return f"0x{v & M64:016x}"

    def h32(v):
        return f"0x{v & M32:08x}"

    imin, imax = -(1 << 31), (1 << 31) - 1
    assert got["smul_min"] == h64(imin * imin)
    assert got["smul_minmax"] == h64(imin * imax)
    assert got["umul_max"] == h64(M32 * M32)
    acc, a, b = 0xFEDCBA9876543210, imax, -(1 << 31) + 1  # sv[7], sv[9]
    assert got["asm0"] == h64(acc + a * b)  # madd
    assert got["asm1"] == h64(acc + (a & M32) * (b & M32))  # maddu
    assert got["asm2"] == h64(acc - a * b)  # msub
    assert got["asm3"] == h64(acc - (a & M32) * (b & M32))  # msubu
    assert got["clz0"] == h32(32) and got["clo_ones"] == h32(32)
    # bytes[i] = 0x70 + 9i, then sb -1 at 3, sb 255 at 5, sh 0xffff at 8, sh 0x5678 at 12
    mem = bytearray((0x70 + 9 * i) & 0xFF for i in range(16))
    mem[3], mem[5] = 0xFF, 0xFF
    mem[8:10] = b"\xff\xff"
    mem[12:14] = (0x5678).to_bytes(2, "little")
    for k in range(4):
        assert got[f"bytes{k}"] == h32(int.from_bytes(mem[4 * k : 4 * k + 4], "little"))
    assert got["sb_reload"] == got["sh_reload"] == h32(-1)
    assert code == int(got["final"], 16) % 200 + 50


def test_brk_values(built):
    out, _, code = run("brk")

    def fill_and_sum(nwords, seed):
        s = 0
        for i in range(nwords):
            s = _fnv_mix(s, (seed + i * 2654435761) & M32)
        return s  # memory was zero, so no 0xdead0000 flag

    want = [
        "brk(0) at or above _end: 1",
        "brk grow ok: 1",
        f"brk checksum: 0x{fill_and_sum((3 * 4096 + 100) // 4, 17):08x}",
        "brk shrink ok: 1",
        "mmap ok: 1",
        "mmap page aligned: 1",
        f"mmap checksum: 0x{fill_and_sum(2 * 4096 // 4, 99):08x}",
        "mmap bad flags errno: 22",
    ]
    assert out.decode().splitlines() == want
    assert code == 43


def _keccak_vector_lines():
    """What keccak_vectors must print, from Python's keccak-256 (pysha3), not from any C."""
    stream = bytes((i * 131 + 7) % 256 for i in range(1000))
    lengths = [0, 1, 31, 32, 33, 64, 135, 136, 137, 271, 272, 273, 1000]
    hashes = [sha3.keccak_256(stream[:n]).digest() for n in lengths]
    lines = [f"{n} {h.hex()}" for n, h in zip(lengths, hashes, strict=True)]
    lines.append(f"pair {sha3.keccak_256(hashes[0] + hashes[1]).hexdigest()}")
    return lines


def test_keccak_values(built):
    """runtime/keccak.c under qemu: every rate boundary (135/136/137, 271/272/273) and fed in pieces."""
    out, _, code = run("keccak_vectors")
    assert code == 0
    assert out.decode().splitlines() == _keccak_vector_lines()


def test_keccak_values_in_the_vm(built):
    """The same program in the project's reference VM (every instruction as MIPS.sol executes it)."""
    state = vm_run(load_elf(BUILD / "keccak_vectors"))
    assert state.exit_code == 0
    assert bytes(state.stdout).decode().splitlines() == _keccak_vector_lines()
