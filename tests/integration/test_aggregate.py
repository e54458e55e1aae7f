"""The running average on a real redis-server: exact, idempotent, safe with many writers at once."""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from orders.core.aggregate import (
    COUNTERS_KEY,
    LATEST_KEY,
    PREFIX,
    PRODUCT_COUNTS_KEY,
    PRODUCT_SUMS_KEY,
    RECENT_KEY,
    RECENT_SIZE,
    TOTALS_KEY,
    dead_key,
    seen_key,
)
from orders.core.settings import DAY_SECONDS, Settings
from orders.stack.supervisor import free_port, wait_for
from orders.stats import show_stats
from worker.aggregate import SCRIPT, AggregateWriter, Claim, ClaimedForDeadLetter
from worker.settings import WorkerSettings

TTL = 3600
CENT = Decimal("0.01")
TO_4DP = Decimal("0.0001")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def aggregate(client: redis.Redis) -> AggregateWriter:
    return AggregateWriter(client, TTL)


def money(cents: int) -> Decimal:
    return Decimal(cents) * CENT


def mean(cents: list[int]) -> Decimal:
    return (Decimal(sum(cents)) * CENT / len(cents)).quantize(TO_4DP)


def window_in_redis(client: redis.Redis) -> list[int]:
    return [int(v) for v in client.lrange(LATEST_KEY, 0, -1)]


def test_average_exact_over_2000_random_prices(aggregate: AggregateWriter) -> None:
    rng = random.Random(7)
    # Small and huge prices mixed, up to a billion: the sum reaches ~5e13 cents.
    prices = [rng.choice([rng.randint(1, 10_000), rng.randint(1, 10**11)]) for _ in range(2000)]
    for i, cents in enumerate(prices):
        assert aggregate.record_order(f"order-{i}", "widget", cents)

    snap = aggregate.snapshot()
    assert snap.count == 2000
    assert snap.sum == money(sum(prices))
    assert snap.average == mean(prices)
    assert (snap.min, snap.max) == (money(min(prices)), money(max(prices)))
    assert snap.counters["succeeded"] == 2000


def test_duplicate_order_id_is_counted_once(aggregate: AggregateWriter) -> None:
    assert aggregate.record_order("o-1", "widget", 1999) is True
    assert aggregate.record_order("o-1", "gadget", 5000) is False  # redelivery, even if altered
    assert aggregate.record_order("o-2", "widget", 1) is True

    snap = aggregate.snapshot()
    assert (snap.count, snap.sum, snap.last100_size) == (2, Decimal("20.00"), 2)
    assert set(snap.products) == {"widget"}
    assert snap.products["widget"].count == 2
    assert snap.counters["succeeded"] == 2


def test_last_100_average_is_exact_after_the_window_fills(
    aggregate: AggregateWriter, client: redis.Redis
) -> None:
    rng = random.Random(11)
    counted: list[int] = []
    for i in range(257):
        cents = rng.randint(0, 10**9)
        if aggregate.record_order(f"o-{i}", "widget", cents):
            counted.append(cents)
        if i % 3 == 0:  # duplicates in between must not enter the window
            assert not aggregate.record_order(f"o-{i}", "widget", 7)

    snap = aggregate.snapshot()
    last = counted[-100:]
    assert snap.last100_size == 100
    assert snap.last100_sum == money(sum(last))
    assert snap.last100_average == mean(last)
    assert window_in_redis(client) == last[::-1]  # newest first
    assert snap.average == mean(counted)


def test_per_product_count_and_average(aggregate: AggregateWriter) -> None:
    orders = [("widget", 1000), ("gadget", 333), ("widget", 2001), ("gizmo", 0), ("gadget", 334)]
    for i, (product, cents) in enumerate(orders):
        aggregate.record_order(f"o-{i}", product, cents)

    products = aggregate.snapshot().products
    assert list(products) == ["gadget", "gizmo", "widget"]
    assert {name: (p.count, p.sum, p.average) for name, p in products.items()} == {
        "gadget": (2, Decimal("6.67"), Decimal("3.3350")),
        "gizmo": (1, Decimal("0.00"), Decimal("0.0000")),
        "widget": (2, Decimal("30.01"), Decimal("15.0050")),
    }


@pytest.mark.parametrize(
    ("prices", "low", "high"),
    [
        ([500], "5.00", "5.00"),
        ([500, 1, 99_999_999_999, 0, 42], "0.00", "999999999.99"),
        ([300, 200, 100], "1.00", "3.00"),  # the minimum keeps moving
        ([100, 200, 300], "1.00", "3.00"),  # the maximum keeps moving
    ],
)
def test_min_and_max(aggregate: AggregateWriter, prices: list[int], low: str, high: str) -> None:
    for i, cents in enumerate(prices):
        aggregate.record_order(f"o-{i}", "widget", cents)
    snap = aggregate.snapshot()
    assert (snap.min, snap.max) == (Decimal(low), Decimal(high))


