"""Running the VM for many steps, and the single place that produces "the state after N steps"."""

from pathlib import Path

from opml.vm.elf import load_elf
from opml.vm.state import VMState
from opml.vm.step import step


def run(state: VMState, max_steps: int | None = None) -> VMState:
    """Step ``state`` in place until it exits or ``max_steps`` more steps have run; return it."""
    executed = 0
    while not state.exited and (max_steps is None or executed < max_steps):
        step(state)
        executed += 1
    return state


def state_at(elf_path: str | Path, n: int) -> VMState:
    """Return the state of program ``elf_path`` after ``n`` steps (or its final state if it exits first).

    Everything that needs a state by step number (CLI, dispute agents) goes through this function,
    so a faster executor can replace the reference ``run`` here alone.
    """
    return run(load_elf(elf_path), max_steps=n)
