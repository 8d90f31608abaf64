"""System-call rules shared by every executor (vm-spec §5), beside `contracts/vm/lib/MIPSSyscalls.sol`.

Each rule here is plain integer arithmetic so that the reference VM (`opml.vm.step`), the fast
executor's Python fallbacks (`opml.vm.fast`) and its numba kernel (`opml.vm.fast_core`, which compiles
the same function) all use this one definition.
"""

from __future__ import annotations

from opml.vm.constants import LEAF_SIZE, PREIMAGE_PART_SIZE


def preimage_read_count(offset: int, buf: int, count: int, length: int) -> int:
    """Bytes one ``preimage_read(offset, buf, count)`` copies from a preimage of ``length`` bytes
    (vm-spec §5.5; ``MIPSSyscalls.handlePreimageRead``): at most ``count``, never past the part that
    holds ``offset``, the leaf that holds ``buf``, or the end of the data (0 when ``offset ≥ length``)."""
    if offset >= length:
        return 0
    return min(
        count, PREIMAGE_PART_SIZE - offset % PREIMAGE_PART_SIZE, LEAF_SIZE - buf % LEAF_SIZE, length - offset
    )