def test_sums_past_2_to_the_53_stay_exact(aggregate: AggregateWriter) -> None:
    cents = 2**52 + 1  # odd, so a double holding the sum would have to round it
    for i in range(3):
        aggregate.record_order(f"o-{i}", "yacht", cents)
    snap = aggregate.snapshot()
    assert snap.sum == money(3 * cents)
    assert snap.last100_sum == money(3 * cents)
    assert snap.products["yacht"].sum == money(3 * cents)
    assert 3 * cents > 2**53


def test_empty_aggregate_reads_as_zero(aggregate: AggregateWriter) -> None:
    snap = aggregate.snapshot()
    assert (snap.count, snap.sum, snap.average, snap.min, snap.last100_size) == (
        0,
        Decimal(0),
        None,
        None,
        0,
    )
    assert snap.counters == {
        "consumed": 0,
        "succeeded": 0,
        "retry_attempts": 0,
        "dlq": 0,
        "products_folded": 0,
    }


def test_dedupe_ttl_is_set_on_the_order_key(client: redis.Redis, redis_url: str) -> None:
    default_ttl = WorkerSettings.from_env({"REDIS_URL": redis_url}, env_file=None).dedupe_ttl_seconds
    assert default_ttl == DAY_SECONDS
    AggregateWriter(client, default_ttl).record_order("o-day", "widget", 100)
    AggregateWriter(client, 90).record_order("o-short", "widget", 100)

    assert DAY_SECONDS - 5 <= client.ttl(seen_key("o-day")) <= DAY_SECONDS
    assert 85 <= client.ttl(seen_key("o-short")) <= 90


def test_order_counts_again_once_its_dedupe_memory_expires(client: redis.Redis) -> None:
    aggregate = AggregateWriter(client, 1)
    assert aggregate.record_order("o-1", "widget", 100)
    assert not aggregate.record_order("o-1", "widget", 100)
    wait_for(lambda: not client.exists(seen_key("o-1")), 10, "the dedupe key to expire")
    assert aggregate.record_order("o-1", "widget", 100)
    assert aggregate.snapshot().count == 2


def test_counters(aggregate: AggregateWriter) -> None:
    aggregate.count_event("consumed", 5)
    aggregate.count_event("consumed")
    aggregate.count_event("retry_attempts", 2)
    aggregate.count_event("dlq")
    aggregate.count_event("dlq", 0)
    aggregate.record_order("o-1", "widget", 100)
    with pytest.raises(ValueError, match="unknown event"):
        aggregate.count_event("succeeded")  # type: ignore[arg-type]  # the script's alone
    with pytest.raises(ValueError, match="negative"):
        aggregate.count_event("dlq", -1)

    counters = aggregate.snapshot().counters
    assert counters == {"consumed": 6, "succeeded": 1, "retry_attempts": 2, "dlq": 1, "products_folded": 0}


@pytest.mark.parametrize("price", [1.5, True, "100", 2**63])
def test_bad_price_is_refused_before_anything_is_written(
    aggregate: AggregateWriter, client: redis.Redis, price: Any
) -> None:
    with pytest.raises(ValueError, match="price_cents"):
        aggregate.record_order("o-1", "widget", price)
    assert client.dbsize() == 0


@pytest.mark.parametrize("cents", ["1.5", "", "007", "-0", "12abc"])
def test_script_refuses_a_malformed_price_without_marking_the_order_seen(
    client: redis.Redis, cents: str
) -> None:
    keys = [
        seen_key("o-1"),
        TOTALS_KEY,
        LATEST_KEY,
        PRODUCT_COUNTS_KEY,
        PRODUCT_SUMS_KEY,
        COUNTERS_KEY,
    ]
    with pytest.raises(redis.ResponseError, match="integer number of cents"):
        client.register_script(SCRIPT)(keys=keys, args=[cents, "widget", TTL, 100])
    assert client.dbsize() == 0  # a retry with a good price would still be counted


def test_every_key_sits_under_one_hash_tag(aggregate: AggregateWriter, client: redis.Redis) -> None:
    aggregate.record_order("o-{odd}-1", "widget", 100)
    aggregate.count_event("consumed")
    keys = {k.decode() for k in client.keys("*")}  # type: ignore[union-attr]  # bytes client
    assert keys == {
        seen_key("o-{odd}-1"),
        TOTALS_KEY,
        LATEST_KEY,
        PRODUCT_COUNTS_KEY,
        PRODUCT_SUMS_KEY,
        COUNTERS_KEY,
        RECENT_KEY,
    }
    assert all(k.startswith(PREFIX) for k in keys)
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"{orders}")}


