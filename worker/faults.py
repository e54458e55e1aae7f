"""The failure injector for demos and tests: fails attempts at configured rates, reproducibly if seeded."""

from __future__ import annotations

import random
from dataclasses import dataclass

from orders.core.errors import PermanentError, TransientError


@dataclass(frozen=True)
class FailureInjector:
    """Decides per (order, attempt) whether to fail.

    With a seed the decision is a pure function of (seed, orderId, attempt), so a run is reproducible
    whichever worker process picks an order up and in whatever order; without one it is random.
    """

    transient_rate: float = 0.0
    permanent_rate: float = 0.0
    seed: int | None = None

    def check(self, order_id: str, attempt: int) -> None:
        """Raise :class:`PermanentError` or :class:`TransientError` if this attempt is chosen to fail."""
        if not (self.transient_rate or self.permanent_rate):
            return
        if self._draw(order_id, 0, "permanent") < self.permanent_rate:
            raise PermanentError(f"injected permanent failure (rate {self.permanent_rate:g})")
        if self._draw(order_id, attempt, "transient") < self.transient_rate:
            raise TransientError(f"injected transient failure (rate {self.transient_rate:g})")

    def _draw(self, order_id: str, attempt: int, kind: str) -> float:
        if self.seed is None:
            return random.random()
        return random.Random(f"{self.seed}:{kind}:{order_id}:{attempt}").random()
