"""`orders dashboard` (the web page) and `orders top` (the terminal view); heavy imports happen on use."""

from __future__ import annotations

import click

from orders.core.process import start_process
from orders.core.settings import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8050, show_default=True, help="Port to listen on.")
def dashboard(host: str, port: int) -> None:
    """Serve the live web dashboard: figures, charts, health, demo producer and failure-rate controls.

    Listening beyond loopback needs DASHBOARD_TOKEN (the figures and controls then ask for it) and,
    on every interface, DASHBOARD_PUBLIC_URLS (the URLs browsers use; other Host headers are refused).
    """
    from orders.dashboard.access import DashboardError
    from orders.dashboard.server import run_dashboard
    from orders.dashboard.settings import DashboardSettings

    try:
        run_dashboard(start_process(DashboardSettings), host, port)
    except DashboardError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
def top(interval: float) -> None:
    """Show the pipeline's figures in the terminal, refreshed in place (Ctrl-C quits)."""
    from orders.dashboard.top import run_top

    run_top(start_process(Settings), interval)
