"""`orders registry`: run the dev schema registry."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8081, show_default=True, help="Port to listen on.")
def registry(host: str, port: int) -> None:
    """Run the dev schema registry (Confluent REST API subset, state in REDIS_URL)."""
    from orders.core.process import start_process
    from orders.registry.server import serve

    serve(start_process(), host, port)
