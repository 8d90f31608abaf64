"""System calls (§5): results in $v0/$a3, and nothing else changes."""

import pytest

from opml.vm.asm import encode, load_program
from opml.vm.constants import BRK_LIMIT, MMAP_BASE, MMAP_LIMIT
from opml.vm.run import run
from opml.vm.state import VMState

BASE = 0x00400000
V0, A0, A1, A2, A3 = 2, 4, 5, 6, 7
MAP_PRIVATE_ANON = 0x802


def syscall(
    number: int, *args: int, brk: int = 0x00500000, heap: int = MMAP_BASE, data: dict | None = None
) -> VMState:
    state = load_program([encode("syscall")], BASE)
    state.brk, state.heap = brk, heap
    state.registers[V0] = number
    for reg, value in zip((A0, A1, A2, A3), args, strict=False):
        state.registers[reg] = value
    state.registers[9] = 0x99  # an unrelated register
    for addr, blob in (data or {}).items():
        state.memory.write_bytes(addr, blob)
    state.registers_before = list(state.registers)  # for `_others_unchanged`
    return run(state, 1)


def _others_unchanged(state: VMState) -> None:
    """§5: a system call writes only $v0 and $a3 (the rest of the register file is as it was)."""
    unchanged = [r for r in range(32) if r not in (V0, A3)]
    assert [state.registers[r] for r in unchanged] == [state.registers_before[r] for r in unchanged]
    assert state.registers[9] == 0x99


def ok(state: VMState, value: int) -> None:
    assert (state.registers[V0], state.registers[A3]) == (value, 0)
    assert state.pc == BASE + 4 and state.next_pc == BASE + 8 and not state.exited
    _others_unchanged(state)


def failed(state: VMState, errno: int) -> None:
    assert (state.registers[V0], state.registers[A3]) == (errno, 1)
    assert state.pc == BASE + 4 and state.next_pc == BASE + 8 and not state.exited
    _others_unchanged(state)


def test_write_to_stdout_and_stderr():
    state = load_program([encode("syscall"), encode("syscall")], BASE)
    state.memory.write_bytes(0x1000, b"hello, world")
    state.registers[V0 : A3 + 1] = [4004, 0, 1, 0x1000, 5, 0]
    run(state, 1)
    assert state.stdout == b"hello" and state.registers[V0] == 5 and state.registers[A3] == 0
    state.registers[V0:A3] = [4004, 0, 2, 0x1007, 5]
    run(state, 1)
    assert state.stderr == b"world" and state.stdout == b"hello"
    assert (state.registers[V0], state.registers[A3], state.pc) == (5, 0, BASE + 8)
    assert state.memory.read_bytes(0x1000, 12) == b"hello, world"


def test_write_to_other_fd_is_ebadf():
    failed(syscall(4004, 3, 0x1000, 4), 9)
    failed(syscall(4004, 0, 0x1000, 4), 9)


def test_brk():
    ok(syscall(4045, 0), 0x00500000)  # query
    ok(syscall(4045, 0x00600123), 0x00600123)
    assert syscall(4045, 0x00600123).brk == 0x00600123
    state = syscall(4045, 0x00001000)  # may shrink, even below the initial break
    ok(state, 0x00001000)
    assert state.brk == 0x00001000
    ok(syscall(4045, BRK_LIMIT), BRK_LIMIT)
    state = syscall(4045, BRK_LIMIT + 1)
    ok(state, 0x00500000)
    assert state.brk == 0x00500000


def test_mmap_bump_allocates_page_multiples():
    state = syscall(4090, 0x1234, 1, 3, MAP_PRIVATE_ANON)
    ok(state, MMAP_BASE)
    assert state.heap == MMAP_BASE + 4096
    state = syscall(4090, 0, 8192, 3, 0x801, heap=MMAP_BASE + 4096)  # MAP_SHARED works too
    ok(state, MMAP_BASE + 4096)
    assert state.heap == MMAP_BASE + 3 * 4096
    state = syscall(4090, 0, 0x1000, 3, 0x802, heap=MMAP_LIMIT - 0x1000)  # exactly to the limit
    ok(state, MMAP_LIMIT - 0x1000)
    assert state.heap == MMAP_LIMIT


@pytest.mark.parametrize(
    "length, flags, heap, errno",
    [
        (4096, 0x002, MMAP_BASE, 22),  # not anonymous
        (4096, 0x800, MMAP_BASE, 22),  # neither MAP_SHARED nor MAP_PRIVATE
        (4096, 0x803, MMAP_BASE, 22),  # MAP_SHARED_VALIDATE: qemu 7.2 rejects it too
        (4096, 0x80F, MMAP_BASE, 22),
        (4096, 0x812, MMAP_BASE, 22),  # MAP_FIXED
        (0, 0x802, MMAP_BASE, 22),  # zero length
        (0xFFFFF001, 0x802, MMAP_BASE, 12),  # size rounds to 0 (mod 2^32)
        (0x30000001, 0x802, MMAP_BASE, 12),  # past MMAP_LIMIT
        (4096, 0x802, MMAP_LIMIT, 12),
    ],
)
def test_mmap_errors(length, flags, heap, errno):
    state = syscall(4090, 0, length, 3, flags, heap=heap)
    failed(state, errno)
    assert state.heap == heap


def test_munmap_returns_zero_and_keeps_memory():
    mapped = bytes(range(1, 256)) * 17  # 4335 bytes: the whole page and a bit of the next
    state = syscall(4091, MMAP_BASE, 4096, data={MMAP_BASE: mapped}, heap=MMAP_BASE + 0x2000)
    ok(state, 0)
    assert state.memory.read_bytes(MMAP_BASE, len(mapped)) == mapped
    assert state.heap == MMAP_BASE + 0x2000  # nothing is handed back to the allocator


@pytest.mark.parametrize("number", [4001, 4246])
def test_exit(number):
    state = syscall(number, 0x1234)
    assert state.exited and state.exit_code == 0x34
    assert state.pc == BASE and state.next_pc == BASE + 4  # not advanced
    assert state.registers == state.registers_before and state.step == 1  # no register changes


@pytest.mark.parametrize("number", [0, 4003, 4005, 4999, 0xFFFFFFFF])
def test_unknown_syscall_is_enosys(number):
    failed(syscall(number, 1, 2, 3, 4), 89)
