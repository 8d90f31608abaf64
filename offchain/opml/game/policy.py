"""What an agent may stake and when it answers (docs/protocol.md §5): the money and cost policy.

An agent bonds only what it can afford while keeping, for every dispute it already plays and the one a
new bond may bring, the gas of a maximal dispute and (a server) the stake of its side. Nothing here
reads the chain: the agent passes in what it read.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DISPUTE_GAS = 7_000_000
"""Gas one party spends on a maximal dispute, from protocol §5's budgets: ``(rounds + 2) · G_move`` with
``rounds ≤ 12 + 48`` and ``G_move ≤ 80 000`` (4.96 M), plus ``G_claimExecution``, ``G_locals``, ``G_step``,
five oracle reveals and ``G_challenge + G_claimShare`` or ``G_defend`` (≈ 6.85 M), rounded up."""
ANSWER_GAS = 400_000
"""Gas a server spends on an answer that finalizes: submitResult, revealOutput, finalize and withdraw
(about 240 000, protocol §6), rounded up."""


@dataclass(frozen=True)
class AgentPolicy:
    """An agent's limits.

    ``min_reward``: tasks paying less, or less than the gas of answering, are not answered (server).
    ``max_open_results``: results of this server not yet settled, beyond which it answers nothing new.
    ``log_page_blocks``: the most blocks one log query of discovery spans. ``deadline_margin``: seconds
    before a deadline by which a move should be sent (a move decided later may land after it; it is
    still tried, and logged).
    ``retry_seconds``/``max_retry_seconds``: the back-off of an item (task or dispute) whose handling
    failed, doubled per consecutive failure.
    """

    min_reward: int = 1
    max_open_results: int = 16
    log_page_blocks: int = 2_000
    deadline_margin: int = 12
    retry_seconds: float = 2.0
    max_retry_seconds: float = 300.0

    def gas_reserve(self, gas_price: int, open_disputes: int) -> int:
        """Wei kept back for the moves of ``open_disputes`` disputes plus one more."""
        return gas_price * MAX_DISPUTE_GAS * (open_disputes + 1)

    def can_bond(self, balance: int, bond: int, stake: int, gas_price: int, open_disputes: int) -> bool:
        """Whether ``bond`` (and ``stake``, what a dispute on it would need from us) can be posted while
        the gas of every open dispute and of one more stays covered."""
        return balance >= bond + stake + self.gas_reserve(gas_price, open_disputes)

    def worth_answering(self, reward: int, gas_price: int) -> bool:
        """Whether a task's reward pays at least ``min_reward`` and the gas of answering it."""
        return reward >= max(self.min_reward, gas_price * ANSWER_GAS)

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure of one item."""
        return float(min(self.max_retry_seconds, self.retry_seconds * 2 ** max(0, failures - 1)))
