"""`orders up` (the whole pipeline on this machine) and `orders env` (its endpoints as shell exports)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource


@click.command()
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (one solo pool each).")
@click.option("--no-producer", is_flag=True, help="Do not start the demo producer.")
@click.option("--rate", default=5.0, show_default=True, help="Demo producer: orders per second.")
@click.option("--failure-rate", default=0.1, show_default=True, help="Injected transient failure rate, 0-1.")
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option(
    "--flower-max-tasks", default=10_000, show_default=True,
    help="Tasks Flower keeps in memory (about 6 KB each): its memory bound.",
)  # fmt: skip
@click.option("--no-dashboard", is_flag=True, help="Do not start the web dashboard.")
@click.option(
    "--broker", type=click.Choice(["tansu", "kafka"]), default="tansu", show_default=True,
    help="tansu: in memory, starts at once. kafka: Apache Kafka (KRaft) keeping its log in --data-dir.",
)  # fmt: skip
@click.option("--kafka-port", default=9092, show_default=True, help="Kafka broker port.")
@click.option("--redis-port", default=6379, show_default=True, help="redis-server port.")
@click.option("--registry-port", default=8081, show_default=True, help="Schema registry port.")
@click.option("--flower-port", default=5555, show_default=True, help="Flower port.")
@click.option("--dashboard-port", default=8050, show_default=True, help="Dashboard port.")
@click.option("--tracing", is_flag=True, help="Start Zipkin; every process exports its spans there.")
@click.option("--zipkin-port", default=9411, show_default=True, help="Zipkin port (UI at /zipkin/).")
@click.option(
    "--metrics-port", default=9100, show_default=True,
    help="The bridge's /metrics; worker N serves on this port + N.",
)  # fmt: skip
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Keep Redis' data (and Apache Kafka's log with --broker kafka) here between runs.",
)  # fmt: skip
@click.pass_context
def up(ctx: click.Context, no_producer: bool, no_flower: bool, no_dashboard: bool, **options: Any) -> None:
    """Run the whole pipeline on this machine, no Docker: Ctrl-C stops everything in order.

    Each service takes its usual port; one that is taken falls back to a free port, and the summary
    says so. A port given on the command line must be free (0 picks any free one).
    """
    from orders.core.process import start_process
    from orders.core.settings import Settings
    from orders.stack.stack import StackError, StackOptions
    from orders.stack.up import run_stack

    settings = start_process(Settings)
    explicit = frozenset(
        name.removesuffix("_port")
        for name in options
        if name.endswith("_port") and ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    )
    opts = StackOptions(
        producer=not no_producer, flower=not no_flower, dashboard=not no_dashboard, explicit_ports=explicit,
        **options,
    )  # fmt: skip
    try:
        sys.exit(run_stack(settings, opts))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("env")
def env_command() -> None:
    """Print the running `orders up` stack's endpoints as shell exports: eval "$(orders env)".

    Its URLs (the /metrics of the bridge and each worker among them) follow as comments.
    """
    from orders.stack.state import read_state

    state = read_state()
    if state is None:
        raise click.ClickException("no `orders up` is running")
    for name, value in dict(state["env"]).items():  # type: ignore[call-overload]
        click.echo(f"export {name}={shlex.quote(value)}")
    for name, url in dict(state.get("urls", {})).items():  # type: ignore[call-overload]
        click.echo(f"# {name}: {url}")
