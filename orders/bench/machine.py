"""What `orders bench` records about the machine and the software it measured."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis

DISTRIBUTIONS = ("celery", "kombu", "redis", "hiredis", "confluent-kafka", "fastavro")


def machine_facts(client: redis.Redis, broker: str) -> dict[str, Any]:
    """CPU, cores, OS, Python, library versions, Redis version and persistence, the Kafka broker."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in DISTRIBUTIONS},
        "librdkafka": _librdkafka(),
        "redis_server": _redis_server(client),
        "broker": broker,
        "load": [round(os.getloadavg()[0], 2)],
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def package_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _librdkafka() -> str:
    from confluent_kafka import libversion

    return str(libversion()[0])


def _redis_server(client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    persistence = client.info("persistence")
    facts: dict[str, Any] = {
        "version": info.get("redis_version"),
        "aof": bool(persistence.get("aof_enabled")),
    }
    with contextlib.suppress(redis.ResponseError):  # CONFIG may be disabled on a managed Redis
        facts["appendfsync"] = client.config_get("appendfsync").get("appendfsync")
    return facts
