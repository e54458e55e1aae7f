"""The `orders` command: one subcommand per process of the pipeline."""

from __future__ import annotations

import logging

import click

from bridge.settings import Settings


def _settings() -> Settings:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


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


if __name__ == "__main__":
    main()
