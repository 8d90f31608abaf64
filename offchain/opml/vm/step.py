"""One step of the VM, in the order of checks of vm-spec §4.1 (beside ``contracts/vm/MIPS.sol``).

``step`` mutates a :class:`VMState` in place. The instruction is executed by
:mod:`opml.vm.instructions` (``MIPSInstructions.sol``) and its system calls by :mod:`opml.vm.syscalls`
(``MIPSSyscalls.sol``). Memory is touched only through aligned ``read_u32``/``write_u32`` (plus
``read_bytes`` to copy ``write`` output when the state collects it), so the same code runs over the
witness recorder and the proof verifier of :mod:`opml.vm.witness`.

The preimage system calls (§5.5) ask ``oracle`` (a :class:`~opml.vm.preimage.PreimageOracle`). When
it cannot answer (or is ``None``) the step raises :class:`~opml.oracle.errors.PreimageNotFoundError`
and leaves the state unchanged, as the contract's ``step`` reverts.
"""

from opml.oracle.errors import PreimageNotFoundError
from opml.vm.constants import MASK64, SIGBUS
from opml.vm.instructions import exec_mips_core_step_logic, panic
from opml.vm.preimage import PreimageOracle
from opml.vm.state import VMState


def step(state: VMState, oracle: PreimageOracle | None = None) -> None:
    """Execute one instruction of ``state`` in place (§4.1). An exited state is left unchanged.

    ``oracle`` answers the preimage system calls (§5.5). If it lacks the data a step needs, or is
    ``None`` and the step needs data, :class:`PreimageNotFoundError` is raised and ``state`` is left
    as it was before the step (supply the data and call again).
    """
    if state.exited:
        return
    pre_step = state.step
    state.step = (pre_step + 1) & MASK64
    if state.pc & 3:
        return panic(state, SIGBUS)
    insn = state.memory.read_u32(state.pc)
    try:
        exec_mips_core_step_logic(state, insn, oracle)
    except PreimageNotFoundError:
        state.step = pre_step  # the oracle is asked before anything else changes: undo the step (a revert)
        raise
