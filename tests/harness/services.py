"""The services the tests run on, started by the launchers `orders up` uses (orders/stack/services.py)."""

from __future__ import annotations

from pathlib import Path

from orders.stack import services as launchers
from orders.stack.services import (
    ApacheKafka,
    Running,
    Unavailable,
    ensure_kafka_jars,
    start_registry,
    start_tansu,
)
from orders.stack.zipkin import start_zipkin

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_redis(log_dir: Path, extra_args: tuple[str, ...] = ()) -> Running:
    """redis-server with room for a database per test (db 0 holds the registry's schemas)."""
    return launchers.start_redis(log_dir, extra_args=("--databases", "1024", *extra_args))


__all__ = [
    "REPO_ROOT",
    "ApacheKafka",
    "Running",
    "Unavailable",
    "ensure_kafka_jars",
    "start_redis",
    "start_registry",
    "start_tansu",
    "start_zipkin",
]
