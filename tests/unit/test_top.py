"""`orders top`'s screen: every figure on an 80x24 terminal, each panel once, nothing wider or taller."""

from __future__ import annotations

import io
import time

import pytest
from rich.cells import cell_len
from rich.console import Console

from orders.core.aggregate import Snapshot
from orders.dashboard.top import TopView, render_top
from orders.produce import CATALOG

TITLES = ("Figures", "Products", "Recent orders")


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
