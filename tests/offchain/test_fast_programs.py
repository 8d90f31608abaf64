"""The fast executor and Trace on the real C programs of mips-toolchain (built by its Makefile).

* every program: fast VM vs reference ``step`` compared at EVERY step (all fields), memory pages after
  every 65536-step chunk, the Merkle root every 8 chunks and at the end (``lockstep``), and the final
  stdout and exit code against qemu-mipsel's (mips-toolchain/tests/expected/);
* ``Trace.state_at(n)`` for random ``n`` (in random order, so checkpoints are restored backwards and
  forwards) equals the reference state after ``n`` steps: encoded state (Merkle root included),
  pages, stdout and stderr.
"""

import random

import pytest
from _toolchain import ORACLE_PROGRAMS, TOOLCHAIN, build_toolchain, program_params
from test_fast_asm import assert_same_memory, lockstep

from opml.vm.elf import load_elf
from opml.vm.errors import StepRangeError
from opml.vm.fast import FastVM, Trace
from opml.vm.run import run
from opml.vm.state import encode_state
from opml.vm.step import step

# Programs that read the preimage oracle run with an oracle in test_oracle_vm.py.
PROGRAMS = sorted(
    p.stem for d in ("tests", "program") for p in (TOOLCHAIN / d).glob("*.c") if p.stem not in ORACLE_PROGRAMS
)


@pytest.fixture(scope="session")
def build_dir():
    return build_toolchain()


def _elf(build_dir, name):
    path = build_dir / name
    if not path.exists():
        pytest.fail(f"{path} was not built")
    return path


EXPECTED = TOOLCHAIN / "tests" / "expected"


@pytest.mark.parametrize("name", program_params(PROGRAMS))
def test_lockstep_every_step(build_dir, name):
    state = load_elf(_elf(build_dir, name))
    final = lockstep(state)
    assert final.exited
    assert bytes(final.stdout) == (EXPECTED / f"{name}.out").read_bytes()
    assert final.exit_code == int((EXPECTED / f"{name}.code").read_text())


def _snapshots(state, targets):
    """Run the reference once and copy the state at each target step (or its final state)."""
    out = {}
    ref = state.copy()
    for t in sorted(targets):
        while ref.step < t and not ref.exited:
            step(ref)
        out[t] = ref.copy()
    return out


@pytest.mark.parametrize("name", program_params(["recursion", "brk"]))
def test_trace_state_at_matches_reference(build_dir, name):
    state = load_elf(_elf(build_dir, name))
    total = FastVM.from_state(state, copy_memory=True)
    total.run()
    n_steps = total.step
    rng = random.Random(name)
    targets = {0, 1, n_steps - 1, n_steps, n_steps + 5}
    targets |= {rng.randrange(n_steps) for _ in range(14)}
    interval = max(1000, n_steps // 7 + rng.randrange(100))
    targets |= {interval, 2 * interval, 2 * interval - 1, 2 * interval + 1}
    snaps = _snapshots(state, targets)
    root0 = state.memory.merkle_root()
    trace = Trace(state, checkpoint_interval=interval)
    assert state.memory.merkle_root() == root0 and state.step == 0  # the initial state is untouched
    assert trace.exited and trace.final_step == n_steps
    order = list(targets)
    rng.shuffle(order)
    for i, n in enumerate(order):
        got = trace.state_at(n, copy=(i % 2 == 0))
        want = snaps[n]
        assert encode_state(got) == encode_state(want), f"state_at({n})"
        assert got.stdout == want.stdout and got.stderr == want.stderr
        vm = FastVM.from_state(got, copy_memory=True)
        assert_same_memory(want.memory, vm)


def test_trace_max_steps_and_errors(build_dir):
    state = load_elf(_elf(build_dir, "recursion"))
    trace = Trace(state, checkpoint_interval=10_000, max_steps=55_555)
    assert not trace.exited and trace.final_step == 55_555
    assert trace.checkpoint_steps[-1] == 55_555 and trace.checkpoint_steps[:3] == [0, 10_000, 20_000]
    # The reference VM, not the fast executor the trace is built on.
    assert encode_state(trace.state_at(55_555)) == encode_state(run(state.copy(), 55_555))
    assert encode_state(trace.state_at(12_345)) == encode_state(run(state.copy(), 12_345))
    with pytest.raises(StepRangeError):
        trace.state_at(55_556)
    # A returned copy may be stepped by the reference without disturbing the trace.
    s = trace.state_at(30_000)
    step(s)
    assert encode_state(trace.state_at(30_001)) == encode_state(s)


def test_trace_checkpoints_hold_only_dirty_pages(build_dir):
    state = load_elf(_elf(build_dir, "recursion"))
    trace = Trace(state, checkpoint_interval=100_000)
    n_ckpts = len(trace.checkpoint_steps)
    written = len(trace._versions)
    # Every stored version is a page written in that interval; far less than full copies.
    versions = sum(len(idxs) for idxs, _ in trace._versions.values())
    assert versions <= written * (n_ckpts - 1)
    assert trace.memory_bytes() <= (versions + written) * 4096
    assert written < len(trace.state_at(0).memory.pages) + 64
