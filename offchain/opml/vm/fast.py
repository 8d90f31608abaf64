"""Fast executor of the MIPS VM: a numba interpreter that agrees with ``opml.vm.step`` at every step.

The reference VM (``opml.vm.step``) is the source of truth; this module only makes reaching a given
step cheap.  The semantics live in :mod:`opml.vm.fast_core` (one ``@njit`` kernel); this module moves
state between the kernel's numpy arrays and the reference :class:`~opml.vm.state.VMState`.

* :class:`FastVM` — run a state forward to an exact step number (or to its exit).
* :class:`Trace` — run once, keep periodic checkpoints, then rebuild the state (with a Merkle-cached
  reference ``Memory``) at any step ``n`` cheaply.

Memory mirror invariant (``FastVM``, called **I1** below): ``FastVM`` keeps a reference
:class:`~opml.vm.memory.Memory` (``self.memory``).  For every guest page whose ``DIRTY_SYNC`` bit is
clear, the kernel's copy of the page (pool page, or absent) has the same bytes as ``memory.pages``
(absent or all-zero).  Every store sets the bit; :meth:`FastVM.to_state` copies exactly the pages
with the bit set into ``memory`` (calling ``mark_dirty`` for each, so the Merkle caches stay valid and
only those pages are rehashed) and clears the bit.  Nobody else may mutate ``memory`` while the
``FastVM`` is in use (use ``state.copy()`` / ``Memory.copy()`` to get an independent one).

Preimage oracle (spec §5.5): ``FastVM.oracle`` is a :class:`~opml.vm.preimage.PreimageOracle` (or
``None``, like ``step(state, oracle=None)``).  ``preimage_select`` and ``preimage_length`` stop the
kernel and run in Python (rare).  ``preimage_read`` runs inside the kernel once Python has handed it
the selected preimage as a ``uint8`` array (``oracle.preimage_array(effective_key)``, e.g. a memory
map of the store file: nothing is materialized); an oracle without ``preimage_array`` (or returning
``None``) gets one Python call per ``preimage_read``.  The array is dropped whenever ``preimageKey``
or the oracle changes.  A missing preimage raises ``PreimageNotFoundError`` from :meth:`FastVM.run`
with the state just before the step that needed it.
"""

from __future__ import annotations

import bisect
import sys

import numpy as np

from opml.oracle.keys import KeyType
from opml.vm import fast_core as K
from opml.vm.constants import PAGE_SIZE, REG_A0, REG_A2, REG_V0, SYS_PREIMAGE_READ
from opml.vm.errors import StepRangeError
from opml.vm.limits import MAX_MEMORY_PAGES, CapturedOutput, capture, copy_output, memory_limit_error
from opml.vm.memory import Memory
from opml.vm.preimage import EMPTY_PREIMAGE, PreimageOracle
from opml.vm.state import VMState
from opml.vm.syscalls import handle_syscall, is_known_key_type

assert sys.byteorder == "little", "the fast executor's uint32 memory views assume a little-endian host"

_MAX_STEP = (1 << 63) - 1
_OUT_CAP = 1 << 16  # initial bytes per output buffer
_OUT_MAX_BUFFERED = 1 << 26  # a single write larger than this is executed in Python
_MIN_POOL_PAGES = 256
_ZERO_PAGE = bytes(PAGE_SIZE)


def _check_step_counter(step: int) -> None:
    """Raise :class:`StepRangeError` unless ``step`` fits the kernel's int64 step counter."""
    if step >= _MAX_STEP:
        raise StepRangeError(
            f"step {step} is beyond the fast executor's int64 step counter: step such a state with the "
            "reference opml.vm.step.step (it wraps the counter modulo 2^64 like MIPS.sol)"
        )


