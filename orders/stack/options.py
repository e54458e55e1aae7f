"""What `orders up` is asked to start, and the secrets it makes for one run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orders.stack.processes import FLOWER_MAX_TASKS


@dataclass(frozen=True)
class StackOptions:
    """What `orders up` starts. Ports default to the ecosystem's own; 0 means any free port."""

    workers: int = 2
    producer: bool = True
    rate: float = 5.0
    failure_rate: float = 0.1
    flower: bool = True
    # Tasks Flower keeps in memory, which bounds its memory (processes.FLOWER_MAX_TASKS).
    flower_max_tasks: int = FLOWER_MAX_TASKS
    kafka_port: int = 9092
    redis_port: int = 6379
    registry_port: int = 8081
    flower_port: int = 5555
    dashboard: bool = True
    dashboard_port: int = 8050
    # The bridge's /metrics; worker N serves on the next port up (9101, 9102, ...), as in compose.
    metrics_port: int = 9100
    data_dir: Path | None = None
    partitions: int = 3
    # "tansu" (in memory, starts at once) or "kafka" (Apache Kafka in KRaft mode, its log in data_dir).
    broker: Literal["tansu", "kafka"] = "tansu"
    # Zipkin (orders/stack/zipkin.py) and every process exporting its spans to it (`--tracing`).
    tracing: bool = False
    zipkin_port: int = 9411
    # Port options the user gave: taken, they stop start-up instead of falling back to a free port.
    explicit_ports: frozenset[str] = frozenset()


@dataclass(frozen=True, repr=False)
class RunSecrets:
    """Random credentials for one `orders up`: nothing shipped, nothing reused between runs."""

    redis_password: str = field(default_factory=lambda: secrets.token_hex(24))
    registry_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    flower_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    dashboard_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def registry_auth(self) -> str:
        return f"registry:{self.registry_password}"

    @property
    def flower_auth(self) -> str:
        return f"orders:{self.flower_password}"


def with_credentials(url: str, user_info: str) -> str:
    """``http://host:port`` -> ``http://user:password@host:port`` (for curl and browsers)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user_info}@{rest}"