def test_snapshot_reads_a_decoding_client_too(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        aggregate = AggregateWriter(client, TTL)
        aggregate.record_order("o-1", "wídget", 1234)
        snap = aggregate.snapshot()
    assert (snap.count, snap.sum, list(snap.products)) == (1, Decimal("12.34"), ["wídget"])


def record_many(redis_url: str, order_ids: list[str], start: Any, results: Any) -> None:
    """One writer process: wait for the others, record every id, report the ids it counted."""
    with redis.Redis.from_url(redis_url) as client:
        aggregate = AggregateWriter(client, TTL)
        client.ping()  # connect before the start line, so the writers really overlap
        start.wait(timeout=60)
        counted = [oid for oid in order_ids if aggregate.record_order(oid, product_of(oid), price_of(oid))]
    results.put(counted)


def price_of(order_id: str) -> int:
    return int(order_id.split("-")[1]) * 7919 % 100_000 + 1


def product_of(order_id: str) -> str:
    return f"p{int(order_id.split('-')[1]) % 5}"


def test_concurrent_writers_count_each_order_once(
    aggregate: AggregateWriter, client: redis.Redis, redis_url: str
) -> None:
    writers = 6
    universe = [f"o-{i}" for i in range(3000)]
    hot = universe[:200]  # every writer starts on the same ids: maximum contention
    plans = []
    for w in range(writers):
        rng = random.Random(w)
        rest = rng.sample(universe[200:], 1200)
        plans.append(hot + rest)
    distinct = set().union(*plans)

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=record_many, args=(redis_url, plan, start, results)) for plan in plans]
    for proc in procs:
        proc.start()
    try:
        counted_by = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    flat = [oid for counted in counted_by for oid in counted]
    assert len(flat) == len(set(flat)) == len(distinct)  # each id counted by exactly one writer
    assert set(flat) == distinct
    snap = aggregate.snapshot()
    assert snap.count == snap.counters["succeeded"] == len(distinct)
    assert snap.sum == money(sum(price_of(oid) for oid in distinct))
    per_product = Counter(product_of(oid) for oid in distinct)
    assert {name: p.count for name, p in snap.products.items()} == dict(per_product)
    assert snap.last100_size == 100
    assert snap.last100_sum == money(sum(window_in_redis(client)))