class _KernelMemory:
    """A :class:`FastVM`'s memory as the reference handlers see it: aligned words, and bytes for
    ``write`` output. Writes go through ``FastVM.write_bytes``, which sets the dirty bits."""

    def __init__(self, vm: FastVM) -> None:
        self._vm = vm

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self._vm.read_bytes(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self._vm.write_bytes(addr, value.to_bytes(4, "little"))

    def read_bytes(self, addr: int, n: int) -> bytes:
        return self._vm.read_bytes(addr, n)


class FastVM:
    """A VM state held in numpy arrays and advanced by the numba kernel.

    Build it with :meth:`from_state`, advance it with :meth:`run`, read it back with :meth:`to_state`.
    ``from_state`` takes ownership of ``state.memory`` (it is updated in place by ``to_state``); pass
    ``copy_memory=True`` to leave the caller's memory untouched.
    """

    def __init__(self) -> None:
        self.regs = np.zeros(32, dtype=np.int64)
        self.st = np.zeros(K.ST_SIZE, dtype=np.int64)
        self.pt = np.full(K.N_PAGES, -1, dtype=np.int32)
        self.dirty = np.zeros(K.N_PAGES, dtype=np.uint8)
        self._set_pool(np.zeros(_MIN_POOL_PAGES * PAGE_SIZE, dtype=np.uint8))
        self.out1 = np.zeros(_OUT_CAP, dtype=np.uint8)
        self.out2 = np.zeros(_OUT_CAP, dtype=np.uint8)
        self.memory = Memory()
        self.pre = EMPTY_PREIMAGE  # the selected preimage for the kernel, valid iff st[ST_PRE_OK]
        self._pre_tried: tuple | None = None  # (key, oracle) whose preimage_array gave no array
        self._oracle: PreimageOracle | None = None
        self._preimage_key = bytes(32)
        self.max_pages = MAX_MEMORY_PAGES  # guest pages a run may touch (limits.py)
        self.stdout: bytearray | None = CapturedOutput()
        self.stderr: bytearray | None = CapturedOutput()

    # --- oracle -----------------------------------------------------------------------------------

    @property
    def preimage_key(self) -> bytes:
        """``preimageKey`` of the state (as the guest selected it, not localized)."""
        return self._preimage_key

    @preimage_key.setter
    def preimage_key(self, key: bytes) -> None:
        if key != self._preimage_key:
            self._drop_preimage()
        self._preimage_key = bytes(key)

    @property
    def oracle(self) -> PreimageOracle | None:
        """The oracle the preimage system calls ask (``None``: they raise PreimageNotFoundError)."""
        return self._oracle

    @oracle.setter
    def oracle(self, oracle: PreimageOracle | None) -> None:
        if oracle is not self._oracle:
            self._drop_preimage()
        self._oracle = oracle

    def _drop_preimage(self) -> None:
        self.st[K.ST_PRE_OK] = 0
        self.st[K.ST_PRE_LEN] = 0
        self.pre = EMPTY_PREIMAGE
        self._pre_tried = None

    def _forget_local_preimage(self) -> None:
        """A local value can be replaced between runs (the oracle lets its caller overwrite it, and
        the reference reads the store on every access): the kernel must not keep its old bytes, so a
        selected local value is handed to it afresh at the start of every run."""
        if self._preimage_key[0] == KeyType.LOCAL:
            self._drop_preimage()

    def _load_preimage(self) -> bool:
        """Hand the kernel the selected preimage as an array; return whether it now has it.

        Raises PreimageNotFoundError when the oracle does not hold it (nothing has changed then).
        """
        if self.st[K.ST_PRE_OK]:
            return True
        oracle = self._oracle
        if oracle is None:
            return False
        getter = getattr(oracle, "preimage_array", None)
        if getter is None or self._pre_tried == (self._preimage_key, id(oracle)):
            return False
        array = getter(oracle.effective_key(self._preimage_key))
        if array is None:
            self._pre_tried = (self._preimage_key, id(oracle))
            return False
        array = np.ascontiguousarray(array, dtype=np.uint8).reshape(-1)
        if array.flags.writeable:  # the kernel is compiled for read-only arrays only
            array = array.view()
            array.setflags(write=False)
        self.pre = array
        self.st[K.ST_PRE_LEN] = array.shape[0]
        self.st[K.ST_PRE_OK] = 1
        return True

    # --- construction / conversion ----------------------------------------------------------------

    def _set_pool(self, pool8: np.ndarray) -> None:
        self.pool8 = pool8
        self.pool16 = pool8.view(np.uint16)
        self.pool32 = pool8.view(np.uint32)

    @classmethod
    def from_state(
        cls, state: VMState, copy_memory: bool = False, oracle: PreimageOracle | None = None
    ) -> FastVM:
        """Load ``state`` (its memory is reused, see the class docstring); ``oracle`` answers §5.5."""
        vm = cls()
        vm.oracle = oracle
        vm.memory = state.memory.copy() if copy_memory else state.memory
        pages = vm.memory.pages
        n = max(_MIN_POOL_PAGES, len(pages) + len(pages) // 4 + 64)
        n = min(n, max(len(pages), vm.max_pages))  # the pool never outgrows the memory limit
        vm._set_pool(np.zeros(n * PAGE_SIZE, dtype=np.uint8))
        for k, (page_no, page) in enumerate(pages.items()):
            vm.pt[page_no] = k
            vm.pool8[k * PAGE_SIZE : (k + 1) * PAGE_SIZE] = np.frombuffer(page, dtype=np.uint8)
        vm.st[K.ST_NUSED] = len(pages)
        vm.set_scalars(state)
        vm.stdout = copy_output(state.stdout)
        vm.stderr = copy_output(state.stderr)
        return vm

    def set_scalars(self, state: VMState) -> None:
        """Copy every non-memory field of ``state`` (except stdout/stderr) into the arrays."""
        self.regs[:] = state.registers
        st = self.st
        st[K.ST_PC] = state.pc
        st[K.ST_NPC] = state.next_pc
        st[K.ST_LO] = state.lo
        st[K.ST_HI] = state.hi
        st[K.ST_BRK] = state.brk
        st[K.ST_HEAP] = state.heap
        st[K.ST_EXIT_CODE] = state.exit_code
        st[K.ST_EXITED] = int(state.exited)
        _check_step_counter(state.step)
        st[K.ST_STEP] = state.step
        self.preimage_key = state.preimage_key

    def scalars(self) -> tuple:
        """Return a compact snapshot of the non-memory state (see :meth:`set_scalars_tuple`)."""
        return (self.regs.copy(), self.st[: K.ST_STEP + 1].copy(), self.preimage_key)

    def set_scalars_tuple(self, snap: tuple) -> None:
        regs, st, key = snap
        self.regs[:] = regs
        self.st[: K.ST_STEP + 1] = st
        self.preimage_key = key

    def sync_memory(self) -> list[int]:
        """Copy the pages written since the last sync into ``self.memory`` (re-establishes I1).

        Returns the page numbers that were copied.
        """
        dirty_pages = np.flatnonzero(self.dirty & K.DIRTY_SYNC)
        pages = self.memory.pages
        pool8 = self.pool8
        for page_no in dirty_pages.tolist():
            k = int(self.pt[page_no])
            data = pool8[k * PAGE_SIZE : (k + 1) * PAGE_SIZE]
            page = pages.get(page_no)
            if page is None:
                pages[page_no] = bytearray(data.tobytes())
            else:
                page[:] = data.tobytes()
            self.memory.mark_dirty(page_no)
        if len(dirty_pages):
            self.dirty[dirty_pages] &= ~np.uint8(K.DIRTY_SYNC)
        return dirty_pages.tolist()

    def to_state(self) -> VMState:
        """Return the current state as a :class:`VMState` sharing (and updating) ``self.memory``."""
        self._flush_out()
        self.sync_memory()
        return self._state_over(self.memory, copy_output(self.stdout), copy_output(self.stderr))

    def _state_over(self, memory, stdout: bytearray | None, stderr: bytearray | None) -> VMState:
        """The current non-memory state as a :class:`VMState` over ``memory`` and the given streams."""
        st = self.st
        return VMState(
            memory=memory,
            preimage_key=self.preimage_key,
            pc=int(st[K.ST_PC]),
            next_pc=int(st[K.ST_NPC]),
            lo=int(st[K.ST_LO]),
            hi=int(st[K.ST_HI]),
            brk=int(st[K.ST_BRK]),
            heap=int(st[K.ST_HEAP]),
            exit_code=int(st[K.ST_EXIT_CODE]),
            exited=bool(st[K.ST_EXITED]),
            step=int(st[K.ST_STEP]),
            registers=[int(r) for r in self.regs],
            stdout=stdout,
            stderr=stderr,
        )

    # --- accessors --------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return int(self.st[K.ST_STEP])

    @property
    def pc(self) -> int:
        return int(self.st[K.ST_PC])

    @property
    def exited(self) -> bool:
        return bool(self.st[K.ST_EXITED])

    @property
    def exit_code(self) -> int:
        return int(self.st[K.ST_EXIT_CODE])

    @property
    def touched_pages(self) -> int:
        """Guest pages the VM holds: loaded by the ELF or written since (memory is never freed, so
        this is also the peak). ``touched_pages * 4096`` is the VM's memory footprint."""
        return int(self.st[K.ST_NUSED])

    def take_output(self) -> tuple[bytes, bytes]:
        """Return and clear what the guest wrote to fd 1 and fd 2 so far."""
        self._flush_out()
        out = b"" if self.stdout is None else bytes(self.stdout)
        err = b"" if self.stderr is None else bytes(self.stderr)
        if self.stdout is not None:
            self.stdout.clear()
        if self.stderr is not None:
            self.stderr.clear()
        return out, err

    def read_page(self, page_no: int) -> bytes | None:
        """Return the 4096 bytes of guest page ``page_no`` as the kernel holds it (``None``: absent)."""
        k = int(self.pt[page_no])
        if k < 0:
            return None
        return self.pool8[k * PAGE_SIZE : (k + 1) * PAGE_SIZE].tobytes()

    def write_page(self, page_no: int, data: bytes | None) -> None:
        """Overwrite guest page ``page_no`` in the kernel (``None``: zero; the page stays allocated).

        Does not touch ``self.memory`` or the dirty bits; the caller keeps I1 (see :class:`Trace`).
        """
        k = int(self.pt[page_no])
        if k < 0:
            if data is None:
                return
            k = self._alloc_page(page_no)
        dst = self.pool8[k * PAGE_SIZE : (k + 1) * PAGE_SIZE]
        if data is None:
            dst[:] = 0
        else:
            dst[:] = np.frombuffer(data, dtype=np.uint8)

    def _alloc_page(self, page_no: int) -> int:
        k = int(self.st[K.ST_NUSED])
        if k >= self.pool8.shape[0] // PAGE_SIZE:
            self._grow_pool()
        self.pt[page_no] = k
        self.st[K.ST_NUSED] = k + 1
        return k

    def read_bytes(self, addr: int, n: int) -> bytes:
        """Read ``n`` guest bytes at ``addr`` (wrapping at 2^32) from the kernel's memory."""
        out = bytearray()
        while n > 0:
            off = addr & 0xFFF
            chunk = min(n, PAGE_SIZE - off)
            k = int(self.pt[addr >> 12])
            if k < 0:
                out += bytes(chunk)
            else:
                base = k * PAGE_SIZE + off
                out += self.pool8[base : base + chunk].tobytes()
            addr = (addr + chunk) & 0xFFFFFFFF
            n -= chunk
        return bytes(out)

    # --- running ----------------------------------------------------------------------------------

    def _grow_pool(self) -> None:
        """Double the page pool, up to ``max_pages`` (:mod:`opml.vm.limits`): a guest that needs one
        page more raises MemoryLimitError, with the step not executed."""
        old = self.pool8
        pages = min(2 * (old.shape[0] // PAGE_SIZE), self.max_pages)
        if pages * PAGE_SIZE <= old.shape[0]:
            raise memory_limit_error(self.max_pages)
        new = np.zeros(pages * PAGE_SIZE, dtype=np.uint8)
        new[: old.shape[0]] = old
        self._set_pool(new)

    def _flush_out(self) -> None:
        """Move the kernel's buffered output into the streams, under the capture cap (limits.py)."""
        n1 = int(self.st[K.ST_OUT1])
        if n1:
            if self.stdout is not None:
                capture(self.stdout, lambda _addr, n: self.out1[:n].tobytes(), 0, n1)
            self.st[K.ST_OUT1] = 0
        n2 = int(self.st[K.ST_OUT2])
        if n2:
            if self.stderr is not None:
                capture(self.stderr, lambda _addr, n: self.out2[:n].tobytes(), 0, n2)
            self.st[K.ST_OUT2] = 0

    def _handle_out(self) -> None:
        """The kernel stopped before a ``write`` that does not fit its buffer."""
        self._flush_out()
        req = int(self.st[K.ST_REQ])
        fd = int(self.regs[REG_A0])
        sink = self.stdout if fd == 1 else self.stderr
        if sink is not None and req <= _OUT_MAX_BUFFERED:
            cap = 1 << max(16, (req - 1).bit_length())
            if fd == 1 and self.out1.shape[0] < cap:
                self.out1 = np.zeros(cap, dtype=np.uint8)
            if fd == 2 and self.out2.shape[0] < cap:
                self.out2 = np.zeros(cap, dtype=np.uint8)
            return
        self._reference_syscall()  # a huge write, or one whose output is discarded

    def _py_syscall(self) -> None:
        """Execute a ``syscall`` step that the kernel left to Python (``STATUS_SYSCALL``).

        The kernel leaves ``preimage_select``, ``preimage_length`` and a ``preimage_read`` before it
        has the preimage array. Such a read is handed the array here when the oracle has one, and the
        kernel executes it on its next call; every other step runs in the reference handler.
        """
        regs = self.regs
        if (
            int(regs[REG_V0]) == SYS_PREIMAGE_READ
            and int(regs[REG_A2]) != 0
            and is_known_key_type(self._preimage_key)
            and self._load_preimage()
        ):
            return
        self._reference_syscall()

    def _reference_syscall(self) -> None:
        """Execute the ``syscall`` step at ``pc`` with the reference handler
        (:func:`opml.vm.syscalls.handle_syscall`) over the kernel's memory and output streams.

        The handler asks the oracle before it changes anything and the arrays take its result only
        when it returns, so a PreimageNotFoundError leaves the step undone (as ``opml.vm.step`` does).
        """
        state = self._state_over(_KernelMemory(self), self.stdout, self.stderr)
        state.step += 1
        _check_step_counter(state.step)  # before the handler, so nothing is half-applied
        handle_syscall(state, self._oracle)
        self.set_scalars(state)

    def write_bytes(self, addr: int, data: bytes) -> None:
        """Store ``data`` at guest ``addr`` (wrapping at 2^32), allocating pages and setting dirty bits."""
        view = memoryview(bytes(data))
        while view:
            off = addr & 0xFFF
            chunk = min(len(view), PAGE_SIZE - off)
            page_no = addr >> 12
            k = int(self.pt[page_no])
            if k < 0:
                k = self._alloc_page(page_no)
            base = k * PAGE_SIZE + off
            self.pool8[base : base + chunk] = np.frombuffer(view[:chunk], dtype=np.uint8)
            self.dirty[page_no] |= K.DIRTY_ALL
            addr = (addr + chunk) & 0xFFFFFFFF
            view = view[chunk:]

    def run(self, until_step: int | None = None) -> bool:
        """Run until ``step == until_step`` or until the program exits; return ``exited``.

        Does nothing if the state has exited or ``step >= until_step`` already.
        """
        until = _MAX_STEP if until_step is None else int(until_step)
        self._forget_local_preimage()
        while True:
            status = K.run_core(
                self.regs,
                self.st,
                self.pt,
                self.pool8,
                self.pool16,
                self.pool32,
                self.dirty,
                self.out1,
                self.out2,
                self.pre,
                until,
            )
            if status == K.STATUS_NEED_PAGE:
                self._grow_pool()
            elif status == K.STATUS_NEED_OUT:
                self._handle_out()
            elif status == K.STATUS_SYSCALL:
                self._py_syscall()
            else:
                return status == K.STATUS_EXITED

    def record(self, max_steps: int) -> np.ndarray:
        """Run up to ``max_steps`` steps (fewer if the program exits) and return one row per step.

        Row ``i`` is the state after that step: ``[pc, nextPC, lo, hi, brk, heap, exitCode, exited,
        step, registers[0..31]]`` (``int64``).  For lockstep tests against the reference.
        """
        rows = np.zeros((max_steps, K.ROW_SIZE), dtype=np.int64)
        done = 0
        until = self.step + max_steps
        self._forget_local_preimage()
        while done < max_steps:
            status, n = K.run_record(
                self.regs,
                self.st,
                self.pt,
                self.pool8,
                self.pool16,
                self.pool32,
                self.dirty,
                self.out1,
                self.out2,
                self.pre,
                until,
                rows[done:],
            )
            done += n
            if status == K.STATUS_NEED_PAGE:
                self._grow_pool()
            elif status in (K.STATUS_NEED_OUT, K.STATUS_SYSCALL):
                before = self.step
                if status == K.STATUS_NEED_OUT:
                    self._handle_out()
                else:
                    self._py_syscall()
                if self.step != before:  # the step ran in Python
                    rows[done, :9] = self.st[:9]
                    rows[done, 9:] = self.regs
                    done += 1
            else:
                break
        return rows[:done]


def run_to(state: VMState, until_step: int | None = None, oracle: PreimageOracle | None = None) -> VMState:
    """Convenience: return the state reached from ``state`` at ``until_step`` (or exit).

    ``state`` is left unchanged (its memory is copied).
    """
    vm = FastVM.from_state(state, copy_memory=True, oracle=oracle)
    vm.run(until_step)
    return vm.to_state()


class Trace:
    """A long execution run once, with checkpoints, so that the state at any step is cheap to rebuild.

    ``Trace(initial, checkpoint_interval=C, max_steps=None)`` runs ``initial`` forward (it is not
    modified) until it exits or reaches ``max_steps`` steps, and records a checkpoint at every step
    that is a multiple of ``C`` and one at the final step.

    Storage (bounded by the pages the program writes, not by the length of the trace):

    * per checkpoint: registers and scalar fields, and the lengths of stdout/stderr so far;
    * per guest page written during the run: ``_versions[page] = (ckpt_indices, contents)``, the page
      contents at each checkpoint whose interval wrote the page (a full copy of only the pages dirtied
      since the previous checkpoint), plus ``_initial[page]`` (the contents before the run, ``None``
      for absent).  The version of page ``p`` at checkpoint ``k`` is the last content with index
      ``<= k``, else ``_initial[p]``.

    One working :class:`FastVM` and its reference ``Memory`` (with Merkle caches) are kept at
    "checkpoint ``_pos`` plus the pages in ``_extra``" (pages written since that checkpoint).
    :meth:`state_at` moves them to checkpoint ``k`` by rewriting only the pages that differ between the
    two checkpoints (pages in any delta between them, plus ``_extra``) in both the kernel and the
    ``Memory`` (``mark_dirty``), then runs the kernel the remaining ``n - step_k`` (< ``C``) steps and
    syncs the pages it wrote.  The Merkle root therefore costs O(changed pages) per query.
    """

    def __init__(
        self,
        initial: VMState,
        checkpoint_interval: int = 1_000_000,
        max_steps: int | None = None,
        oracle: PreimageOracle | None = None,
    ):
        if checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be positive")
        self.interval = int(checkpoint_interval)
        vm = FastVM.from_state(initial, copy_memory=True, oracle=oracle)
        self._vm = vm
        self.start_step = vm.step
        self._ck_steps: list[int] = []
        self._ck_scalars: list[tuple] = []
        self._ck_out: list[tuple[int, int, int, int]] = []  # captured bytes and dropped, per stream
        self._versions: dict[int, tuple[list[int], list[bytes | None]]] = {}
        self._initial: dict[int, bytes | None] = {}
        limit = _MAX_STEP if max_steps is None else int(max_steps)
        vm.dirty[:] = 0
        self._checkpoint()
        while not vm.exited and vm.step < limit:
            nxt = min(limit, (vm.step // self.interval + 1) * self.interval)
            vm.run(nxt)
            self._checkpoint()
        vm._flush_out()
        self.final_step = vm.step
        self.exited = vm.exited
        self.stdout = None if vm.stdout is None else bytes(vm.stdout)
        self.stderr = None if vm.stderr is None else bytes(vm.stderr)
        # The kernel is at the last checkpoint; bring the reference Memory there too (re-establish I1).
        vm.sync_memory()
        vm.dirty[:] = 0
        self._pos = len(self._ck_steps) - 1
        self._extra: set[int] = set()

    def _checkpoint(self) -> None:
        vm = self._vm
        idx = len(self._ck_steps)
        if idx and self._ck_steps[-1] == vm.step:
            return  # nothing ran since the last checkpoint (it cannot have written memory)
        vm._flush_out()
        pages = np.flatnonzero(vm.dirty & K.DIRTY_CKPT)
        mem_pages = vm.memory.pages  # still the initial memory during the forward run
        for page_no in pages.tolist():
            ver = self._versions.get(page_no)
            if ver is None:
                init = mem_pages.get(page_no)
                self._initial[page_no] = None if init is None else bytes(init)
                ver = self._versions[page_no] = ([], [])
            ver[0].append(idx)
            ver[1].append(vm.read_page(page_no))
        if len(pages):
            vm.dirty[pages] &= ~np.uint8(K.DIRTY_CKPT)
        self._ck_steps.append(vm.step)
        self._ck_scalars.append(vm.scalars())
        self._ck_out.append(
            (
                0 if vm.stdout is None else len(vm.stdout),
                0 if vm.stderr is None else len(vm.stderr),
                getattr(vm.stdout, "dropped", 0),
                getattr(vm.stderr, "dropped", 0),
            )
        )

    @property
    def checkpoint_steps(self) -> list[int]:
        return list(self._ck_steps)

    def _page_at(self, page_no: int, k: int) -> bytes | None:
        ver = self._versions.get(page_no)
        if ver is None:
            # Never written during the run: the kernel and Memory hold it unchanged already.
            raise KeyError(page_no)
        i = bisect.bisect_right(ver[0], k) - 1
        return ver[1][i] if i >= 0 else self._initial[page_no]

    def _move_to(self, k: int) -> None:
        vm = self._vm
        lo_k, hi_k = sorted((self._pos, k))
        fix = set(self._extra)
        if lo_k != hi_k:
            for page_no, (idxs, _) in self._versions.items():
                i = bisect.bisect_right(idxs, lo_k)
                if i < len(idxs) and idxs[i] <= hi_k:
                    fix.add(page_no)
        mem = vm.memory
        for page_no in fix:
            data = self._page_at(page_no, k)
            vm.write_page(page_no, data)
            if data is None:
                mem.pages.pop(page_no, None)
            else:
                page = mem.pages.get(page_no)
                if page is None:
                    mem.pages[page_no] = bytearray(data)
                else:
                    page[:] = data
            mem.mark_dirty(page_no)
        vm.set_scalars_tuple(self._ck_scalars[k])
        vm.st[K.ST_OUT1] = 0
        vm.st[K.ST_OUT2] = 0
        n1, n2, d1, d2 = self._ck_out[k]
        vm.stdout = None if self.stdout is None else CapturedOutput(self.stdout[:n1], d1)
        vm.stderr = None if self.stderr is None else CapturedOutput(self.stderr[:n2], d2)
        vm.dirty[list(self._extra)] = 0
        self._pos = k
        self._extra = set()

    def state_at(self, n: int, copy: bool = True) -> VMState:
        """Return the state after step ``n`` (``start_step <= n``).

        For ``n`` beyond ``final_step``: if the program exited, the final state (the VM no longer
        changes); otherwise :class:`StepRangeError`.  With ``copy=False`` the returned state shares
        the Trace's working ``Memory``: it is only valid until the next ``state_at`` call and must not
        be mutated (no reference ``step`` on it); ``copy=True`` returns an independent copy.
        """
        if n < self.start_step:
            raise StepRangeError(f"step {n} is before the trace start {self.start_step}")
        if n > self.final_step:
            if not self.exited:
                raise StepRangeError(
                    f"step {n} is beyond the {self.final_step} steps traced: trace with a larger max_steps"
                )
            n = self.final_step
        k = bisect.bisect_right(self._ck_steps, n) - 1
        vm = self._vm
        if k != self._pos or vm.step > n:
            self._move_to(k)
        if vm.step < n:
            vm.run(n)
            # Pages written since checkpoint ``_pos`` (DIRTY_CKPT bits accumulate until _move_to).
            self._extra = set(np.flatnonzero(vm.dirty).tolist())
        state = vm.to_state()
        return state.copy() if copy else state

    def memory_bytes(self) -> int:
        """Approximate bytes held by the checkpoint page copies."""
        return sum(
            sum(len(c) for c in contents if c is not None) for _, contents in self._versions.values()
        ) + sum(len(c) for c in self._initial.values() if c is not None)
