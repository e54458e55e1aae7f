"""`orders top`: the pipeline's core figures in the terminal, one full screen redrawn in place.

Redis gives the counts, averages, queue and recent orders; Kafka the bridge group's lag, as on the
dashboard, beside the dead letters by stage.

The view is a fixed-height layout (a header line, figures beside products, recent orders below)
sized to the terminal, so an 80x24 terminal shows every panel once, never torn or repeated.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from confluent_kafka import KafkaException
from rich.console import Console, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orders.core.aggregate import Snapshot
from orders.core.lag import LagReader, PartitionLag
from orders.core.redis_client import REDIS_ERRORS
from orders.core.settings import Settings
from orders.dashboard.state import windowed_rate

FIGURES_WIDTH: Final = 28
DLQ_LAG_WIDTH: Final = 19
MIDDLE_ROWS: Final = 14  # figures (11 lines) and products, with their borders
STATUS_STYLE: Final = {"succeeded": "green", "retrying": "yellow", "dlq": "bold red"}


@dataclass(frozen=True)
class TopView:
    """Everything one screen shows."""

    snapshot: Snapshot
    recent: list[dict[str, Any]] = field(default_factory=list)
    queued: int | None = None
    in_flight: int | None = None
    rate: float = 0.0
    at: float = 0.0
    error: str = ""
    # The bridge group's lag per partition, as the dashboard shows it; None when Kafka did not answer.
    lags: list[PartitionLag] | None = None


def _money(value: Decimal | str | None) -> str:
    return "-" if value is None else f"{Decimal(value):,.2f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _figures(view: TopView) -> Table:
    snap, counters = view.snapshot, view.snapshot.counters
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True, min_width=12)
    table.add_column(justify="right", no_wrap=True, overflow="ellipsis", ratio=1)
    rows = [
        ("consumed", _count(counters.get("consumed"))),
        ("succeeded", _count(snap.count)),
        ("rate /s", f"{view.rate:,.1f}"),
        ("average", _money(snap.average)),
        (f"last {snap.last100_size} avg", _money(snap.last100_average)),
        ("min", _money(snap.min)),
        ("max", _money(snap.max)),
        ("retries", _count(counters.get("retry_attempts"))),
        ("DLQ", _count(counters.get("dlq"))),
        ("queued", _count(view.queued)),
        ("in flight", _count(view.in_flight)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _products(snapshot: Snapshot, rows: int) -> Table:
    """Busiest products first; the last row says how many did not fit in ``rows`` lines."""
    table = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    table.add_column("product", no_wrap=True, overflow="ellipsis")
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("average", justify="right", no_wrap=True)
    ranked = sorted(snapshot.products.items(), key=lambda item: (-item[1].count, item[0]))
    fit = rows - 1  # the header
    shown = ranked if len(ranked) <= fit else ranked[: max(fit - 1, 0)]
    for name, product in shown:
        table.add_row(name, _count(product.count), _money(product.average))
    if len(shown) < len(ranked):
        table.add_row(Text(f"+{len(ranked) - len(shown)} more", style="dim"), "", "")
    return table


def _dlq_and_lag(view: TopView, rows: int) -> Table:
    """Dead letters by stage, then the consumer lag: its total and the partitions that fit."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True, overflow="ellipsis", ratio=1)
    for stage, count in view.snapshot.dlq_stages.items():
        table.add_row(stage, _count(count))
    if view.lags is None:
        table.add_row(Text("lag", style="bold"), Text("n/a", style="yellow"))
        table.add_row(Text("kafka down", style="yellow"), "")
        return table
    table.add_row(Text("lag", style="bold"), _count(sum(p.lag for p in view.lags)))
    fit = max(rows - len(view.snapshot.dlq_stages) - 1, 0)
    shown = view.lags if len(view.lags) <= fit else view.lags[: max(fit - 1, 0)]
    for p in shown:
        table.add_row(f" p{p.partition}", _count(p.lag))
    if len(shown) < len(view.lags):
        table.add_row(Text(f" +{len(view.lags) - len(shown)} more", style="dim"), "")
    return table


