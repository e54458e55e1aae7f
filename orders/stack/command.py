"""`orders up` (the whole pipeline on this machine) and `orders env` (its endpoints as shell exports)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click


@click.command()
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
    from orders.core.process import start_process
    from orders.stack.stack import StackError, StackOptions, run_stack

    settings = start_process()
    opts = StackOptions(producer=not no_producer, flower=not no_flower, dashboard=not no_dashboard, **options)
    try:
        sys.exit(run_stack(settings, opts))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("env")
def env_command() -> None:
    """Print the running `orders up` stack's endpoints as shell exports: eval "$(orders env)"."""
    from orders.stack.stack import read_state

    state = read_state()
    if state is None:
        raise click.ClickException("no `orders up` is running")
    for name, value in dict(state["env"]).items():  # type: ignore[call-overload]
        click.echo(f"export {name}={shlex.quote(value)}")
