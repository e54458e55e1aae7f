"""The Celery queue's depth for backpressure, read from the broker only when the answer can matter."""

from __future__ import annotations

import time
from collections.abc import Callable

from orders.core.queue_depth import QueueDepthReader

# Longest an estimate is trusted; other bridges' pushes and worker retries show up by then.
MAX_AGE_SECONDS = 0.1


class DepthEstimate:
    """The last reading of the queue's length plus what this bridge pushed since.

    Reading it (LLEN on Redis, a passive queue.declare on RabbitMQ) is a round trip. At moderate
    rates the bridge hands off batches of one or two orders, and the reading was a third of its
    round trips (paced runs, Redis commandstats). Workers only shrink the queue, so for a lone
    bridge the estimate is never below the truth and the bound holds as before. Others' pushes
    (more bridges, retries) count from the next reading, which comes after ``max_age`` seconds,
    once this bridge has pushed half the room the last reading left, and every time while paused:
    resuming needs the real figure.
    """

    def __init__(
        self,
        reader: QueueDepthReader,
        bound: int,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._bound = bound
        self._max_age = max_age
        self._clock = clock
        self._reading = 0
        self._read_at: float | None = None
        self._pushed = 0

    def current(self, paused: bool = False) -> int:
        """The depth to decide on; reads the broker when the estimate will not do.

        Raises :class:`~orders.core.queue_depth.QueueDepthUnavailable` when that reading fails.
        """
        if paused or self._stale():
            self._reading = self._reader.depth()
            self._read_at = self._clock()
            self._pushed = 0
        return self._reading + self._pushed

    def pushed(self, n: int) -> None:
        """This bridge put ``n`` more orders on the queue."""
        self._pushed += n

    def _stale(self) -> bool:
        if self._read_at is None or self._clock() - self._read_at >= self._max_age:
            return True
        room_at_reading = self._bound - self._reading
        return self._pushed * 2 >= room_at_reading
