"""The dashboard's sampling logic without services: rates, consumer lag, capped history, the JSON state."""

from __future__ import annotations

import json

import pytest

from orders.core.aggregate import Snapshot
from orders.core.lag import PartitionLag, partition_lags, produced_total
from orders.dashboard.state import (
    UNKNOWN_HEALTH,
    Figures,
    Health,
    History,
    Sample,
    busiest_products,
    compose_state,
    windowed_rate,
)


@pytest.mark.parametrize(
    ("points", "window", "expected"),
    [
        ([], 5.0, 0.0),
        ([(0.0, 10)], 5.0, 0.0),
        ([(0.0, 0), (1.0, 10)], 5.0, 10.0),
        ([(0.0, 0), (1.0, 10), (2.0, 30)], 5.0, 15.0),
        # only points within the window of the newest count: 100 -> 130 over 2 s
        ([(0.0, 0), (8.0, 100), (9.0, 110), (10.0, 130)], 2.0, 15.0),
        # nothing else within the window: the previous point stands in
        ([(0.0, 0), (10.0, 50)], 5.0, 5.0),
        ([(0.0, 5), (1.0, 5)], 5.0, 0.0),
        # a counter that went down (flushed Redis, recreated topic) is no negative rate
        ([(0.0, 100), (1.0, 3)], 5.0, 0.0),
        # two samples at the same instant
        ([(1.0, 0), (1.0, 10)], 5.0, 0.0),
        ([(0.0, 0), (0.5, 1), (1.0, 3)], 5.0, 3.0),
    ],
)
def test_windowed_rate(points: list[tuple[float, int]], window: float, expected: float) -> None:
    assert windowed_rate(points, window) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("high", "low", "committed", "expected"),
    [
        # committed offsets: lag = high - committed
        ({0: 10, 1: 20}, {0: 0, 1: 0}, {0: 7, 1: 20}, [(0, 10, 7, 3), (1, 20, 20, 0)]),
        # never committed (librdkafka's -1001): everything retained is lag
        ({0: 10}, {0: 4}, {0: -1001}, [(0, 10, None, 6)]),
        # a partition missing from the committed reply counts as never committed
        ({0: 10, 1: 5}, {0: 0, 1: 0}, {0: 10}, [(0, 10, 10, 0), (1, 5, None, 5)]),
        # a watermark below the committed offset (Tansu, multi-record batches): no negative lag
        ({0: 1}, {0: 0}, {0: 5}, [(0, 5, 5, 0)]),
        # partitions come out in numeric order
        ({2: 3, 0: 1, 10: 2}, {}, {}, [(0, 1, None, 1), (2, 3, None, 3), (10, 2, None, 2)]),
        ({}, {}, {}, []),
    ],
)
def test_partition_lags(
    high: dict[int, int],
    low: dict[int, int],
    committed: dict[int, int],
    expected: list[tuple[int, int, int | None, int]],
) -> None:
    assert partition_lags(high, low, committed) == [PartitionLag(*row) for row in expected]


def test_produced_is_the_sum_of_high_watermarks() -> None:
    lags = partition_lags({0: 10, 1: 1, 2: 7}, {}, {0: 3, 1: 4, 2: -1001})
    assert produced_total(lags) == 10 + 4 + 7  # partition 1's watermark is raised to its commit


def sample(second: float, succeeded: int, produced: int | None = None) -> Sample:
    return Sample(at=1_700_000_000 + second, monotonic=second, succeeded=succeeded, produced=produced,
                  average=12.5, last100=11.0)  # fmt: skip


def test_history_is_capped_oldest_first() -> None:
    history = History(cap=5)
    for second in range(12):
        history.add(sample(second, second * 10, second * 20))
    assert [s.monotonic for s in history.samples] == [7, 8, 9, 10, 11]
    columns = history.to_json()
    assert set(columns) == {"t", "average", "last100", "succeeded_rate", "produced_rate"}
    assert all(len(values) == 5 for values in columns.values())
    assert columns["t"][0] == 1_700_000_007
    assert history.succeeded_rate == pytest.approx(10.0)
    assert history.produced_rate == pytest.approx(20.0)
    assert columns["succeeded_rate"] == [10.0] * 5


