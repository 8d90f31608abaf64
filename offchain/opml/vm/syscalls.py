"""The Linux o32 system calls of vm-spec §5, beside ``contracts/vm/lib/MIPSSyscalls.sol``.

The number is in ``$v0``, the arguments in ``$a0…$a3``; the result goes to ``$v0`` with ``$a3 = 0``,
or a positive errno to ``$v0`` with ``$a3 = 1``. As in the contract, each handler returns that pair
``(v0, err)`` and ``handle_syscall`` writes it. Memory is touched only through aligned
``read_u32``/``write_u32`` (and ``read_bytes`` to capture ``write`` output when the state collects
it), so the same handlers run over the reference ``Memory``, the witness recorder and verifier
(``opml.vm.witness``) and the fast executor's kernel memory (``opml.vm.fast``).

The preimage calls (§5.5) ask the oracle only after they have read every leaf they touch and before
they change anything: a missing preimage (:class:`~opml.oracle.errors.PreimageNotFoundError`) leaves
the state as it was, as the contract's ``step`` reverts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opml.vm.constants import (
    BRK_LIMIT,
    EBADF,
    EFBIG,
    EINVAL,
    ENOMEM,
    ENOSYS,
    FD_STDERR,
    FD_STDOUT,
    LEAF_SIZE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    MASK32,
    MAX_PREIMAGE_LENGTH,
    MMAP_LIMIT,
    PAGE_SIZE,
    PREIMAGE_KEY_TYPES,
    PREIMAGE_PART_SIZE,
    REG_A0,
    REG_A1,
    REG_A2,
    REG_A3,
    REG_V0,
    SYS_BRK,
    SYS_EXIT,
    SYS_EXIT_GROUP,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_PREIMAGE_LENGTH,
    SYS_PREIMAGE_READ,
    SYS_PREIMAGE_SELECT,
    SYS_WRITE,
)
from opml.vm.limits import capture
from opml.vm.preimage import PreimageOracle, as_oracle

if TYPE_CHECKING:
    from opml.vm.state import VMState


def handle_syscall(state: VMState, oracle: PreimageOracle | None = None) -> None:
    """Execute ``syscall`` (§5). ``exit``/``exit_group`` stop the program without advancing ``pc`` or
    changing a register; every other call advances ``pc`` like an ordinary instruction."""
    regs = state.registers
    number, a0 = regs[REG_V0], regs[REG_A0]
    if number in (SYS_EXIT, SYS_EXIT_GROUP):
        state.exited = True
        state.exit_code = a0 & 0xFF
        return
    v0, err = 0, 0
    if number == SYS_WRITE:
        if a0 in (FD_STDOUT, FD_STDERR):
            sink = state.stdout if a0 == FD_STDOUT else state.stderr
            if sink is not None:  # at most MAX_CAPTURED_OUTPUT bytes are kept (limits.py)
                capture(sink, state.memory.read_bytes, regs[REG_A1], regs[REG_A2])
            v0 = regs[REG_A2]  # the count is written in full
        else:
            v0, err = EBADF, 1
    elif number == SYS_BRK:
        if 0 < a0 <= BRK_LIMIT:  # brk(0) is a query; the break may grow or shrink (§5.3)
            state.brk = a0
        v0 = state.brk
    elif number == SYS_MMAP:
        v0, err = handle_mmap(state, regs[REG_A1], regs[REG_A3])
    elif number == SYS_MUNMAP:
        v0 = 0  # memory is kept
    elif number == SYS_PREIMAGE_SELECT:
        if a0 % LEAF_SIZE:  # a misaligned key address reads no leaf
            v0, err = EINVAL, 1
        else:
            state.preimage_key = read_leaf(state.memory, a0)
    elif number == SYS_PREIMAGE_LENGTH:
        v0, err = handle_preimage_length(state, as_oracle(oracle))
    elif number == SYS_PREIMAGE_READ:
        v0, err = handle_preimage_read(state, as_oracle(oracle), a0, regs[REG_A1], regs[REG_A2])
    else:
        v0, err = ENOSYS, 1
    regs[REG_V0], regs[REG_A3] = v0, err
    # advance (§4.2), written out as MIPSSyscalls.sol does: instructions.py imports this module
    state.pc = state.next_pc
    state.next_pc = (state.next_pc + 4) & MASK32


def handle_mmap(state: VMState, length: int, flags: int) -> tuple[int, int]:
    """Anonymous ``mmap(addr, len, prot, flags)`` from the bump allocator at ``heap`` (§5.4)."""
    if (
        not flags & MAP_ANONYMOUS
        or flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE)
        or flags & MAP_FIXED
        or length == 0
    ):
        return EINVAL, 1
    size = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK32
    if size == 0 or state.heap + size > MMAP_LIMIT:
        return ENOMEM, 1
    address = state.heap
    state.heap += size
    return address, 0


def handle_preimage_length(state: VMState, oracle: PreimageOracle) -> tuple[int, int]:
    """``preimage_length()``: the length of the selected preimage, ``EFBIG`` if it is ≥ 2^32."""
    if not is_known_key_type(state.preimage_key):
        return EINVAL, 1
    length = oracle.preimage_length(oracle.effective_key(state.preimage_key))
    if length >= MAX_PREIMAGE_LENGTH:
        return EFBIG, 1
    return length, 0


def handle_preimage_read(
    state: VMState, oracle: PreimageOracle, offset: int, buf: int, count: int
) -> tuple[int, int]:
    """``preimage_read(offset, buf, count)``: copies ``n = preimage_read_count(…)`` bytes of the
    selected preimage from ``offset`` to ``buf`` and returns ``n``.

    Order (the contract's): ``count == 0`` returns 0 and reads nothing; else ``buf``'s leaf is read
    (its data proof), a key of no known type is ``EINVAL``, the length is asked for, ``offset ≥ len``
    returns 0 with memory unchanged, and only then is the part at ``offset − offset % 32`` asked for.
    """
    if count == 0:
        return 0, 0
    state.memory.read_u32(buf & ~3)  # buf's leaf: its data proof comes before any question
    if not is_known_key_type(state.preimage_key):
        return EINVAL, 1
    key = oracle.effective_key(state.preimage_key)
    length = oracle.preimage_length(key)
    if offset >= length:
        return 0, 0
    within = offset % PREIMAGE_PART_SIZE
    n = preimage_read_count(offset, buf, count, length)
    part = oracle.preimage_part(key, offset - within)
    write_leaf_bytes(state.memory, buf, part[within : within + n])
    return n, 0


def is_known_key_type(key: bytes) -> bool:
    """Whether ``key`` has a type the oracle knows (1 local, 2 keccak, 3 chunk-Merkle). A guest that
    reads before it selects such a key gets ``EINVAL``, so every step stays provable."""
    return key[0] in PREIMAGE_KEY_TYPES


def preimage_read_count(offset: int, buf: int, count: int, length: int) -> int:
    """Bytes one ``preimage_read(offset, buf, count)`` copies from a preimage of ``length`` bytes
    (``MIPSSyscalls.copyPart``): at most ``count``, never past the part that holds ``offset``, the
    leaf that holds ``buf``, or the end of the data (0 when ``offset ≥ length``). Plain integer
    arithmetic, so the fast executor's numba kernel compiles this same function."""
    if offset >= length:
        return 0
    return min(
        count, PREIMAGE_PART_SIZE - offset % PREIMAGE_PART_SIZE, LEAF_SIZE - buf % LEAF_SIZE, length - offset
    )


def read_leaf(memory, addr: int) -> bytes:
    """Return the 32 bytes of the leaf at the 32-byte aligned ``addr``, in address order (§3.1)."""
    return b"".join(memory.read_u32(addr + 4 * i).to_bytes(4, "little") for i in range(LEAF_SIZE // 4))


def write_leaf_bytes(memory, addr: int, data: bytes) -> None:
    """Store ``data`` at ``addr``; ``[addr, addr + len(data))`` lies inside one leaf. Only the aligned
    words that overlap it are read and written."""
    end = addr + len(data)
    for word_addr in range(addr & ~3, end, 4):
        word = bytearray(memory.read_u32(word_addr).to_bytes(4, "little"))
        lo, hi = max(addr, word_addr), min(end, word_addr + 4)
        word[lo - word_addr : hi - word_addr] = data[lo - addr : hi - addr]
        memory.write_u32(word_addr, int.from_bytes(word, "little"))
