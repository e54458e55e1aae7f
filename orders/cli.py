"""The `orders` command: one subcommand per process or tool, each defined beside the code it runs."""

from __future__ import annotations

from typing import Any

import click

from orders.bench.command import bench
from orders.core.settings import SettingsError
from orders.dashboard.command import dashboard, top
from orders.dlq.command import dlq
from orders.produce import produce
from orders.registry.command import registry
from orders.reset import reset
from orders.stack.command import env_command, up
from orders.stats import stats
from orders.trace.command import trace_command


class OrdersGroup(click.Group):
    """Turns a bad configuration into a clear message and exit code 1, wherever it is found."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=OrdersGroup)
def main() -> None:
    """Kafka -> Celery order pipeline."""


@main.command()
def bridge() -> None:
    """Consume ORDERS_TOPIC and hand each order to the Celery task (a consumer group member)."""
    from bridge.main import run_bridge
    from bridge.settings import BridgeSettings
    from orders.core.process import start_process

    run_bridge(start_process(BridgeSettings))


for command in (registry, produce, stats, reset, up, env_command, dlq, bench, dashboard, top, trace_command):
    main.add_command(command)


if __name__ == "__main__":
    main()
