"""The agent's pure parts: the money and back-off policy, the shared trace cache and the solver's
timeout rule (docs/protocol.md §4.5, §5)."""

from __future__ import annotations

from opml.game.policy import MAX_DISPUTE_GAS, AgentPolicy
from opml.game.solver import DisputeView, Party, Phase, Timeout, next_move, timeout_move
from opml.game.trace_cache import TraceCache, trace_key


def test_a_bond_keeps_the_gas_of_every_open_dispute_and_one_more_covered():
    policy = AgentPolicy()
    gas_price = 10**9
    reserve = gas_price * MAX_DISPUTE_GAS * 3  # two open disputes and the one a new bond may bring
    assert policy.gas_reserve(gas_price, 2) == reserve
    assert policy.can_bond(100 + 7 + reserve, 100, 7, gas_price, 2)
    assert not policy.can_bond(100 + 7 + reserve - 1, 100, 7, gas_price, 2)


def test_back_off_doubles_up_to_its_cap():
    policy = AgentPolicy(retry_seconds=2.0, max_retry_seconds=30.0)
    assert [policy.retry_delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_disputes_with_equal_local_values_share_one_trace_until_the_last_is_over():
    cache = TraceCache()
    key = trace_key(b"p" * 32, {4: b"claim", 1: b"model"})
    assert key == trace_key(b"p" * 32, {1: b"model", 4: b"claim"})
    traces = [cache.get(key, dispute, lambda: object()) for dispute in range(4)]
    assert cache.computed == 1 and all(t is traces[0] for t in traces)
    assert cache.of(2) is traces[0]
    for dispute in range(3):
        cache.release(dispute)
        assert len(cache) == 1
    cache.release(3)
    assert len(cache) == 0


def test_a_trace_in_use_is_never_evicted():
    cache = TraceCache()
    keys = [trace_key(bytes([i]) * 32, {}) for i in range(9)]
    for _ in range(3):  # nine live disputes on nine nodes, polled three times: nine traces, not 27
        for dispute, key in enumerate(keys):
            cache.get(key, dispute, object)
    assert cache.computed == 9 and len(cache) == 9
    for dispute in range(9):
        cache.release(dispute)
    assert len(cache) == 0


def _view(turn: Party, deadline: int, phase: Phase = Phase.GRAPH) -> DisputeView:
    zero = bytes(32)
    return DisputeView(
        0, 0, "0x0", phase, turn, Party.NONE, deadline, 0, 4, 0, zero, zero, Party.SERVER, zero, zero
    )


def test_timeout_only_after_the_deadline_and_only_against_the_other_side():
    assert timeout_move(_view(Party.SERVER, 100), Party.CHALLENGER, 100) is None  # at the deadline: not yet
    assert timeout_move(_view(Party.SERVER, 100), Party.CHALLENGER, 101) == Timeout()
    assert timeout_move(_view(Party.SERVER, 100), Party.SERVER, 101) is None  # our own missed move
    assert timeout_move(_view(Party.SERVER, 100, Phase.RESOLVED), Party.CHALLENGER, 101) is None


def test_the_server_defends_a_new_dispute_and_the_challenger_waits():
    view = _view(Party.SERVER, 100, Phase.DEFENSE)
    assert next_move(view, Party.SERVER, None, 50).__class__.__name__ == "Defend"  # type: ignore[arg-type]
    assert next_move(view, Party.CHALLENGER, None, 50) is None  # type: ignore[arg-type]
