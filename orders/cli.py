"""The `orders` command: one subcommand per process or tool, each defined beside the code it runs.

`orders bridge` is the product and needs only the base install. Every tool command is imported when it
runs (click's lazy-group pattern), so a tool's dependencies (an extra, see pyproject.toml) are needed only
by that tool; one that is missing becomes a message naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any, NoReturn

import click

from orders.core.process import show_library_logs
from orders.core.settings import SettingsError

OURS = frozenset({"orders", "bridge", "worker"})
# name -> (module, attribute, the extra of the tool it belongs to: where its module's imports come from)
TOOLS: dict[str, tuple[str, str, str]] = {
    "registry": ("orders.registry.command", "registry", "registry"),
    "produce": ("orders.produce", "produce", "tools"),
    "stats": ("orders.stats", "stats", "tools"),
    "reset": ("orders.reset", "reset", "tools"),
    "reshard": ("orders.reshard", "reshard", "tools"),
    "up": ("orders.stack.command", "up", "stack"),
    "env": ("orders.stack.command", "env_command", "stack"),
    "dlq": ("orders.dlq.command", "dlq", "tools"),
    "bench": ("orders.bench.command", "bench", "bench"),
    "dashboard": ("orders.dashboard.command", "dashboard", "dashboard"),
    "top": ("orders.dashboard.command", "top", "dashboard"),
    "trace": ("orders.trace.command", "trace_command", "tools"),
}


def missing_library(exc: ModuleNotFoundError) -> str | None:
    """The third-party module a failed import lacked; None when it was one of ours (a bug, not an extra)."""
    top = (exc.name or "").partition(".")[0]
    return top if top and top not in OURS else None


def needs_extra(command: str, extra: str, module: str) -> click.ClickException:
    return click.ClickException(
        f"`orders {command}` needs the '{extra}' extra ({module} is not installed): "
        f"pip install 'orders-pipeline[{extra}]'"
    )


def unavailable_command(name: str, extra: str, module: str) -> click.Command:
    """Stands in for a tool whose module cannot be imported: listed in --help, explains itself when run."""

    def explain(**_: Any) -> NoReturn:
        raise needs_extra(name, extra, module)

    return click.Command(
        name,
        callback=explain,
        help=f"(not installed: pip install 'orders-pipeline[{extra}]')",
        add_help_option=False,  # `orders NAME --help` explains too
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class OrdersGroup(click.Group):
    """Loads a tool's command on use; turns a bad configuration or a missing extra into a clear message."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *TOOLS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in TOOLS:
            return super().get_command(ctx, cmd_name)
        module, attribute, extra = TOOLS[cmd_name]
        try:
            command = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as exc:
            lacking = missing_library(exc)
            if lacking is None:
                raise
            return unavailable_command(cmd_name, extra, lacking)
        assert isinstance(command, click.Command), f"{module}.{attribute} is not a click command"
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from exc
        except ModuleNotFoundError as exc:  # a tool imports its heavier modules when it runs
            lacking, name = missing_library(exc), ctx.invoked_subcommand
            if lacking is None or name not in TOOLS:
                raise
            raise needs_extra(name, TOOLS[name][2], lacking) from exc


@click.group(cls=OrdersGroup)
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' log lines too (HTTP requests, ...).")
def main(verbose: bool) -> None:
    """Kafka -> Celery order pipeline."""
    if verbose:
        show_library_logs()


@main.command()
def bridge() -> None:
    """Consume ORDERS_TOPIC and hand each order to the Celery task (a consumer group member)."""
    from bridge.main import run_bridge
    from bridge.settings import BridgeSettings
    from orders.core.process import start_process

    run_bridge(start_process(BridgeSettings))


if __name__ == "__main__":
    main()
