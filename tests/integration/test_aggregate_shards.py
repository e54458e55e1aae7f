"""The sharded aggregate on a real redis-server: N = 3 logical shards on one server, read back exactly."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from orders.core.aggregate import Aggregate, clear_aggregate, seen_key
from orders.core.redis_client import ReplicasBehind
from orders.core.shards import LAYOUT_KEY, Layout, LayoutMismatch, StaleLayout, ensure_layout, read_layout
from worker.aggregate import AggregateWriter, ClaimedForDeadLetter

TTL = 3600
THREE = Layout(3)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def writer(client: redis.Redis) -> AggregateWriter:
    return AggregateWriter(client, TTL, layout=ensure_layout(client, 3))


def money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def mean(cents: list[int]) -> Decimal:
    return (Decimal(sum(cents)) / 100 / len(cents)).quantize(Decimal("0.0001"))


def test_every_figure_is_exact_across_three_shards(client: redis.Redis, writer: AggregateWriter) -> None:
    rng = random.Random(11)
    orders = [(f"o-{i}", rng.choice("abcdef"), rng.randint(-500, 10**9)) for i in range(600)]
    for order in orders:
        assert writer.record_order(*order) is True
    prices = [cents for _, _, cents in orders]
    snap = Aggregate(client).snapshot()  # a reader with no setting: it reads the layout
    assert (snap.count, snap.sum, snap.average) == (600, money(sum(prices)), mean(prices))
    assert (snap.min, snap.max) == (money(min(prices)), money(max(prices)))
    assert (snap.last100_size, snap.last100_sum, snap.last100_average) == (
        100, money(sum(prices[-100:])), mean(prices[-100:])
    )  # fmt: skip
    for name in "abcdef":
        mine = [cents for _, product, cents in orders if product == name]
        assert (snap.products[name].count, snap.products[name].sum) == (len(mine), money(sum(mine)))
    assert snap.counters["succeeded"] == 600
    per_shard = [int(client.hget(keys.totals, "count") or 0) for keys in THREE.all()]
    assert sum(per_shard) == 600 and min(per_shard) > 150  # every shard took its part
    elsewhere = [order_id for order_id, _, _ in orders[:30] if THREE.shard_of(order_id) > 0]
    assert elsewhere and all(client.exists(seen_key(order_id, THREE)) for order_id in elsewhere)
    assert not any(client.exists(seen_key(order_id)) for order_id in elsewhere)  # not in shard 0


def test_redelivered_orders_are_counted_once_whichever_path(writer: AggregateWriter) -> None:
    orders = [(f"d-{i}", "p", 100 + i) for i in range(30)]
    assert writer.record_orders(orders) == [True] * 30
    assert [writer.record_order(*o) for o in orders] == [False] * 30
    assert writer.record_orders(orders[::-1]) == [False] * 30
    snap = writer.snapshot()
    assert (snap.count, snap.sum) == (30, money(sum(100 + i for i in range(30))))


def test_a_batch_spanning_shards_keeps_each_orders_outcome(
    client: redis.Redis, writer: AggregateWriter
) -> None:
    ids = [f"b-{i}" for i in range(12)]
    assert {THREE.shard_of(i) for i in ids} == {0, 1, 2}
    writer.claim_dead_letter(ids[3], "PermanentError", "injected")
    batch = [(i, "p", 250) for i in ids] + [(ids[0], "p", 250), ("bad", "p", 2**70)]
    results = writer.record_orders(batch)
    assert results[:3] == [True] * 3 and results[4:12] == [True] * 8 and results[12] is False
    assert isinstance(results[3], ClaimedForDeadLetter) and isinstance(results[13], ValueError)
    assert writer.snapshot().count == 11
    assert client.hget(THREE.of_order(ids[3]).dead(ids[3]), "state") == b"claimed"


def test_claims_live_in_the_orders_shard_and_replay_releases_them(
    client: redis.Redis, writer: AggregateWriter
) -> None:
    ids = [f"c-{i}" for i in range(9)]
    for order_id in ids:
        assert writer.claim_dead_letter(order_id, "PermanentError", "boom").state == "claimed"
        writer.mark_dead_lettered(order_id)
        assert client.hget(THREE.of_order(order_id).dead(order_id), "state") == b"published"
    with pytest.raises(ClaimedForDeadLetter):
        writer.record_order(ids[0], "p", 1)
    Aggregate(client).release_dead_letter_claims(ids)
    assert writer.record_orders([(i, "p", 1) for i in ids]) == [True] * 9
    assert writer.claim_dead_letter(ids[1], "X", "late").state == "counted"


def test_counters_and_recent_activity_add_up_over_shards(
    client: redis.Redis, writer: AggregateWriter
) -> None:
    for i in range(6):
        writer.record_order(f"r-{i}", "p", 100)
        writer.note_status(f"x-{i}", "p", Decimal("1.00"), "retrying", "again", counts="retry_attempts")
    writer.count_events({"consumed": 12, "dlq": 1})
    assert client.hget(THREE.home.counters, "consumed") == b"12"  # the bridge's counts: home shard
    snap = Aggregate(client).snapshot()
    assert (snap.counters["consumed"], snap.counters["retry_attempts"], snap.counters["dlq"]) == (12, 6, 1)
    recent = Aggregate(client).recent(8)
    assert len(recent) == 8 and [e["at"] for e in recent] == sorted((e["at"] for e in recent), reverse=True)
    everything = Aggregate(client).recent(100)
    assert Counter(e["status"] for e in everything) == {"succeeded": 6, "retrying": 6}
    assert {THREE.shard_of(e["orderId"]) for e in everything} == {0, 1, 2}


def test_products_fold_per_shard_and_still_add_up(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL, max_products=2, layout=ensure_layout(client, 3))
    for i in range(90):
        writer.record_order(f"f-{i}", f"name-{i % 9}", 10 + i)
    snap = writer.snapshot()
    assert sum(p.count for p in snap.products.values()) == snap.count == 90
    assert sum((p.sum for p in snap.products.values()), Decimal(0)) == snap.sum
    assert "(other)" in snap.products and snap.counters["products_folded"] == snap.products["(other)"].count
    # At most MAX_PRODUCTS names apart in each shard: the readers show up to N x MAX_PRODUCTS.
    for keys in THREE.all():
        names = {n for n in client.hkeys(keys.product_counts) if n != b"(other)"}
        assert len(names) <= 2


def test_the_layout_is_stored_with_the_data_and_guarded(client: redis.Redis) -> None:
    assert read_layout(client) == Layout(1) and ensure_layout(client, 1) == Layout(1)
    assert not client.exists(LAYOUT_KEY)  # one shard writes nothing new: today's data as it is
    AggregateWriter(client, TTL).record_order("old", "p", 100)
    with pytest.raises(LayoutMismatch, match="orders reshard 3"):
        ensure_layout(client, 3)  # counted orders under one shard: moving them is the command's job
    client.flushdb()
    assert ensure_layout(client, 3) == THREE and ensure_layout(client, None) == THREE
    assert [client.get(keys.stamp) for keys in THREE.all()] == [b"3"] * 3
    with pytest.raises(LayoutMismatch, match="AGGREGATE_SHARDS=2"):
        ensure_layout(client, 2)


def test_a_writer_left_running_across_a_reshard_writes_nothing(client: redis.Redis) -> None:
    stale = AggregateWriter(client, TTL, layout=ensure_layout(client, 3))
    client.set(LAYOUT_KEY, 2)  # what `orders reshard 2` leaves: other stamps
    for keys in THREE.all()[1:]:
        client.delete(keys.stamp)
    before = {key for key in client.keys("*")}
    with pytest.raises(StaleLayout):
        stale.record_order("s-1", "p", 100)
    with pytest.raises(StaleLayout):
        stale.record_orders([(f"s-{i}", "p", 100) for i in range(6)])
    with pytest.raises(StaleLayout):
        stale.claim_dead_letter("s-2", "X", "y")
    assert set(client.keys("*")) == before


def test_reset_clears_every_shard_but_keeps_the_layout(client: redis.Redis, writer: AggregateWriter) -> None:
    writer.record_orders([(f"z-{i}", "p", 5) for i in range(20)])
    writer.count_events({"consumed": 20})
    client.set("unrelated", 1)
    assert clear_aggregate(client) > 20
    assert writer.snapshot().count == 0 and Aggregate(client).recent() == []
    remaining = {key.decode() for key in client.keys("*")}
    assert remaining == {"unrelated"} | {keys.stamp for keys in THREE.all()}
    assert writer.record_order("z-0", "p", 5) is True  # the layout survived: writers go on


def test_the_recent_list_reads_json_entries(client: redis.Redis, writer: AggregateWriter) -> None:
    writer.record_order("j-1", "wídget", 1234)
    (entry,) = Aggregate(client).recent()
    assert json.loads(json.dumps(entry))["product"] == "wídget" and entry["price"] == "12.34"


def test_a_full_redis_still_answers_the_snapshot(client: redis.Redis, writer: AggregateWriter) -> None:
    writer.record_orders([(f"m-{i}", "p", 7) for i in range(9)])
    client.config_set("maxmemory", 1)  # far below what it holds: every write refused (noeviction)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("x", 1)
        snap = Aggregate(client).snapshot()  # a script that writes nothing runs at maxmemory
    finally:
        client.config_set("maxmemory", 0)
    assert (snap.count, snap.sum) == (9, Decimal("0.63"))


def test_a_short_wait_on_the_shards_server_is_raised_and_the_write_stays(client: redis.Redis) -> None:
    layout = ensure_layout(client, 3)
    waiting = AggregateWriter(client, TTL, replicas=1, wait_timeout=0.05, layout=layout)  # no replica here
    ids = [f"w-{i}" for i in range(6)]
    for order_id in ids:
        with pytest.raises(ReplicasBehind):
            waiting.record_order(order_id, "p", 100)
    with pytest.raises(ReplicasBehind):
        waiting.claim_dead_letter("w-dead", "X", "y")
    # Written but not acknowledged: the redelivered copies find them counted, in their shards.
    assert (
        AggregateWriter(client, TTL, layout=layout).record_orders([(i, "p", 100) for i in ids]) == [False] * 6
    )
    assert {layout.shard_of(i) for i in ids} == {0, 1, 2}