def _recent(recent: list[dict[str, Any]], rows: int) -> Table:
    table = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    widths = {"time": 8, "order": 23, "product": 10, "price": 9, "status": 9}
    for name, width in widths.items():
        table.add_column(name, justify="right" if name == "price" else "left", no_wrap=True,
                         overflow="ellipsis", max_width=width)  # fmt: skip
    table.add_column("detail", no_wrap=True, overflow="ellipsis", ratio=1)
    for entry in recent[: max(rows - 1, 0)]:
        status = str(entry.get("status", ""))
        table.add_row(
            datetime.fromtimestamp(float(entry.get("at", 0))).strftime("%H:%M:%S"),
            str(entry.get("orderId", "")),
            str(entry.get("product", "")),
            _money(entry.get("price")),
            Text("DLQ" if status == "dlq" else status, style=STATUS_STYLE.get(status, "")),
            str(entry.get("detail", "")),
        )
    return table


def _header(view: TopView) -> Text:
    stamp = datetime.fromtimestamp(view.at).strftime("%H:%M:%S") if view.at else "--:--:--"
    header = Text.assemble(
        ("orders top", "bold"), f"  {stamp}  {view.rate:,.1f} orders/s  Ctrl-C quits", no_wrap=True
    )
    if view.error:
        header.append(f"  {view.error}", style="bold red")
    header.overflow = "ellipsis"
    return header


def render_top(view: TopView, height: int) -> RenderableType:
    """The whole screen for a terminal ``height`` rows high (at least 16 to show every panel)."""
    middle = (
        MIDDLE_ROWS if height < 30 else max(MIDDLE_ROWS, min(height - 12, len(view.snapshot.products) + 3))
    )
    bottom = max(height - 1 - middle, 3)
    layout = Layout()
    layout.split_column(Layout(_header(view), name="header", size=1), Layout(name="middle", size=middle),
                        Layout(name="recent", size=bottom))  # fmt: skip
    layout["middle"].split_row(
        Layout(Panel(_figures(view), title="Figures"), name="figures", size=FIGURES_WIDTH),
        Layout(Panel(_products(view.snapshot, middle - 2), title="Products"), name="products"),
        Layout(Panel(_dlq_and_lag(view, middle - 2), title="DLQ · lag"), name="dlq", size=DLQ_LAG_WIDTH),
    )
    layout["recent"].update(Panel(_recent(view.recent, bottom - 2), title="Recent orders"))
    return layout


class TopSource:
    """Reads one view from Redis and the lag from Kafka; keeps a few seconds of counts for the rate."""

    def __init__(self, settings: Settings) -> None:
        from orders.dashboard.sampler import RedisFigures

        self._figures = RedisFigures(settings)
        self._lag = LagReader(settings)
        self._counts: deque[tuple[float, int]] = deque(maxlen=10)
        self._last: TopView | None = None

    def read(self) -> TopView:
        lags = self._read_lag()
        try:
            figures = self._figures.read()
        except REDIS_ERRORS as exc:
            last = self._last or TopView(Snapshot.from_hashes({}, 0, {}, {}, {}))
            return TopView(last.snapshot, last.recent, last.queued, last.in_flight, 0.0, time.time(),
                           f"redis unavailable: {exc}", lags)  # fmt: skip
        assert figures.snapshot is not None
        self._counts.append((time.monotonic(), figures.snapshot.count))
        view = TopView(figures.snapshot, figures.recent, figures.queued, figures.in_flight,
                       windowed_rate(list(self._counts)), time.time(), lags=lags)  # fmt: skip
        self._last = view
        return view

    def _read_lag(self) -> list[PartitionLag] | None:
        try:
            return self._lag.read()
        except KafkaException:
            return None  # shown as "unavailable"

    def close(self) -> None:
        self._lag.close()
        self._figures.close()


def run_top(settings: Settings, interval: float = 1.0) -> None:
    """Redraw every ``interval`` seconds on the terminal's alternate screen until Ctrl-C."""
    console = Console()
    source = TopSource(settings)
    with Live(console=console, screen=True, auto_refresh=False, transient=True) as live:
        try:
            while True:
                live.update(render_top(source.read(), console.height), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            source.close()
