"""`orders registry`: run the dev schema registry."""

from __future__ import annotations

from pathlib import Path

import click

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8081, show_default=True, help="Port to listen on.")
@click.option("--certfile", type=FILE, help="Serve HTTPS with this PEM certificate (chain).")
@click.option("--keyfile", type=FILE, help="The certificate's PEM private key (if not in --certfile).")
def registry(host: str, port: int, certfile: Path | None, keyfile: Path | None) -> None:
    """Run the dev schema registry (Confluent REST API subset).

    Its state is in REGISTRY_REDIS_URL (by default database 2 of REDIS_URL's server), never in the
    aggregate's database.

    REGISTRY_BASIC_AUTH (user:password) makes every request need those credentials, as clients send
    them with SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO; listening beyond loopback requires it.
    """
    from orders.core.process import start_process
    from orders.registry.access import RegistryStartError
    from orders.registry.server import serve
    from orders.registry.settings import RegistrySettings

    try:
        serve(start_process(RegistrySettings), host, port, certfile, keyfile)
    except RegistryStartError as exc:
        raise click.ClickException(str(exc)) from exc
