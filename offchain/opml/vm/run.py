"""Running the VM for many steps, and the single place that produces "the state after N steps"."""

from pathlib import Path

from opml.vm.elf import load_elf
from opml.vm.preimage import PreimageOracle
from opml.vm.state import VMState
from opml.vm.step import step


def run(state: VMState, max_steps: int | None = None, oracle: PreimageOracle | None = None) -> VMState:
    """Step ``state`` in place with the reference VM until it exits or ``max_steps`` more steps have
    run; return it. ``oracle`` answers the preimage system calls (§5.5)."""
    executed = 0
    while not state.exited and (max_steps is None or executed < max_steps):
        step(state, oracle)
        executed += 1
    return state


def state_at(elf_path: str | Path, n: int, oracle: PreimageOracle | None = None) -> VMState:
    """Return the state of program ``elf_path`` after ``n`` steps (or its final state if it exits first).

    Everything that needs a state by step number (CLI, dispute agents) goes through this function.
    It runs the fast executor (``opml.vm.fast``, which agrees with the reference ``step`` at every
    step) and returns a reference :class:`VMState` (Merkle-cached memory) ready for ``step_witness``.
    """
    from opml.vm.fast import FastVM  # numba is imported only when needed

    vm = FastVM.from_state(load_elf(elf_path), oracle=oracle)
    vm.run(n)
    return vm.to_state()
