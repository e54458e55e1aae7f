"""The group commit's batch write (AggregateWriter.record_orders) on a real redis-server: exact, deduped,
one order's trouble kept to that order, a refused batch or a short WAIT raised for the whole batch."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from orders.core.aggregate import seen_key
from orders.core.redis_client import ReplicasBehind, Unwritable
from worker.aggregate import AggregateWriter, ClaimedForDeadLetter

TTL = 3600


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def test_a_batch_counts_each_order_once_and_the_average_is_exact(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL)
    client.script_flush()  # the first batch meets NOSCRIPT: loaded once, sent again
    first = writer.record_orders([("a", "p", 101), ("b", "p", 202), ("a", "p", 101)])
    second = writer.record_orders([("b", "p", 202), ("c", "q", 304)])
    assert first == [True, True, False] and second == [False, True]
    snapshot = writer.snapshot()
    assert snapshot.count == 3 and snapshot.average == Decimal("2.0233")


def test_one_orders_trouble_stays_with_that_order(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL)
    writer.claim_dead_letter("claimed", "PermanentError", "injected")
    results = writer.record_orders([("ok", "p", 100), ("claimed", "p", 100), ("bad", "p", 2**70)])
    assert results[0] is True
    assert isinstance(results[1], ClaimedForDeadLetter) and isinstance(results[2], ValueError)
    assert writer.snapshot().count == 1 and not client.exists(seen_key("claimed"))


def test_a_refused_batch_raises_and_writes_nothing(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL)
    client.config_set("min-replicas-to-write", 1)  # no replica: NOREPLICAS
    try:
        with pytest.raises(Unwritable):
            writer.record_orders([("a", "p", 100), ("b", "p", 100)])
    finally:
        client.config_set("min-replicas-to-write", 0)
    assert writer.snapshot().count == 0


def test_a_short_wait_raises_for_the_whole_batch(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL, replicas=1, wait_timeout=0.05)
    with pytest.raises(ReplicasBehind):
        writer.record_orders([("a", "p", 100), ("b", "p", 100)])
    # Written but not acknowledged: the redelivered copies find them counted.
    assert AggregateWriter(client, TTL).record_orders([("a", "p", 100), ("b", "p", 100)]) == [False, False]
