"""`orders reset`: start the running average afresh, clearing the aggregate and its counters only."""

from __future__ import annotations

import click

from orders.core.aggregate import Aggregate, clear_aggregate
from orders.core.control import CONTROL_KEY
from orders.core.redis_client import connect
from orders.core.settings import Settings, redact_url
from orders.core.shards import read_layout


def reset_aggregate(settings: Settings) -> int:
    """Delete the aggregate's keys in REDIS_URL; the failure-rate control stays. Returns how many."""
    with connect(settings.redis) as client:
        return clear_aggregate(client, keep=frozenset({CONTROL_KEY}))


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Clear the running average, its counters and dedupe markers (keys {orders}:* in REDIS_URL, and
    every other shard's).

    Nothing else: not the Celery queue, not the registry's schemas (REGISTRY_REDIS_URL), not the
    failure-rate control, not the aggregate's layout (its number of shards). Prefer this to FLUSHDB;
    run it while no orders flow, or some may count half.
    """
    from orders.core.process import start_process

    settings = start_process(Settings)
    with connect(settings.redis) as client:
        snapshot = Aggregate(client).snapshot()
        shards = read_layout(client).shards
    where = redact_url(settings.redis_url)
    question = (
        f"Clear the aggregate in {where} ({snapshot.count} orders counted, average {snapshot.average}, "
        f"counters {dict(snapshot.counters)}): every key of its {shards} shard(s) but the controls "
        "and the layout?"
    )
    if not yes and not click.confirm(question, default=False):
        raise click.ClickException("nothing cleared")
    click.echo(f"cleared the aggregate: {reset_aggregate(settings)} keys deleted from {where}")
