"""The `orders` command: one subcommand per process of the pipeline."""

from __future__ import annotations

import logging
import random
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis

from bridge.settings import Settings

log = logging.getLogger("orders")


def _settings() -> Settings:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def _on_shutdown_signals(stop: threading.Event | None = None, callback=None) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM and SIGINT ask for a clean stop instead of killing the process mid-batch."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; finishing up", signal.Signals(signum).name)
        if stop is not None:
            stop.set()
        if callback is not None:
            callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.group()
def main() -> None:
    """Kafka -> Celery order pipeline."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8081, show_default=True, help="Port to listen on.")
def registry(host: str, port: int) -> None:
    """Run the dev schema registry (Confluent REST API subset, state in REDIS_URL)."""
    from bridge.registry import serve

    serve(_settings(), host, port)


def _bridge_stats(settings: Settings, on_stats: Callable[[str], None]) -> dict[str, Any]:
    """librdkafka statistics every 5 s: the group watch always, per-partition lag when metrics are served."""
    from bridge.metrics import record_lag_from_stats

    def both(stats_json: str) -> None:
        on_stats(stats_json)
        record_lag_from_stats(stats_json)

    interval = settings.kafka_options.get("statistics.interval.ms", 5000)  # KAFKA_STATISTICS_INTERVAL_MS
    return {"stats_cb": both if settings.metrics_port else on_stats, "statistics.interval.ms": interval}


@main.command()
def bridge() -> None:
    """Consume ORDERS_TOPIC and hand each order to the Celery task (a consumer group member)."""
    from bridge.codec import OrderCodec
    from bridge.consumer import Bridge
    from bridge.dead_letter import DeadLetterPublisher
    from bridge.handoff import Handoff, create_sender
    from bridge.kafka import create_consumer, create_producer, create_registry_client
    from bridge.metrics import AggregateCollector, serve_metrics
    from worker.aggregate import Aggregate

    settings = _settings()
    log.info("bridge starting: %s", settings.redacted())
    dlq_producer = create_producer(
        settings, **{"message.timeout.ms": int(settings.dlq_delivery_timeout * 1000)}
    )
    aggregate = Aggregate(redis.Redis.from_url(settings.redis_url), settings.dedupe_ttl_seconds)
    serve_metrics(settings.metrics_port, AggregateCollector(aggregate))
    loop = Bridge(
        settings,
        lambda on_stats: create_consumer(settings, **_bridge_stats(settings, on_stats)),
        OrderCodec(create_registry_client(settings), settings.orders_topic),
        Handoff(
            create_sender(settings),
            settings.celery_queue,
            redis.Redis.from_url(settings.broker_url),
        ),
        DeadLetterPublisher(dlq_producer, settings.dlq_topic),
        aggregate.count_events,
    )
    _on_shutdown_signals(callback=loop.stop)
    loop.run()
    dlq_producer.flush(settings.dlq_delivery_timeout)


@main.command()
@click.option("--rate", default=10.0, show_default=True, help="Orders per second (0 = as fast as possible).")
@click.option("--count", default=0, show_default=True, help="Orders to send (0 = until stopped).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible products and prices.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def produce(rate: float, count: int, seed: int | None, quiet: bool) -> None:
    """Send random orders to ORDERS_TOPIC; exits non-zero if any delivery failed."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from bridge.codec import OrderCodec
    from bridge.kafka import create_producer, create_registry_client
    from bridge.producer import OrderProducer, Pacer, random_orders

    settings = _settings()
    stop = threading.Event()
    _on_shutdown_signals(stop)
    sender = OrderProducer(
        create_producer(settings),
        OrderCodec(create_registry_client(settings), settings.orders_topic),
        settings.orders_topic,
    )
    pacer = Pacer(rate)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=quiet) as progress:
        task = progress.add_task("producing", total=count or None, status="")
        for order in random_orders(random.Random(seed)):
            if stop.is_set() or (count and sender.sent >= count):
                break
            sender.send(order)
            tally = sender.tally
            progress.update(
                task,
                advance=1,
                status=f"sent {sender.sent}  delivered {tally.delivered}  failed {tally.failed}",
            )
            pacer.wait(stop)
    unreported = sender.finish()
    tally = sender.tally
    click.echo(f"sent {sender.sent}, delivered {tally.delivered}, failed {tally.failed + unreported}")
    if tally.failed or unreported:
        click.echo(f"delivery failed: {tally.last_error or 'no report before the timeout'}", err=True)
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def stats(as_json: bool) -> None:
    """Print the running average and counters kept in Redis."""
    from bridge.stats import show_stats

    show_stats(Settings.from_env(), as_json)


@main.command()
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (one solo pool each).")
@click.option("--no-producer", is_flag=True, help="Do not start the demo producer.")
@click.option("--rate", default=5.0, show_default=True, help="Demo producer: orders per second.")
@click.option("--failure-rate", default=0.1, show_default=True, help="Injected transient failure rate, 0-1.")
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the web dashboard.")
@click.option("--kafka-port", default=0, help="Tansu port (default: a free one).")
@click.option("--redis-port", default=0, help="redis-server port (default: a free one).")
@click.option("--registry-port", default=0, help="Schema registry port (default: a free one).")
@click.option("--flower-port", default=0, help="Flower port (default: a free one).")
@click.option("--dashboard-port", default=0, help="Dashboard port (default: a free one).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Keep Redis data here.")
def up(no_producer: bool, no_flower: bool, no_dashboard: bool, **options: Any) -> None:
    """Run the whole pipeline on this machine, no Docker: Ctrl-C stops everything in order."""
    from bridge.stack import StackError, StackOptions, run_stack

    settings = _settings()
    opts = StackOptions(producer=not no_producer, flower=not no_flower, dashboard=not no_dashboard, **options)
    try:
        sys.exit(run_stack(settings, opts))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("env")
def env_command() -> None:
    """Print the running `orders up` stack's endpoints as shell exports: eval "$(orders env)"."""
    from bridge.stack import read_state

    state = read_state()
    if state is None:
        raise click.ClickException("no `orders up` is running")
    for name, value in dict(state["env"]).items():  # type: ignore[call-overload]
        click.echo(f"export {name}={shlex.quote(value)}")


from bridge.dlq_commands import dlq  # noqa: E402 - registered last, kept out of the edits above

main.add_command(dlq)

from bridge.bench import bench  # noqa: E402 - registered last, like dlq

main.add_command(bench)

from bridge.dashboard_commands import dashboard, top  # noqa: E402 - the dashboards' commands

main.add_command(dashboard)
main.add_command(top)


if __name__ == "__main__":
    main()
