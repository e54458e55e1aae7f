"""The aggregate's logical shards without Redis: pinned tags, even slots, the shard key, the combine rules."""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

import pytest
from redis.crc import key_slot

from orders.core.shards import MAX_SHARDS, SLOTS, Layout, shard_of, slot_of, tags
from orders.core.snapshot import ShardRead, combine, newest, window_entry


def test_one_shard_is_todays_layout_byte_for_byte() -> None:
    keys = Layout(1).keys(0)
    assert (keys.totals, keys.latest, keys.counters, keys.seen("o-{x}-1"), keys.dead("a")) == (
        "{orders}:totals", "{orders}:last100", "{orders}:counters", "{orders}:seen:o-{x}-1", "{orders}:dead:a"
    )  # fmt: skip
    assert keys.stamp == "{orders}:layout"


def test_tags_are_pinned() -> None:
    # Shipped: changing a tag moves that shard's data out of the readers' sight. Never edit these.
    assert tags(3) == ("orders", "orders.1of3.49", "orders.2of3.50")
    assert tags(16)[:6] == (
        "orders", "orders.1of16.208", "orders.2of16.73", "orders.3of16.4", "orders.4of16.198",
        "orders.5of16.18",
    )  # fmt: skip


@pytest.mark.parametrize("n", [2, 3, 4, 7, 16, MAX_SHARDS])
def test_tags_spread_evenly_over_the_slots_and_agree_with_redis(n: int) -> None:
    found = tags(n)
    assert len(set(found)) == n
    step = SLOTS / n
    for k, tag in enumerate(found):
        assert key_slot(("{" + tag + "}:totals").encode()) == slot_of(tag)  # redis-py's own CRC16
        gap = abs(slot_of(tag) - (105 + k * step) % SLOTS)
        assert min(gap, SLOTS - gap) <= max(1, SLOTS // (16 * n))
    # Three nodes splitting the slots evenly: each gets about n / 3 shards.
    per_node = [sum(1 for tag in found if slot_of(tag) * 3 // SLOTS == node) for node in range(3)]
    assert max(per_node) - min(per_node) <= 1 + n // 16


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1, True, 2.0])
def test_the_number_of_shards_is_bounded(bad: object) -> None:
    with pytest.raises(ValueError, match="number of shards"):
        Layout(bad)  # type: ignore[arg-type]


def test_the_shard_key_is_crc32_of_the_order_id() -> None:
    assert [shard_of(x, 3) for x in ["o-1", "o-2", "o-3", "order-0", "ünï"]] == [2, 2, 1, 0, 1]
    assert shard_of("ünï", 7) == zlib.crc32("ünï".encode()) % 7
    counts = [0, 0, 0]
    for i in range(3000):
        counts[shard_of(f"order-{i}", 3)] += 1
    assert min(counts) > 900  # spread


def test_an_order_and_its_marker_and_claim_share_a_slot() -> None:
    layout = Layout(3)
    for order_id in ["a", "b", "o-{x}-1", "zz"]:
        keys = layout.of_order(order_id)
        slots = {
            key_slot(k.encode()) for k in [keys.seen(order_id), keys.dead(order_id), keys.totals, keys.stamp]
        }
        assert slots == {slot_of(keys.tag)}


def test_window_entries_read_both_formats() -> None:
    assert window_entry(b"1999") == (1999, 0) and window_entry("-5:1700000000123456") == (
        -5,
        1700000000123456,
    )


def test_the_last_100_merge_is_the_global_newest_by_time_ties_by_shard() -> None:
    rng = random.Random(3)
    orders = [(rng.randint(1, 10_000), t, rng.randrange(3)) for t in range(1000)]  # (cents, µs, shard)
    windows = [[(c, t) for c, t, s in reversed(orders) if s == k][:100] for k in range(3)]
    assert newest(windows) == [c for c, _, _ in reversed(orders)][:100]
    assert newest([[(1, 5)], [(2, 5)]], 2) == [1, 2]


def _read(
    count: int, cents: int, low: int, high: int, window: list[tuple[int, int]], **products: int
) -> ShardRead:
    totals = {"count": count, "sum_cents": cents, "min_cents": low, "max_cents": high}
    return ShardRead(
        totals, window, products, {p: n * 100 for p, n in products.items()}, {"succeeded": count}
    )


def test_combine_adds_sums_and_combines_min_max_exactly() -> None:
    snap = combine([
        _read(2, 300, 100, 200, [(200, 9), (100, 1)], a=2),
        _read(1, 7, 7, 7, [(7, 5)], a=1),
        ShardRead({}, [], {}, {}, {"consumed": 4}),
    ])  # fmt: skip
    assert (snap.count, snap.sum, snap.average) == (3, Decimal("3.07"), Decimal("1.0233"))
    assert (snap.min, snap.max) == (Decimal("0.07"), Decimal("2.00"))
    assert (snap.last100_size, snap.last100_sum) == (3, Decimal("3.07"))
    assert (
        snap.products["a"].count == 3 and snap.counters["succeeded"] == 3 and snap.counters["consumed"] == 4
    )
