"""`orders stats`: the aggregate's snapshot as a rich table or as JSON."""

from __future__ import annotations

import json
from decimal import Decimal

import click
import redis
from rich.console import Console, Group, RenderableType
from rich.table import Table

from orders.core.aggregate import Aggregate, Snapshot
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


def _products_table(snapshot: Snapshot) -> Table:
    table = Table(title="Per product", title_justify="left")
    table.add_column("product")
    table.add_column("count", justify="right")
    table.add_column("average", justify="right")
    for name, product in snapshot.products.items():
        table.add_row(name, str(product.count), _shown(product.average))
    return table


def render_stats(snapshot: Snapshot) -> RenderableType:
    """Totals, averages and counters, then one row per product."""
    return Group(_totals_table(snapshot), _products_table(snapshot))


def stats_json(snapshot: Snapshot) -> str:
    """The snapshot as JSON; money as decimal strings so no float ever rounds it."""
    return json.dumps(snapshot.to_json_dict(), indent=2)


def show_stats(settings: Settings, as_json: bool) -> None:
    """Read the aggregate at ``settings.redis_url`` and print it; redis errors propagate."""
    with redis.Redis.from_url(settings.redis_url) as client:
        snapshot = Aggregate(client).snapshot()
    if as_json:
        click.echo(stats_json(snapshot))
    else:
        Console().print(render_stats(snapshot))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def stats(as_json: bool) -> None:
    """Print the running average and counters kept in Redis."""
    from orders.core.process import start_process

    show_stats(start_process(), as_json)
