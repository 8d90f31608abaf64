"""The VM state, its 226-byte encoding and its hash (vm-spec §2).

``stateData`` layout (all integers big-endian):

| offset | size | field         |
|-------:|-----:|---------------|
|      0 |   32 | memRoot       |
|     32 |   32 | preimageKey   |
|     64 |    4 | pc            |
|     68 |    4 | nextPC        |
|     72 |    4 | lo            |
|     76 |    4 | hi            |
|     80 |    4 | brk           |
|     84 |    4 | heap          |
|     88 |    1 | exitCode      |
|     89 |    1 | exited        |
|     90 |    8 | step          |
|     98 |  128 | registers[32] |
"""

import struct
from dataclasses import dataclass, field

from opml.hashing import keccak256
from opml.vm.constants import (
    NUM_REGISTERS,
    STATE_SIZE,
    STATUS_INVALID,
    STATUS_PANIC,
    STATUS_UNFINISHED,
    STATUS_VALID,
)
from opml.vm.errors import InvalidStateError
from opml.vm.limits import CapturedOutput, copy_output
from opml.vm.memory import Memory

# memRoot, preimageKey, pc, nextPC, lo, hi, brk, heap, exitCode, exited, step, registers
_LAYOUT = struct.Struct(">32s32s6IBBQ32I")
assert _LAYOUT.size == STATE_SIZE
_EXIT_CODE_OFFSET = 88
_EXITED_OFFSET = 89


@dataclass
class VMState:
    """The machine state. ``memory`` stands for ``memRoot``; the I/O buffers are not state.

    Invariants: integer fields fit their encoded width, ``registers[0] == 0`` and has 32 entries.
    ``stdout``/``stderr`` collect what the guest writes to fd 1 and 2; ``None`` discards it without
    reading guest memory (the proof verifier, like the contract, cannot read arbitrary memory).
    """

    memory: Memory = field(default_factory=Memory)
    preimage_key: bytes = bytes(32)
    pc: int = 0
    next_pc: int = 4
    lo: int = 0
    hi: int = 0
    brk: int = 0
    heap: int = 0
    exit_code: int = 0
    exited: bool = False
    step: int = 0
    registers: list[int] = field(default_factory=lambda: [0] * NUM_REGISTERS)
    stdout: bytearray | None = field(default_factory=CapturedOutput)
    stderr: bytearray | None = field(default_factory=CapturedOutput)

    def copy(self) -> "VMState":
        """Return an independent copy, memory and I/O buffers included."""
        return VMState(
            memory=self.memory.copy(),
            preimage_key=self.preimage_key,
            pc=self.pc,
            next_pc=self.next_pc,
            lo=self.lo,
            hi=self.hi,
            brk=self.brk,
            heap=self.heap,
            exit_code=self.exit_code,
            exited=self.exited,
            step=self.step,
            registers=list(self.registers),
            stdout=copy_output(self.stdout),
            stderr=copy_output(self.stderr),
        )


def encode_state(state: VMState) -> bytes:
    """Return the 226-byte ``stateData`` of ``state`` (§2.1)."""
    return _LAYOUT.pack(
        state.memory.merkle_root(),
        state.preimage_key,
        state.pc,
        state.next_pc,
        state.lo,
        state.hi,
        state.brk,
        state.heap,
        state.exit_code,
        int(state.exited),
        state.step,
        *state.registers,
    )


def decode_state(data: bytes, memory: Memory | None = None) -> VMState:
    """Decode ``stateData`` into a state over ``memory``, rejecting what the contract rejects.

    ``memory`` must be the memory whose root the state commits to; ``None`` means empty memory.
    Raises :class:`InvalidStateError` on a wrong length, ``exited > 1``, a non-zero ``$0`` or a
    ``memRoot`` that does not match ``memory``.
    """
    if len(data) != STATE_SIZE:
        raise InvalidStateError(f"stateData must be {STATE_SIZE} bytes, got {len(data)}")
    (mem_root, preimage_key, pc, next_pc, lo, hi, brk, heap, exit_code, exited, step, *registers) = (
        _LAYOUT.unpack(data)
    )
    if exited > 1:
        raise InvalidStateError(f"exited must be 0 or 1, got {exited}")
    if registers[0] != 0:
        raise InvalidStateError(f"registers[0] must be 0, got {registers[0]:#x}")
    memory = Memory() if memory is None else memory
    if memory.merkle_root() != mem_root:
        raise InvalidStateError(
            "memRoot of stateData does not match the given memory; pass the memory of this state"
        )
    return VMState(
        memory=memory,
        preimage_key=preimage_key,
        pc=pc,
        next_pc=next_pc,
        lo=lo,
        hi=hi,
        brk=brk,
        heap=heap,
        exit_code=exit_code,
        exited=bool(exited),
        step=step,
        registers=registers,
    )


def status_of(exited: bool, exit_code: int) -> int:
    """Return the status byte of a state (§2.2)."""
    if not exited:
        return STATUS_UNFINISHED
    if exit_code == 0:
        return STATUS_VALID
    if exit_code == 1:
        return STATUS_INVALID
    return STATUS_PANIC


def state_hash(state_data: bytes) -> bytes:
    """Return ``keccak256(stateData)`` with its most significant byte replaced by the status (§2.2)."""
    if len(state_data) != STATE_SIZE:
        raise InvalidStateError(f"stateData must be {STATE_SIZE} bytes, got {len(state_data)}")
    status = status_of(state_data[_EXITED_OFFSET] != 0, state_data[_EXIT_CODE_OFFSET])
    return bytes([status]) + keccak256(state_data)[1:]
