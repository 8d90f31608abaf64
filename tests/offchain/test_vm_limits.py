"""Hostile guests cannot starve an honest replayer (vm-spec §10, opml.vm.limits): a guest that writes
4 GiB per step keeps only the capture limit in memory, and one that touches memory without end stops
with MemoryLimitError, in the reference and in the fast executor alike; the on-chain step of the
same state is what it always was."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from test_vm_elf import DATA, TEXT, make_elf, words

from opml.cli import main
from opml.vm.elf import load_elf
from opml.vm.errors import MemoryLimitError
from opml.vm.fast import FastVM
from opml.vm.limits import MAX_CAPTURED_OUTPUT
from opml.vm.memory import Memory
from opml.vm.run import run
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

ALL = 0xFFFFFFFF
# a1 = DATA, a2 = 0xFFFFFFFF, a0 = 1; loop: write(1, DATA, 0xFFFFFFFF) for ever
ENDLESS_WRITE = words(
    ("lui", 5, DATA >> 16),
    ("addiu", 6, 0, 0xFFFF),
    ("addiu", 4, 0, 1),
    ("addiu", 2, 0, 4004),
    ("syscall",),
    ("j", TEXT + 12),
    ("sll", 0, 0, 0),
)
# a1 = DATA; loop: *(a1) = 0; a1 += 4096 (a new page every iteration)
ENDLESS_MEMORY = words(
    ("lui", 5, DATA >> 16),
    ("sw", 0, 0, 5),
    ("addiu", 5, 5, 4096),
    ("j", TEXT + 4),
    ("sll", 0, 0, 0),
)
# three writes of 0xFFFFFFFF bytes, then exit(0)
THREE_WRITES = words(
    ("lui", 5, DATA >> 16),
    ("addiu", 6, 0, 0xFFFF),
    ("addiu", 4, 0, 1),
    *[insn for _ in range(3) for insn in (("addiu", 2, 0, 4004), ("syscall",))],
    ("addiu", 4, 0, 0),
    ("addiu", 2, 0, 4001),
    ("syscall",),
)


def _program(tmp_path, text: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(make_elf([(TEXT, text, len(text)), (DATA, b"x" * 64, 0x1000)]))
    return path


@pytest.fixture
def small_memory_limit(monkeypatch):
    monkeypatch.setattr(Memory, "max_pages", 64)
    monkeypatch.setattr("opml.vm.fast.MAX_MEMORY_PAGES", 64)


def test_endless_4_gib_writes_keep_only_the_capture_limit(tmp_path):
    steps = 3 + 4 * 10  # ten writes
    reference = load_elf(_program(tmp_path, ENDLESS_WRITE, "write"))
    fast = FastVM.from_state(reference, copy_memory=True)
    run(reference, max_steps=steps)
    fast.run(steps)
    got = fast.to_state()
    assert encode_state(got) == encode_state(reference)  # the state transition is unchanged
    assert reference.registers[2] == ALL and reference.registers[7] == 0  # v0 = count, a3 = 0
    for state in (reference, got):
        assert len(state.stdout) == MAX_CAPTURED_OUTPUT
        assert state.stdout.dropped == 10 * ALL - MAX_CAPTURED_OUTPUT
        assert bytes(state.stdout[:64]) == b"x" * 64 and len(state.stderr) == 0


def test_the_on_chain_step_of_a_4_gib_write_is_unchanged(tmp_path, mips):
    state = load_elf(_program(tmp_path, ENDLESS_WRITE, "write"))
    run(state, max_steps=4)  # at the syscall
    assert state.registers[2] == 4004 and state.registers[6] == ALL
    post = state.copy()
    post.stdout = post.stderr = None  # what the contract computes: it never reads a write's bytes
    step(post)
    witness = step_witness(state)
    assert bytes(mips.step.call(witness.state_data, witness.proof)) == state_hash(encode_state(post))
    step(state)  # capturing changes nothing in the state
    assert encode_state(state) == encode_state(post) and state.stdout.dropped == ALL - len(state.stdout)


def test_endless_memory_stops_both_executors_at_the_limit(tmp_path, small_memory_limit):
    reference = load_elf(_program(tmp_path, ENDLESS_MEMORY, "memory"))
    fast = FastVM.from_state(reference, copy_memory=True)
    with pytest.raises(MemoryLimitError, match="more than 64 pages"):
        run(reference, max_steps=10_000)
    with pytest.raises(MemoryLimitError, match="more than 64 pages"):
        fast.run(10_000)
    assert len(reference.memory.pages) == 64 and fast.touched_pages <= 64
    assert fast.step < 1000  # stopped within a few hundred steps, not at the step budget


def test_opml_vm_run_says_one_line_about_dropped_output(tmp_path):
    program = str(_program(tmp_path, THREE_WRITES, "three"))
    for extra in ([], ["--reference"]):
        result = CliRunner(mix_stderr=False).invoke(main, ["vm", "run", program, *extra])
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout_bytes) <= 3 * MAX_CAPTURED_OUTPUT
        [line] = result.stderr.splitlines()
        assert line.startswith("opml: guest output over the capture limit was dropped (")


def test_opml_vm_run_stops_a_guest_that_touches_memory_without_end(tmp_path, small_memory_limit):
    program = str(_program(tmp_path, ENDLESS_MEMORY, "memory"))
    for extra in ([], ["--reference"]):
        result = CliRunner(mix_stderr=False).invoke(main, ["vm", "run", program, *extra])
        assert result.exit_code == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: the guest touched more than 64 pages")
