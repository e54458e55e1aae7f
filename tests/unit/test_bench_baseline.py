"""The bench's blocking baseline without services: backoff in the poll loop, give-up, the fixed time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from orders.bench.baseline import BlockingConsumer
from orders.core.errors import TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Record:
    order_id: str
    offset: int

    def value(self) -> bytes:
        return self.order_id.encode()

    def error(self) -> None:
        return None


@dataclass
class Consumer:
    """Hands out records one poll at a time; each poll costs ``poll_cost`` s of the fake clock."""

    records: list[Record]
    clock: Clock
    poll_cost: float = 0.001
    stored: list[int] = field(default_factory=list)

    def subscribe(self, topics: list[str]) -> None:
        assert topics == ["orders"]

    def poll(self, timeout: float) -> Record | None:
        self.clock.now += self.poll_cost
        return self.records.pop(0) if self.records else None

    def store_offsets(self, message: Record) -> None:
        self.stored.append(message.offset)


class Codec:
    def decode(self, value: bytes) -> dict[str, object]:
        return {"orderId": value.decode(), "product": "Laptop", "price": 19.99}


@dataclass
class Aggregate:
    counted: list[str] = field(default_factory=list)
    dlq: int = 0

    def record_order(self, order_id: str, product: str, price_cents: int) -> bool:
        assert (product, price_cents) == ("Laptop", 1999)
        self.counted.append(order_id)
        return True

    def count_event(self, name: str) -> None:
        assert name == "dlq"
        self.dlq += 1


@dataclass
class Failures:
    """Fails the listed (orderId, attempt) pairs."""

    failing: set[tuple[str, int]]

    def check(self, order_id: str, attempt: int) -> None:
        if (order_id, attempt) in self.failing:
            raise TransientError("injected")


def baseline(
    ids: list[str], failing: set[tuple[str, int]]
) -> tuple[BlockingConsumer, Consumer, Aggregate, Clock]:
    clock = Clock()
    consumer = Consumer([Record(order_id, n) for n, order_id in enumerate(ids)], clock)
    aggregate = Aggregate()
    blocking = BlockingConsumer(
        consumer,
        "orders",
        Codec(),
        aggregate,
        Failures(failing),
        sleep=clock.sleep,
        clock=clock,  # type: ignore[arg-type]
    )
    return blocking, consumer, aggregate, clock


def test_failures_sleep_two_four_eight_seconds_in_the_loop_then_give_up() -> None:
    """The product's schedule (RETRY_BACKOFF_BASE=2): the comparison measures the design, not the backoff."""
    failing = {("a", 0), ("b", 0), ("b", 1), ("b", 2), ("b", 3)}
    blocking, consumer, aggregate, clock = baseline(["a", "b", "c"], failing)
    result = blocking.run(limit=3, max_seconds=600)
    assert clock.sleeps == [2, 2, 4, 8]  # a: once; b: 2, 4, 8 then gives up
    assert aggregate.counted == ["a", "c"] and aggregate.dlq == 1
    assert (result.done, result.gave_up, result.failed_attempts) == (3, 1, 5)
    assert consumer.stored == [0, 1, 2]  # offsets stored after each order, the retries included
    assert result.rate == pytest.approx(3 / result.seconds)
    # 16 s of backoff + two 1 ms polls after the first record; no poll once the limit is reached
    assert result.seconds == pytest.approx(16.002)


def test_the_time_limit_ends_in_the_middle_of_a_backoff() -> None:
    blocking, _, aggregate, clock = baseline(["a", "b", "c"], {("b", 0), ("b", 1)})
    result = blocking.run(limit=3, max_seconds=4.5)
    assert aggregate.counted == ["a"]  # b was still backing off when the time ran out
    assert result.done == 1
    assert result.seconds == pytest.approx(4.5)
    assert clock.sleeps == [2, pytest.approx(2.499)]  # slept until the deadline, not the full 4 s


def test_no_record_within_a_minute_is_an_error() -> None:
    blocking, consumer, _, clock = baseline([], set())
    consumer.poll_cost = 0.5  # an empty poll waits out its timeout
    with pytest.raises(TimeoutError, match="no record"):
        blocking.run(limit=1, max_seconds=5)
    assert clock.now == pytest.approx(160.0)
