"""Admission by cost: per-process caps on the work in flight, refused at once with 429 and Retry-After.

Two budgets per process: bytes of request bodies being read or held (memory), and images between admission and
their result (decode, queue and inference CPU). A request takes what it needs as it arrives and gives it all back
when its response is ready; what does not fit is refused instead of queued, the way TEI's
``max_concurrent_requests`` answers "Model is overloaded". A request bigger than a whole budget is still admitted
when nothing else is in flight, so a budget below the per-request limits cannot lock a request out for good.
Budgets are used from the event loop only (HTTP and gRPC handlers), so they need no lock.
"""

from __future__ import annotations

from .errors import GatewayError

RETRY_AFTER_S = 1.0  # work in flight clears within about a batch time; clients back off from there


class Budget:
    """A count of one resource in flight (bytes, images) with a cap; ``gauge`` mirrors it for /metrics."""

    def __init__(self, resource: str, limit: int, gauge=None) -> None:
        self.resource = resource
        self.limit = max(1, int(limit))
        self.in_use = 0
        self.gauge = gauge

    def take(self, amount: int, own: int = 0) -> None:
        """Reserve ``amount`` more for a request already holding ``own``, or raise 429 ``overloaded`` (nothing
        reserved). Over the limit is allowed only when no other request holds any."""
        if amount <= 0:
            return
        if self.in_use > own and self.in_use + amount > self.limit:
            raise GatewayError(
                429,
                "overloaded",
                f"the gateway has {self.in_use} {self.resource} in flight; this request needs {amount} more and the "
                f"limit is {self.limit} per process; retry later",
                retry_after=RETRY_AFTER_S,
            )
        self.in_use += amount
        self._show()

    def give(self, amount: int) -> None:
        self.in_use = max(0, self.in_use - amount)
        self._show()

    def _show(self) -> None:
        if self.gauge is not None:
            self.gauge.set(self.in_use)


class Lease:
    """What one request holds; ``release`` gives it all back (idempotent)."""

    def __init__(self) -> None:
        self._held: dict[Budget, int] = {}

    def take(self, budget: Budget, amount: int) -> None:
        held = self._held.get(budget, 0)
        budget.take(amount, own=held)
        self._held[budget] = held + max(0, amount)

    def release(self) -> None:
        held, self._held = self._held, {}
        for budget, amount in held.items():
            budget.give(amount)