def test_history_rates_skip_unknown_production() -> None:
    history = History()
    history.add(sample(0, 0, 100))
    history.add(sample(1, 5, None))  # Kafka did not answer this second
    history.add(sample(2, 10, 140))
    assert history.produced_rate == pytest.approx(20.0)
    assert history.succeeded_rate == pytest.approx(5.0)


def test_an_empty_history_has_no_rates() -> None:
    history = History()
    assert (history.succeeded_rate, history.produced_rate) == (0.0, 0.0)
    assert history.to_json()["t"] == []


def test_state_from_every_source() -> None:
    snap = Snapshot.from_hashes(
        {"count": 3, "sum_cents": 3000, "min_cents": 500, "max_cents": 1500, "last100_sum_cents": 3000},
        3,
        {"Mouse": 3},
        {"Mouse": 3000},
        {
            "consumed": 4,
            "succeeded": 3,
            "retry_attempts": 2,
            "dlq": 1,
            "products_folded": 0,
            "dlq:process": 1,
        },
    )
    lags = partition_lags({0: 4, 1: 2}, {}, {0: 3, 1: 2})
    recent = [{"orderId": f"o{i}", "status": "succeeded"} for i in range(30)]
    figures = Figures(snap, recent, queued=7, in_flight=2, failure_rate=0.25, lags=lags)
    history = History()
    history.add(figures.sample(1_700_000_000.0, 0.0))
    controls = {"producer": {"running": False}, "token_required": True}
    health = {**UNKNOWN_HEALTH, "redis": Health("ok", "ping answered")}

    state = json.loads(json.dumps(compose_state(figures, history, health, controls, uptime=12.34)))

    assert state["producer"] == {"produced": 6, "rate": 0.0}
    assert state["processing"] == {"consumed": 4, "succeeded": 3, "retry_attempts": 2, "dlq": 1,
                                   "dlq_stages": {"decode": 0, "validate": 0, "process": 1},
                                   "queued": 7, "in_flight": 2, "rate": 0.0}  # fmt: skip
    assert state["average"] == {"count": 3, "all_time": "10.0000", "last100": "10.0000", "last100_size": 3,
                                "min": "5.00", "max": "15.00"}  # fmt: skip
    assert state["lag"] == {"total": 1, "partitions": [
        {"partition": 0, "high": 4, "committed": 3, "lag": 1},
        {"partition": 1, "high": 2, "committed": 2, "lag": 0},
    ]}  # fmt: skip
    assert len(state["recent"]) == 20
    assert state["products"]["Mouse"]["count"] == 3
    assert state["health"]["redis"] == {"status": "ok", "detail": "ping answered"}
    assert state["health"]["kafka"]["status"] == "unknown"
    assert state["controls"] == {"producer": {"running": False}, "token_required": True, "failure_rate": 0.25}
    assert state["history"]["average"] == [10.0]
    assert state["uptime"] == 12.3
    assert state["errors"] == []


def test_state_when_redis_and_kafka_are_down() -> None:
    figures = Figures(errors=("redis: connection refused", "kafka: timed out"))
    history = History()
    history.add(figures.sample(1_700_000_000.0, 0.0))
    state = compose_state(figures, history, UNKNOWN_HEALTH, {}, uptime=0)
    assert state["processing"] is None and state["average"] is None
    assert state["producer"]["produced"] is None
    assert state["lag"] == {"total": None, "partitions": []}
    assert state["errors"] == ["redis: connection refused", "kafka: timed out"]
    json.dumps(state)  # JSON-able even so


def test_only_the_busiest_products_are_sent_each_second() -> None:
    counts = {f"p{n:03d}": n + 1 for n in range(50)}
    sums = {name: 100 * count for name, count in counts.items()}
    snap = Snapshot.from_hashes(
        {"count": sum(counts.values()), "sum_cents": sum(sums.values())}, 0, counts, sums, {}
    )
    shown = busiest_products(snap, limit=5)
    assert list(shown) == ["p049", "p048", "p047", "p046", "p045"]
