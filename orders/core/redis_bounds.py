"""How long any one wait on Redis may take, and the TLS options of a URL, for every kind of Redis client.

Apart from orders/core/redis_client.py so that the Cluster client (orders/core/redis_cluster.py) builds
its nodes' connections with the same bounds without importing the module that imports it.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True)
class Bounds:
    """How long any one wait on Redis may take, in seconds (README: "Following a failover")."""

    connect_timeout: float = 1.0
    socket_timeout: float = 3.0
    health_check_interval: int = 2
    # TCP keepalive on idle connections: first probe after 2 s, then every 1 s, 3 unanswered = dead.
    keepalive_idle: int = 2
    keepalive_interval: int = 1
    keepalive_count: int = 3
    # A command is sent again at most this often after a connection error (never after a timeout).
    retries: int = 1
    # Each Sentinel answers (or is passed over) within this.
    sentinel_timeout: float = 1.0

    def connection_kwargs(self) -> dict[str, Any]:
        """redis-py's connection options for these bounds (kombu takes the same names, but ``retry``)."""
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
            "socket_keepalive_options": self.keepalive_options(),
            "health_check_interval": self.health_check_interval,
        }

    def keepalive_options(self) -> dict[int, int]:
        wanted = {"TCP_KEEPIDLE": self.keepalive_idle, "TCP_KEEPINTVL": self.keepalive_interval,
                  "TCP_KEEPCNT": self.keepalive_count}  # fmt: skip
        return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}

    def retry(self) -> Retry:
        """Connection errors only: the command never reached Redis, or its connection was dropped."""
        return Retry(NoBackoff(), self.retries, supported_errors=(redis.ConnectionError,))


DEFAULT_BOUNDS = Bounds()


def tls_kwargs(options: Mapping[str, str]) -> dict[str, Any]:
    """``ssl_*`` URL options as redis-py's keyword arguments (``ssl_check_hostname`` a bool)."""
    if not options:
        return {}
    kwargs: dict[str, Any] = {"ssl": True, **options}
    if "ssl_check_hostname" in options:
        kwargs["ssl_check_hostname"] = options["ssl_check_hostname"].lower() not in {"false", "0", "no"}
    return kwargs
