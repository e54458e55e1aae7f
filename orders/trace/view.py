"""One trace's timeline as a rich table."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from orders.trace.query import Span
from orders.trace.timeline import timeline


def render_trace(order_id: str, spans: Sequence[Span], link: str | None) -> Table:
    rows = timeline(spans)
    total = max(s.end_us for s in spans) - min(s.start_us for s in spans)
    title = f"order {order_id}: trace {spans[0].trace_id}, {len(spans)} spans, {total / 1e6:.3f} s"
    table = Table(title=title, title_justify="left", caption=link, caption_justify="left")
    for column, justify in (
        ("at", "right"),
        ("took", "right"),
        ("service", "left"),
        ("hop", "left"),
        ("detail", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        took = "" if row.duration_ms is None else f"{row.duration_ms:.1f} ms"
        hop = Text(
            "  " * row.depth + row.what,
            style="bold red" if row.error else ("dim" if row.duration_ms is None else ""),
        )
        table.add_row(f"{row.at_ms / 1000:.3f} s", took, row.service, hop, row.detail)
    return table
