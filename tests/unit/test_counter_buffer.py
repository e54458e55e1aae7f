"""The bridge's counters are added up and written a few times a second, or at once when idle."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import redis

from bridge.counters import CounterBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[dict[str, int]] = []
        self.fail = fail

    def write(self, counts: Mapping[str, int]) -> None:
        if self.fail:
            raise redis.ConnectionError("Redis is restarting")
        self.writes.append(dict(counts))


def test_first_counts_are_written_at_once_later_ones_per_interval() -> None:
    store, clock = Store(), Clock()
    buffer = CounterBuffer(store.write, interval=0.25, clock=clock)

    buffer.add("consumed", 3)
    buffer.flush()
    buffer.add("consumed", 2)
    buffer.add("dlq", 1)
    buffer.flush()  # too soon after the first write
    assert store.writes == [{"consumed": 3}]

    clock.now += 0.25
    buffer.add("consumed", 4)
    buffer.flush()
    assert store.writes == [{"consumed": 3}, {"consumed": 6, "dlq": 1}]


def test_forced_flush_writes_what_is_pending_and_nothing_else() -> None:
    store, clock = Store(), Clock()
    buffer = CounterBuffer(store.write, interval=0.25, clock=clock)
    buffer.add("consumed", 1)
    buffer.flush()
    buffer.add("consumed", 1)
    buffer.add("dlq", 0)  # zero adds nothing

    buffer.flush(force=True)
    buffer.flush(force=True)  # nothing pending: no write
    assert store.writes == [{"consumed": 1}, {"consumed": 1}]


def test_a_redis_error_is_logged_and_the_counts_dropped(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(fail=True)
    buffer = CounterBuffer(store.write, interval=0.25, clock=Clock())
    buffer.add("consumed", 5)

    buffer.flush(force=True)  # does not raise: the counters are figures

    assert "could not count" in caplog.text and "Redis is restarting" in caplog.text
    store.fail = False
    buffer.flush(force=True)
    assert store.writes == []
