"""Phase-2 traces shared between disputes (docs/protocol.md §4.3).

A program's run is fixed by the program and its local values (the model commitment, ``k``, ``S_{k−1}``
and the claimed ``S_k``, or the input key and ``S_{N−1}``): the dispute's oracle context only names
where the contract stores them. Disputes with equal local values therefore share one trace: a liar's
sock disputes on one node cost one run, however many there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TraceKey = tuple[Any, ...]
"""``(program state hash, sorted local values)``."""


def trace_key(program_hash: bytes, local_values: dict[int, bytes]) -> TraceKey:
    return bytes(program_hash), tuple(sorted((i, bytes(v)) for i, v in local_values.items()))


class TraceCache:
    """A map from :func:`trace_key` to a trace, with the disputes that use each entry. An entry lives
    exactly while a dispute uses it: computed once for all of them, freed when the last is over, never
    evicted before (a live dispute's trace would be recomputed every poll). Memory is bounded by the
    disputes the agent plays."""

    def __init__(self) -> None:
        self.computed = 0
        """Traces computed since creation (a test counts them)."""
        self._traces: dict[TraceKey, Any] = {}
        self._users: dict[TraceKey, set[int]] = {}

    def get(self, key: TraceKey, dispute_id: int, compute: Callable[[], Any]) -> Any:
        """The trace for ``key``, computed by ``compute()`` unless held; ``dispute_id`` now uses it."""
        if key not in self._traces:
            self._traces[key] = compute()
            self.computed += 1
        self._users.setdefault(key, set()).add(dispute_id)
        return self._traces[key]

    def release(self, dispute_id: int) -> None:
        """``dispute_id`` is over: entries no other dispute uses are dropped."""
        for key in [k for k, users in self._users.items() if dispute_id in users]:
            self._users[key].discard(dispute_id)
            if not self._users[key]:
                del self._users[key]
                self._traces.pop(key, None)

    def of(self, dispute_id: int) -> Any:
        """The trace ``dispute_id`` uses (``KeyError`` if none is held for it)."""
        for key, users in self._users.items():
            if dispute_id in users:
                return self._traces[key]
        raise KeyError(f"no trace held for dispute {dispute_id}")

    def __len__(self) -> int:
        return len(self._traces)
