"""`orders top`'s screen: every figure on an 80x24 terminal, each panel once, nothing wider or taller."""

from __future__ import annotations

import io
import time

import pytest
from rich.cells import cell_len
from rich.console import Console

from orders.core.aggregate import Snapshot
from orders.core.lag import PartitionLag
from orders.dashboard.top import TopView, render_top
from orders.produce import CATALOG

TITLES = ("Figures", "Products", "DLQ · lag", "Recent orders")


def snapshot(products: tuple[str, ...] = CATALOG) -> Snapshot:
    counts = {name: 100 + i for i, name in enumerate(products)}
    sums = {name: (100 + i) * 12_345 for i, name in enumerate(products)}
    total = sum(counts.values())
    totals = {
        "count": total,
        "sum_cents": sum(sums.values()),
        "min_cents": 1_000,
        "max_cents": 199_999,
        "last100_sum_cents": 1_234_567,
    }
    counters = {
        "consumed": total + 40,
        "succeeded": total,
        "retry_attempts": 321,
        "dlq": 17,
        "products_folded": 0,
        "dlq:decode": 3,
        "dlq:validate": 2,
        "dlq:process": 12,
    }
    return Snapshot.from_hashes(totals, 100, counts, sums, counters)


def recent(n: int) -> list[dict[str, object]]:
    statuses = ("succeeded", "retrying", "dlq")
    return [
        {"orderId": f"19b2f3c4d5e6a7b8-{i:06d}", "product": CATALOG[i % len(CATALOG)], "price": "1234.50",
         "status": statuses[i % 3], "detail": "injected transient failure (rate 0.5)", "at": time.time() - i}
        for i in range(n)
    ]  # fmt: skip


def screen(view: TopView, width: int = 80, height: int = 24) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)
    console.print(render_top(view, console.height))
    return console.export_text().splitlines()


def test_every_core_figure_is_on_an_80x24_screen() -> None:
    snap = snapshot()
    lines = screen(TopView(snap, recent(50), queued=4321, in_flight=12, rate=87.5, at=time.time()))
    text = "\n".join(lines)
    for figure in ("consumed", "succeeded", "average", "last 100 avg", "retries", "DLQ", "queued",
                   "in flight", "rate /s"):  # fmt: skip
        assert figure in text, figure
    assert f"{snap.count:,}" in text
    assert f"{snap.counters['consumed']:,}" in text
    assert f"{snap.average:,.2f}" in text
    assert f"{snap.last100_average:,.2f}" in text
    assert "321" in text and "17" in text and "4,321" in text and "87.5" in text
    busiest = max(snap.products, key=lambda name: snap.products[name].count)
    assert busiest in text
    assert "19b2f3c4d5e6a7b8-000000" in text
    assert {"succeeded", "retrying", "DLQ"} <= set(text.split())


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (120, 40), (80, 20)])
@pytest.mark.parametrize("orders", [0, 3, 200])
def test_the_screen_fits_and_shows_each_panel_once(width: int, height: int, orders: int) -> None:
    view = TopView(snapshot() if orders else Snapshot.from_hashes({}, 0, {}, {}, {}), recent(orders), 0, 0)
    lines = screen(view, width, height)
    assert len(lines) <= height
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    text = "\n".join(lines)
    for title in TITLES:
        assert text.count(title) == 1, title
    assert text.count("orders top") == 1


def test_products_that_do_not_fit_are_counted_not_cut() -> None:
    many = tuple(f"product-{i:02d}" for i in range(30))
    text = "\n".join(screen(TopView(snapshot(many)), 80, 24))
    assert "product-29" in text  # the busiest first
    assert "more" in text


def test_a_redis_error_is_shown_in_the_header() -> None:
    lines = screen(TopView(snapshot(), error="redis unavailable: connection refused"))
    assert "redis unavailable" in lines[0]


LAGS = [PartitionLag(p, 1000 + p, 990 - p, 10 + 2 * p) for p in range(3)]


def test_dead_letters_by_stage_and_the_consumer_lag_are_on_an_80x24_screen() -> None:
    text = "\n".join(screen(TopView(snapshot(), recent(50), 0, 0, lags=LAGS), 80, 24))
    for stage, count in (("decode", "3"), ("validate", "2"), ("process", "12")):
        assert f"{stage} " in text and count in text, stage
    assert "lag" in text and "36" in text  # 10 + 12 + 14
    for partition, lag in (("p0", "10"), ("p1", "12"), ("p2", "14")):
        assert partition in text and lag in text


def test_partitions_that_do_not_fit_are_counted_and_an_unreachable_kafka_says_so() -> None:
    many = [PartitionLag(p, 100, 90, 10) for p in range(40)]
    text = "\n".join(screen(TopView(snapshot(), lags=many), 80, 24))
    assert "more" in text and "400" in text
    assert "kafka down" in "\n".join(screen(TopView(snapshot(), lags=None), 80, 24))
