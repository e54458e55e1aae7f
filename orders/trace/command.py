"""`orders trace ORDER_ID`: find the order's traces through Zipkin's API and print each as a timeline."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from orders.core.process import start_process


@click.command("trace")
@click.argument("order_id")
@click.option(
    "--url", help="The trace backend's root URL [default: the Zipkin endpoint's server, or TRACES_URL]."
)
@click.option("--json", "as_json", is_flag=True, help="The rows of each trace as JSON.")
def trace_command(order_id: str, url: str | None, as_json: bool) -> None:
    """Show ORDER_ID's path: each hop, attempt, wait and outcome, with times (one table per trace).

    Exits 1 when the backend has no trace of the order (not sampled, not exported yet, or aged out).
    """
    from rich.console import Console

    from orders.core.tracing_settings import trace_link
    from orders.trace.query import TraceQueryError, traces_of_order
    from orders.trace.settings import TraceSettings
    from orders.trace.timeline import timeline
    from orders.trace.view import render_trace

    settings = start_process(TraceSettings)
    base = (url or settings.traces_api or "").rstrip("/")
    if not base:
        raise click.ClickException(
            "no trace backend known: set TRACES_URL (or OTEL_EXPORTER_ZIPKIN_ENDPOINT) or pass --url"
        )
    try:
        traces = traces_of_order(base, order_id)
    except TraceQueryError as exc:
        raise click.ClickException(f"could not query the trace backend: {exc}") from exc
    if not traces:
        click.echo(
            f"no trace of order {order_id} at {base}: it was not sampled (OTEL_TRACES_SAMPLER), its spans "
            "have not been exported yet, or the backend no longer keeps them",
            err=True,
        )
        raise SystemExit(1)
    if as_json:
        shown = [{"trace_id": t[0].trace_id, "rows": [asdict(r) for r in timeline(t)]} for t in traces]
        click.echo(json.dumps(shown, indent=2))
        return
    console = Console()
    for spans in traces:
        console.print(render_trace(order_id, spans, trace_link(base, spans[0].trace_id)))
