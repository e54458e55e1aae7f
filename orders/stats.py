"""`orders stats`: the aggregate's snapshot, dead letters by stage and the consumer lag, as tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import click
from confluent_kafka import KafkaException
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from orders.core.aggregate import Aggregate, Snapshot
from orders.core.lag import LagReader, PartitionLag, lag_json
from orders.core.redis_client import connect
from orders.core.settings import Settings


def _shown(value: Decimal | None) -> str:
    return "-" if value is None else str(value)


def _totals_table(snapshot: Snapshot) -> Table:
    table = Table(title="Orders", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("count", str(snapshot.count)),
        ("sum", str(snapshot.sum)),
        ("average", _shown(snapshot.average)),
        ("min", _shown(snapshot.min)),
        ("max", _shown(snapshot.max)),
        (f"last {snapshot.last100_size} average", _shown(snapshot.last100_average)),
    ]
    rows += [(name, str(value)) for name, value in snapshot.counters.items()]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _stages_table(snapshot: Snapshot) -> Table:
    table = Table(title="Dead letters by stage", title_justify="left")
    table.add_column("stage")
    table.add_column("dead letters", justify="right")
    for stage, count in snapshot.dlq_stages.items():
        table.add_row(stage, str(count))
    return table


def _lag_table(lags: Sequence[PartitionLag] | None, error: str) -> RenderableType:
    if lags is None:
        return Text(f"Consumer lag: unavailable ({error})", style="yellow")
    table = Table(title=f"Consumer lag (total {sum(p.lag for p in lags)})", title_justify="left")
    for name in ("partition", "high watermark", "committed", "lag"):
        table.add_column(name, justify="right")
    for p in lags:
        table.add_row(
            str(p.partition), str(p.high), "-" if p.committed is None else str(p.committed), str(p.lag)
        )
    return table


def _products_table(snapshot: Snapshot) -> Table:
    table = Table(title="Per product", title_justify="left")
    table.add_column("product")
    table.add_column("count", justify="right")
    table.add_column("average", justify="right")
    for name, product in snapshot.products.items():
        table.add_row(name, str(product.count), _shown(product.average))
    return table


def render_stats(
    snapshot: Snapshot, lags: Sequence[PartitionLag] | None = None, lag_error: str = "not read"
) -> RenderableType:
    """Totals, averages and counters; dead letters by stage; the consumer lag; one row per product."""
    return Group(
        _totals_table(snapshot),
        _stages_table(snapshot),
        _lag_table(lags, lag_error),
        _products_table(snapshot),
    )


def stats_json(snapshot: Snapshot, lag: dict[str, Any] | None = None) -> str:
    """The snapshot (and the lag, when given) as JSON; money as decimal strings so no float rounds it."""
    shown = snapshot.to_json_dict()
    if lag is not None:
        shown["lag"] = lag
    return json.dumps(shown, indent=2)


def read_lag(settings: Settings) -> tuple[list[PartitionLag] | None, str]:
    """The bridge group's lag per partition, or None and why (the broker did not answer in time)."""
    reader = LagReader(settings)
    try:
        return reader.read(), ""
    except KafkaException as exc:
        return None, f"kafka: {exc}"
    finally:
        reader.close()


def show_stats(settings: Settings, as_json: bool) -> None:
    """Read the aggregate at ``settings.redis_url`` and the lag from Kafka, and print them.

    Redis errors propagate; Kafka not answering shows the lag as unavailable.
    """
    with connect(settings.redis) as client:
        snapshot = Aggregate(client).snapshot()
    lags, error = read_lag(settings)
    if as_json:
        click.echo(stats_json(snapshot, {**lag_json(lags), **({"error": error} if error else {})}))
    else:
        Console().print(render_stats(snapshot, lags, error))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def stats(as_json: bool) -> None:
    """Print the running average, counters, dead letters by stage and the consumer lag."""
    from orders.core.process import start_process

    show_stats(start_process(Settings), as_json)
