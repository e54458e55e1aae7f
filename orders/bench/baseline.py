"""The textbook design `orders bench` compares against: one consumer that processes each order inline.

It polls a record, decodes it, records it in the aggregate, and on a transient failure sleeps in its
poll loop before retrying the same order, on the product's schedule (``RETRY_BACKOFF_BASE`` x 2^n:
2, 4, 8 s), then gives up. Every retry blocks the whole partition, which is what the pipeline's Celery
hand-off avoids. It runs until it has done a fixed number of orders, with a seeded injector, so two
runs over the same orders meet the same failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, Message

from orders.core.codec import OrderCodec
from orders.core.errors import TransientError
from orders.core.order import order_from_record
from worker.aggregate import AggregateWriter
from worker.faults import FailureInjector

log = logging.getLogger(__name__)
FIRST_RECORD_TIMEOUT = 60.0


@dataclass(frozen=True)
class BaselineResult:
    done: int
    gave_up: int
    seconds: float
    failed_attempts: int = 0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


class TimeUp(Exception):
    """The time limit ran out while an order waited out its backoff; that order is not counted."""


class BlockingConsumer:
    """Poll, process inline, back off in the loop: the common single-consumer design."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        codec: OrderCodec,
        aggregate: AggregateWriter,
        injector: FailureInjector,
        backoff: tuple[float, ...] = (2, 4, 8),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._codec = codec
        self._aggregate = aggregate
        self._injector = injector
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._deadline = 0.0
        self._failed_attempts = 0

    def run(self, limit: int, max_seconds: float) -> BaselineResult:
        """Process until ``limit`` orders are done (or ``max_seconds`` pass), from the first record.

        The clock starts at the first record, so joining the group is not counted against it.
        Raises TimeoutError if no record arrives within a minute.
        """
        self._consumer.subscribe([self._topic])
        message: Message | None = self._first_record()
        started = self._clock()
        self._deadline = started + max_seconds
        done = gave_up = 0
        try:
            while done < limit and self._clock() < self._deadline:
                if message is not None and message.error() is None:
                    if not self._process(message):
                        gave_up += 1
                    done += 1
                    self._consumer.store_offsets(message)
                if done < limit:
                    message = self._consumer.poll(0.5)
        except TimeUp:
            pass
        elapsed = min(self._clock(), self._deadline) - started
        return BaselineResult(done, gave_up, elapsed, self._failed_attempts)

    def _first_record(self) -> Message:
        waiting_since = self._clock()
        while self._clock() - waiting_since < FIRST_RECORD_TIMEOUT:
            message = self._consumer.poll(0.5)
            if message is not None and message.error() is None:
                return message
        raise TimeoutError("the baseline consumer received no record within a minute")

    def _process(self, message: Message) -> bool:
        """Record the order, sleeping the n-th backoff after the n-th failure; False when it gave up."""
        order = order_from_record(self._codec.decode(message.value()))
        for attempt in range(len(self._backoff) + 1):
            try:
                self._injector.check(order.order_id, attempt)
            except TransientError:
                self._failed_attempts += 1
                if attempt == len(self._backoff):
                    log.warning("giving up on order %s after %d attempts", order.order_id, attempt + 1)
                    self._aggregate.count_event("dlq")
                    return False
                self._back_off(self._backoff[attempt])
                continue
            self._aggregate.record_order(order.order_id, order.product, order.price_cents)
            return True
        return False

    def _back_off(self, seconds: float) -> None:
        """Sleep in the poll loop, as the textbook does; raise TimeUp if the time limit ends first."""
        remaining = self._deadline - self._clock()
        if seconds >= remaining:
            self._sleep(max(remaining, 0.0))
            raise TimeUp
        self._sleep(seconds)
