"""The bridge's pipeline counters, written to Redis a few times a second instead of once per batch."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

from orders.core.aggregate import Event
from orders.core.redis_client import REDIS_ERRORS

log = logging.getLogger(__name__)

# Longest a count waits before it is written; the dashboard samples once a second.
FLUSH_INTERVAL_SECONDS = 0.25


class CounterBuffer:
    """Adds up consumed and dead-lettered records; writes them at most every ``interval`` seconds.

    Writing after every batch cost a round trip per batch, and at moderate rates batches hold one
    or two orders. These counters are figures, not guarantees: a bridge killed with counts unwritten
    loses at most ``interval`` seconds of them, and a Redis error is logged and the counts dropped,
    as before (the aggregate's own count of orders is exact either way).
    """

    def __init__(
        self,
        write: Callable[[Mapping[Event, int]], None],
        interval: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._pending: Counter[Event] = Counter()
        self._written_at: float | None = None

    def add(self, event: Event, n: int) -> None:
        if n:
            self._pending[event] += n

    def flush(self, force: bool = False) -> None:
        """Write what is pending if ``force``d or the last write is ``interval`` seconds old."""
        if not self._pending:
            return
        now = self._clock()
        if not force and self._written_at is not None and now - self._written_at < self._interval:
            return
        counts, self._pending = dict(self._pending), Counter()
        self._written_at = now
        try:
            self._write(counts)
        except REDIS_ERRORS as exc:
            log.warning("could not count %s: %s", counts, exc)
