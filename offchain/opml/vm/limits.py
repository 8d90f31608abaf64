"""What a guest may make an off-chain run spend (vm-spec §10): the on-chain step has no such limits
and is unchanged by them; they only keep an honest replayer (an agent, `opml vm run`) from being
starved by a hostile program.

- **Captured output.** A ``write`` to fd 1 or 2 is O(1) on-chain whatever its ``count``, but copying
  ``count`` bytes off-chain is not. Each stream keeps at most :data:`MAX_CAPTURED_OUTPUT` bytes in its
  buffer; the rest is counted (``CapturedOutput.dropped``) and never read from guest memory. The state
  transition (``$v0 = count``, ``$a3 = 0``) is the same either way.
- **Memory.** A run may touch at most ``Memory.max_pages`` / ``FastVM.max_pages`` 4 KiB pages
  (default :data:`MAX_MEMORY_PAGES`, 1 GiB); the write that would allocate one more raises
  :class:`~opml.vm.errors.MemoryLimitError`.
- **Steps** are bounded by the caller (``until_step``, ``max_steps``): every runner takes one.
"""

from __future__ import annotations

from collections.abc import Callable

from opml.vm.constants import PAGE_SIZE
from opml.vm.errors import MemoryLimitError

MAX_CAPTURED_OUTPUT = 1 << 20
"""Bytes of guest output kept per stream and buffer; the rest is counted, not kept."""

MAX_MEMORY_PAGES = 1 << 18
"""4 KiB pages a run may touch (1 GiB): far above the ML programs' peak (kilobytes to megabytes)."""


class CapturedOutput(bytearray):
    """A stream's captured bytes (at most :data:`MAX_CAPTURED_OUTPUT`) and how many were dropped."""

    def __init__(self, data: bytes | bytearray = b"", dropped: int = 0) -> None:
        super().__init__(data)
        self.dropped = dropped

    def copy(self) -> CapturedOutput:
        return CapturedOutput(self, self.dropped)


def capture(sink: bytearray, read: Callable[[int, int], bytes], addr: int, count: int) -> None:
    """Append a ``write`` of ``count`` bytes at ``addr`` to ``sink``: only what fits under the cap is
    read (``read(addr, n)``); the rest is counted on a :class:`CapturedOutput`."""
    keep = min(count, max(0, MAX_CAPTURED_OUTPUT - len(sink)))
    if keep:
        sink += read(addr, keep)
    if keep < count and isinstance(sink, CapturedOutput):
        sink.dropped += count - keep


def copy_output(sink: bytearray | None) -> CapturedOutput | None:
    """An independent copy of a stream (``None`` stays ``None``: output discarded)."""
    if sink is None:
        return None
    return CapturedOutput(sink, getattr(sink, "dropped", 0))


def memory_limit_error(max_pages: int) -> MemoryLimitError:
    """The error of a run that would touch page ``max_pages + 1``."""
    return MemoryLimitError(
        f"the guest touched more than {max_pages} pages ({max_pages * PAGE_SIZE >> 20} MiB) of memory: the "
        "off-chain limit against hostile programs (vm-spec §10)"
    )
