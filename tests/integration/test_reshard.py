"""`orders reshard N` on a real redis-server: markers and claims follow their orders with their TTLs, the
figures stay exact, and the writers of the new layout go on deduplicating the old orders."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis

from orders.core.aggregate import Aggregate, cents_to_money
from orders.core.shards import LAYOUT_KEY, Layout, ensure_layout, read_layout
from orders.reshard import counters_moving, reshard_aggregate
from worker.aggregate import AggregateWriter, ClaimedForDeadLetter

TTL = 3600


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def fill(writer: AggregateWriter, prefix: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = [f"{prefix}-{i}" for i in range(count)]
    for order_id in ids:
        writer.record_order(order_id, rng.choice("abcd"), rng.randint(1, 10**7))
    writer.count_events({"consumed": count})
    return ids


def test_one_shard_to_three_and_back_keeps_every_figure_and_marker(client: redis.Redis) -> None:
    old = AggregateWriter(client, TTL)  # today's layout, as an upgrade finds it
    ids = fill(old, "u", 300, seed=1)
    claimed = [f"dead-{i}" for i in range(12)]
    for order_id in claimed:
        old.claim_dead_letter(order_id, "PermanentError", "injected")
    client.expire(Layout(1).home.seen(ids[0]), 500)  # a marker near its end keeps its TTL
    before = Aggregate(client).snapshot()

    moved = reshard_aggregate(client, 3)
    assert moved.exact and moved.snapshot_after == before
    three = Layout(3)
    leaving = sum(1 for i in ids if three.shard_of(i) != 0)
    assert moved.markers == [leaving, 300] and moved.claims[1] == 12
    assert read_layout(client) == three and [client.get(k.stamp) for k in three.all()] == [b"3"] * 3
    assert 400 < client.ttl(three.of_order(ids[0]).seen(ids[0])) <= 500
    assert all(client.exists(three.of_order(i).seen(i)) for i in ids)
    assert not any(client.exists(Layout(1).home.seen(i)) for i in ids if three.shard_of(i) != 0)

    new = AggregateWriter(client, TTL, layout=ensure_layout(client, 3))
    assert new.record_orders([(i, "a", 1) for i in ids]) == [False] * 300  # still deduplicated
    for order_id in claimed:
        with pytest.raises(ClaimedForDeadLetter):
            new.record_order(order_id, "a", 1)
    assert new.record_order("fresh-1", "a", 5) is True
    after_new = Aggregate(client).snapshot()
    assert after_new.count == before.count + 1 and after_new.sum == before.sum + cents_to_money(5)
    assert after_new.last100_size == 100  # the newest order joined the window, the oldest left

    back = reshard_aggregate(client, 1)
    assert back.exact and back.snapshot_after == after_new
    assert not client.exists(LAYOUT_KEY) and read_layout(client) == Layout(1)
    assert (
        AggregateWriter(client, TTL).record_orders([(i, "a", 1) for i in [*ids, "fresh-1"]]) == [False] * 301
    )


def test_three_shards_to_two_merges_the_windows_by_time(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL, layout=ensure_layout(client, 3))
    ids = fill(writer, "m", 250, seed=2)
    before = Aggregate(client).snapshot()
    moved = reshard_aggregate(client, 2)
    assert moved.exact, list(moved.lines())
    assert all(client.exists(Layout(2).of_order(i).seen(i)) for i in ids)
    assert not [k for k in client.keys("{orders.*of3*") if not k.endswith(b":layout")]  # old shards empty
    assert not any(client.exists(k.stamp) for k in Layout(3).all()[1:])  # stale writers refused
    assert Aggregate(client).snapshot() == before


def test_the_guard_sees_a_running_pipeline(client: redis.Redis) -> None:
    aggregate = Aggregate(client)
    assert not counters_moving(client, 0.2)
    stop = threading.Event()

    def bridge() -> None:
        while not stop.wait(0.02):
            aggregate.count_event("consumed")

    thread = threading.Thread(target=bridge)
    thread.start()
    try:
        assert counters_moving(client, 0.3)
    finally:
        stop.set()
        thread.join()


def test_the_command_says_what_it_did(redis_url: str, client: redis.Redis) -> None:
    fill(AggregateWriter(client, TTL), "c", 40, seed=3)
    run = subprocess.run(
        [sys.executable, "-m", "orders.cli", "reshard", "4", "--yes"],
        env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "shards: 1 -> 4" in run.stdout and "dedupe markers moved:" in run.stdout
    before, after = [line for line in run.stdout.splitlines() if line.startswith("totals ")]
    assert before.removeprefix("totals before") == after.removeprefix("totals after")
    assert "AGGREGATE_SHARDS=4" in run.stdout and read_layout(client) == Layout(4)
