"""Aggregate maths without Redis: averages to 0.0001 half-even; hash replies -> Snapshot -> JSON."""

from __future__ import annotations

import json
import random
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest

from orders.core.aggregate import COUNTERS, ProductStats, Snapshot, average_of, cents_to_money, seen_key
from orders.stats import render_stats, stats_json

I64 = 2**63 - 1


@pytest.mark.parametrize(
    ("sum_cents", "count", "expected"),
    [
        (0, 0, None),
        (500, 0, None),
        (0, 5, "0.0000"),
        (1999, 1, "19.9900"),
        (1, 3, "0.0033"),
        (2, 3, "0.0067"),
        (1000, 3, "3.3333"),
        (2000, 3, "6.6667"),
        (1, 200, "0.0000"),  # 0.00005 exactly: half-even rounds down to 0
        (3, 200, "0.0002"),  # 0.00015 exactly: half-even rounds up to 2
        (5, 200, "0.0002"),  # 0.00025 -> 2
        (-3, 200, "-0.0002"),
        (-1999, 2, "-9.9950"),
        (I64, 1, "92233720368547758.0700"),
        (I64, 7, "13176245766935394.0100"),
    ],
)
def test_average_table(sum_cents: int, count: int, expected: str | None) -> None:
    result = average_of(sum_cents, count)
    assert (None if result is None else str(result)) == expected


def test_average_matches_decimal_quantize_on_random_sums() -> None:
    # A seeded sweep rather than hypothesis: hypothesis writes a .hypothesis/ cache into the repo.
    rng = random.Random(20240501)
    cases = [
        (rng.randint(-I64, I64), rng.choice([rng.randint(1, 9), rng.randint(1, 10**9)])) for _ in range(5000)
    ]
    # Averages landing exactly on a half of 0.0001, where the rounding rule decides.
    cases += [(count * (2 * q + 1) // 200, count) for count in (200, 400, 1000) for q in range(-3, 4)]
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that the division itself is exact before quantizing
        for sum_cents, count in cases:
            expected = (Decimal(sum_cents) / 100 / count).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
            assert average_of(sum_cents, count) == expected, (sum_cents, count)


@pytest.mark.parametrize(
    ("cents", "money"),
    [(0, "0.00"), (1, "0.01"), (1999, "19.99"), (-5, "-0.05"), (I64, "92233720368547758.07")],
)
def test_cents_to_money_is_exact(cents: int, money: str) -> None:
    assert str(cents_to_money(cents)) == money


def test_seen_key_shares_the_hash_tag_whatever_the_order_id() -> None:
    # Cluster hashes the first {...}: an orderId with braces must not move the key to another slot.
    assert seen_key("o-{evil}-1") == "{orders}:seen:o-{evil}-1"


def full_snapshot() -> Snapshot:
    return Snapshot.from_hashes(
        totals={
            "count": 4,
            "sum_cents": 10001,
            "min_cents": 1,
            "max_cents": 5000,
            "last100_sum_cents": 10001,
        },
        last100_size=4,
        product_counts={"widget": 3, "gadget": 1},
        product_sums={"widget": 5001, "gadget": 5000},
        counters={"consumed": 5, "succeeded": 4, "dlq": 1, "dlq:validate": 1},
    )


def test_snapshot_from_hashes() -> None:
    snap = full_snapshot()
    assert (snap.count, snap.sum, snap.average) == (4, Decimal("100.01"), Decimal("25.0025"))
    assert (snap.min, snap.max) == (Decimal("0.01"), Decimal("50.00"))
    assert (snap.last100_size, snap.last100_average) == (4, Decimal("25.0025"))
    assert list(snap.products) == ["gadget", "widget"]  # sorted, for stable output
    assert snap.products["widget"] == ProductStats(3, Decimal("50.01"), Decimal("16.6700"))
    assert snap.counters == {
        "consumed": 5,
        "succeeded": 4,
        "retry_attempts": 0,
        "dlq": 1,
        "products_folded": 0,
    }


def test_empty_snapshot_has_no_averages_and_zero_counters() -> None:
    snap = Snapshot.from_hashes({}, 0, {}, {}, {})
    assert (snap.count, snap.sum) == (0, Decimal("0.00"))
    assert (snap.average, snap.min, snap.max, snap.last100_average) == (None, None, None, None)
    assert snap.products == {}
    assert snap.counters == dict.fromkeys(COUNTERS, 0)


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (
            Snapshot.from_hashes({}, 0, {}, {}, {}),
            {
                "count": 0,
                "sum": "0.00",
                "average": None,
                "min": None,
                "max": None,
                "last100": {"size": 0, "sum": "0.00", "average": None},
                "products": {},
                "counters": {
                    "consumed": 0,
                    "succeeded": 0,
                    "retry_attempts": 0,
                    "dlq": 0,
                    "products_folded": 0,
                },
                "dlq_stages": {"decode": 0, "validate": 0, "process": 0},
            },
        ),
        (
            full_snapshot(),
            {
                "count": 4,
                "sum": "100.01",
                "average": "25.0025",
                "min": "0.01",
                "max": "50.00",
                "last100": {"size": 4, "sum": "100.01", "average": "25.0025"},
                "products": {
                    "gadget": {"count": 1, "sum": "50.00", "average": "50.0000"},
                    "widget": {"count": 3, "sum": "50.01", "average": "16.6700"},
                },
                "counters": {
                    "consumed": 5,
                    "succeeded": 4,
                    "retry_attempts": 0,
                    "dlq": 1,
                    "products_folded": 0,
                },
                "dlq_stages": {"decode": 0, "validate": 1, "process": 0},
            },
        ),
    ],
    ids=["empty", "full"],
)
def test_json_shape(snapshot: Snapshot, expected: dict[str, object]) -> None:
    assert snapshot.to_json_dict() == expected
    assert json.loads(stats_json(snapshot)) == expected  # money as strings survives the round trip


def test_render_shows_every_figure() -> None:
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(render_stats(full_snapshot()))
    text = console.export_text()
    for figure in [
        "100.01",
        "25.0025",
        "0.01",
        "50.00",
        "16.6700",
        "widget",
        "gadget",
        "retry_attempts",
    ]:
        assert figure in text