def test_stats_json_output_matches_the_snapshot(
    aggregate: AggregateWriter, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, (product, cents) in enumerate([("widget", 1999), ("gadget", 1), ("widget", 2000)]):
        aggregate.record_order(f"o-{i}", product, cents)
    aggregate.count_event("consumed", 3)
    # No Kafka answers here: the lag shows as unavailable, the rest as usual.
    nowhere = f"127.0.0.1:{free_port()}"
    settings = Settings.from_env({"REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": nowhere}, env_file=None)

    show_stats(settings, as_json=True)
    shown = json.loads(capsys.readouterr().out)
    lag = shown.pop("lag")
    assert (lag["total"], lag["partitions"]) == (None, []) and lag["error"].startswith("kafka: ")
    assert shown == aggregate.snapshot().to_json_dict()
    assert (shown["count"], shown["sum"], shown["average"]) == (3, "40.00", "13.3333")
    assert shown["products"]["widget"] == {"count": 2, "sum": "39.99", "average": "19.9950"}
    assert shown["counters"]["consumed"] == 3

    show_stats(settings, as_json=False)
    table = capsys.readouterr().out
    assert "13.3333" in table
    assert "19.9950" in table


def test_several_counters_in_one_call(aggregate: AggregateWriter) -> None:
    aggregate.count_events({"consumed": 7, "dlq": 2})
    aggregate.count_events({"consumed": 1, "retry_attempts": 0})
    counters = aggregate.snapshot().counters
    assert (counters["consumed"], counters["dlq"], counters["retry_attempts"]) == (8, 2, 0)
    with pytest.raises(ValueError, match="unknown event"):
        aggregate.count_events({"succeeded": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="negative"):
        aggregate.count_events({"consumed": -1})
    assert aggregate.snapshot().counters["consumed"] == 8


def test_a_noted_status_counts_its_event_in_the_same_call(aggregate: AggregateWriter) -> None:
    aggregate.note_status(
        "r-1", "widget", Decimal("9.99"), "retrying", "attempt 1: boom", counts="retry_attempts"
    )
    aggregate.note_status("r-1", "widget", Decimal("9.99"), "dlq", "PermanentError: no", counts="dlq")
    aggregate.note_status("r-2", "widget", Decimal("1.00"), "retrying", "attempt 1: boom")  # listed only

    counters = aggregate.snapshot().counters
    assert (counters["retry_attempts"], counters["dlq"]) == (1, 1)
    assert [(e["orderId"], e["status"]) for e in aggregate.recent()] == [
        ("r-2", "retrying"),
        ("r-1", "dlq"),
        ("r-1", "retrying"),
    ]
    with pytest.raises(ValueError, match="unknown event"):
        aggregate.note_status("r-3", "widget", Decimal(1), "succeeded", counts="succeeded")  # type: ignore[arg-type]
    assert len(aggregate.recent()) == 3  # nothing written when the name is refused


def test_recent_activity_is_capped_and_newest_first(aggregate: AggregateWriter) -> None:
    for i in range(RECENT_SIZE + 5):
        aggregate.record_order(f"r-{i}", "widget", 100 + i)
    aggregate.note_status("r-x", "widget", Decimal("9.99"), "retrying", "attempt 1: boom")
    aggregate.record_order("r-0", "widget", 100)  # a duplicate adds no activity
    recent = aggregate.recent(limit=RECENT_SIZE + 10)
    assert len(recent) == RECENT_SIZE
    assert [recent[0]["orderId"], recent[0]["status"], recent[0]["detail"]] == [
        "r-x",
        "retrying",
        "attempt 1: boom",
    ]
    assert [recent[1]["orderId"], recent[1]["status"], recent[1]["price"]] == [
        f"r-{RECENT_SIZE + 4}",
        "succeeded",
        "3.04",
    ]


def test_failure_rate_override_reaches_workers(client: redis.Redis) -> None:
    from orders.core.control import FailureRateOverride, get_failure_rate, set_failure_rate

    override = FailureRateOverride(client, refresh=0.0)
    assert override.current() is None
    set_failure_rate(client, 0.25)
    assert (get_failure_rate(client), override.current()) == (0.25, 0.25)
    set_failure_rate(client, None)
    assert override.current() is None
    with pytest.raises(ValueError):
        set_failure_rate(client, 1.5)


def test_what_one_remembered_order_costs_redis(aggregate: AggregateWriter, client: redis.Redis) -> None:
    """The README's memory formula rests on this figure: ~110 bytes plus the orderId's length."""
    for i in range(300):  # the bounded structures (last 100, recent activity) fill up first
        aggregate.record_order(f"warm-{i}", "widget", 100 + i)
    before = int(client.info("memory")["used_memory"])
    n = 10_000
    for i in range(n):
        aggregate.record_order(f"1a22cf25917adb3-{i:06d}", "widget", 100 + i % 5000)  # 22 characters
    per_order = (int(client.info("memory")["used_memory"]) - before) / n
    print(f"one remembered order: {per_order:.0f} bytes")
    assert 100 <= per_order <= 170, per_order


def test_a_sum_that_would_overflow_is_refused_before_anything_is_written(
    aggregate: AggregateWriter, client: redis.Redis
) -> None:
    """Redis does not roll scripts back: a HINCRBY overflow after the seen marker counted nothing twice."""
    client.hset(TOTALS_KEY, mapping={"count": 1, "sum_cents": 2**63 - 1000})
    with pytest.raises(redis.ResponseError, match="overflow"):
        aggregate.record_order("o-big", "widget", 5_000)
    assert not client.exists(seen_key("o-big"))
    assert client.hgetall(TOTALS_KEY) == {b"count": b"1", b"sum_cents": str(2**63 - 1000).encode()}
    assert not client.exists(PRODUCT_COUNTS_KEY)


def test_products_past_the_cap_are_counted_under_other(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL, max_products=3)
    for n, product in enumerate(["a", "b", "c", "d", "e", "a"]):
        writer.record_order(f"o-{n}", product, 100)
    snap = writer.snapshot()
    assert set(snap.products) == {"a", "b", "c", "(other)"}
    assert (snap.products["a"].count, snap.products["(other)"].count) == (2, 2)
    assert snap.counters["products_folded"] == 2 and snap.count == 6


def test_an_order_ends_counted_or_claimed_for_the_dlq_never_both(client: redis.Redis) -> None:
    writer = AggregateWriter(client, TTL)
    assert writer.claim_dead_letter("o-1", "PermanentError", "injected") == Claim(
        "claimed", "PermanentError", "injected"
    )
    with pytest.raises(ClaimedForDeadLetter):
        writer.record_order("o-1", "widget", 100)  # a redelivered copy may not count it now
    assert writer.snapshot().count == 0 and not client.exists(seen_key("o-1"))
    # A later claim (another copy) keeps the first reason; once published, no copy sends another letter.
    assert writer.claim_dead_letter("o-1", "Other", "other") == Claim("claimed", "PermanentError", "injected")
    writer.mark_dead_lettered("o-1")
    assert writer.claim_dead_letter("o-1", "Other", "other").state == "published"
    assert 0 < client.ttl(dead_key("o-1")) <= TTL
    # A counted order is never claimed.
    assert writer.record_order("o-2", "widget", 100)
    assert writer.claim_dead_letter("o-2", "PermanentError", "x").state == "counted"
    assert not client.exists(dead_key("o-2"))
