"""The failure injector for demos and tests: fails attempts at configured rates, reproducibly if seeded.

A demo feature, off unless the worker starts with ``FAILURE_INJECTION=true``: a production worker never
fails an order on purpose, whatever ``FAILURE_RATE``, ``PERMANENT_FAILURE_RATE`` or the dashboard's
runtime override (a value in Redis anyone with Redis access could write) say.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from orders.core.errors import PermanentError, TransientError
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


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


NEVER_FAILS = FailureInjector()


def configured_injector(settings: WorkerSettings) -> FailureInjector:
    """The worker's injector: its FAILURE_* rates with injection enabled, one that never fails without."""
    if not settings.failure_injection:
        return NEVER_FAILS
    return FailureInjector(settings.failure_rate, settings.permanent_failure_rate, settings.failure_seed)


def with_override(
    injector: FailureInjector, settings: WorkerSettings, read_override: Callable[[], float | None]
) -> FailureInjector:
    """``injector`` with the transient rate a dashboard set in Redis; Redis is not even read when off."""
    if not settings.failure_injection:
        return injector
    rate = read_override()
    return injector if rate is None else dataclasses.replace(injector, transient_rate=rate)


def announce(settings: WorkerSettings) -> None:
    """One line at start-up: whether this worker fails orders on purpose, and what it ignores if not."""
    if settings.failure_injection:
        log.warning(
            "failure injection ON (a demo feature): transient rate %g, permanent rate %g, seed %s; "
            "the dashboard may override the transient rate",
            settings.failure_rate, settings.permanent_failure_rate, settings.failure_seed,
        )  # fmt: skip
        return
    configured = settings.failure_rate or settings.permanent_failure_rate
    log.log(
        logging.WARNING if configured else logging.INFO,
        "failure injection off: FAILURE_RATE (%g), PERMANENT_FAILURE_RATE (%g) and the dashboard's override "
        "are ignored; FAILURE_INJECTION=true turns the demo injector on",
        settings.failure_rate, settings.permanent_failure_rate,
    )  # fmt: skip
