"""Replicated Redis for the tests and the bench: where a server runs, and one server with its faults.

:class:`Host` says where: an address to bind and announce (loopback, or a test network node's) and an
argv prefix that puts the process there (``ip netns exec NS`` for a namespace; tests/harness/netns.py).
So one launcher serves loopback and namespaces alike. :class:`RedisNode` is one redis-server, a data
node or (``sentinel=True``) a Sentinel, with a config file of its own: Sentinel rewrites it, and
:meth:`RedisNode.restart` starts the node again from it. Readiness is a PING, never a log line.

The sets built of these nodes: orders/stack/redis_sentinel.py (a primary, two replicas, three
Sentinels) and orders/stack/redis_cluster.py (three primaries with a replica each).

Faults for the scenarios: :meth:`RedisNode.kill` (SIGKILL, as a crash), :meth:`RedisNode.pause` and
:meth:`RedisNode.resume` (SIGSTOP/SIGCONT: a frozen node keeps its connections open, so its peers see
it fall silent, not leave: on loopback this is the silent fault; ``CLIENT KILL`` or ``DEBUG SLEEP`` are
seen at once), and :meth:`RedisNode.restart`. Cutting a link silently needs the test network.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orders.stack.services import Unavailable, private_file, redis_binary, redis_pings
from orders.stack.supervisor import Service, ServiceBacked, free_port, wait_for

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bounds of a client the harness talks to nodes with: a frozen or cut-off node must not hang a check.
CONNECT_TIMEOUT = 0.5
COMMAND_TIMEOUT = 2.0


@dataclass(frozen=True)
class Host:
    """Where a server runs: ``address`` to bind and announce, ``prefix`` to put its process there.

    ``dedicated``: the address is this host's alone (a namespace), so the standard ports are free there.
    """

    address: str = "127.0.0.1"
    prefix: tuple[str, ...] = ()
    dedicated: bool = False

    def port(self, standard: int) -> int:
        return standard if self.dedicated else free_port()


LOOPBACK = Host()


# A replica's first full sync right away: by default a diskless sync waits 5 s for more replicas.
FAST_SYNC = ("repl-diskless-sync yes", "repl-diskless-sync-delay 0")


def auth_lines(password: str | None) -> list[str]:
    """A data node's own password and the one it gives its primary (any node may become one)."""
    return [f"requirepass {password}", f"masterauth {password}"] if password else []


def redis_cli_binary() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise Unavailable("redis-cli is not on PATH: `apt-get install redis-tools` (Debian/Ubuntu)")
    return binary


class RedisNode(ServiceBacked):
    """One redis-server process on a :class:`Host`, configured by ``lines`` (redis.conf syntax).

    The config file is private (mode 0600, in a 0700 directory): it may hold passwords.
    """

    def __init__(
        self,
        name: str,
        host: Host,
        log_dir: Path,
        lines: Sequence[str],
        standard_port: int = 6379,
        password: str | None = None,
        sentinel: bool = False,
    ) -> None:
        self.name, self.host, self.password, self.sentinel = name, host, password, sentinel
        self.port = host.port(standard_port)
        self.dir = log_dir / name
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config_path = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        base = [f"port {self.port}", f"bind {host.address}", f"dir {self.dir}", "protected-mode no"]
        if not sentinel:
            # shutdown-timeout 0: a stop does not wait up to 10 s for replicas a partition took away
            base += ['save ""', "appendonly no", "shutdown-timeout 0"]
        self.lines = [*base, *lines]
        self._written: list[str] = []
        argv = [*host.prefix, redis_binary(), str(self.config_path)]
        # Debian's `redis-sentinel` is this same binary; `--sentinel` needs no second package.
        self.service = Service(name, [*argv, "--sentinel"] if sentinel else argv, log_dir)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host.address, self.port)

    def __repr__(self) -> str:
        return f"<{self.name} {self.host.address}:{self.port}>"

    def set_line(self, directive: str, value: str | None) -> None:
        """Replace (or with None drop) ``directive``'s line; takes effect at the next (re)start."""
        self.lines = [line for line in self.lines if line.split(" ", 1)[0] != directive]
        if value is not None:
            self.lines.append(f"{directive} {value}")

    def write_config(self) -> None:
        """Write :attr:`lines` if they changed since the last write. A Sentinel's rewrites of its own
        file (the current primary, the epoch, its peers) are kept across restarts so."""
        if self.lines != self._written:
            private_file(self.config_path, "\n".join(self.lines) + "\n")
            self._written = list(self.lines)

    def client(self, **options: Any) -> redis.Redis:
        """A client with short timeouts (``options`` override them)."""
        settings: dict[str, Any] = {
            # no retries: redis-py's default (3, with up to 10 s back-off) would turn one look at a
            # cut-off node into many seconds; every caller here polls anyway
            "retry": Retry(NoBackoff(), 0),
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": COMMAND_TIMEOUT,
            "decode_responses": True,
            **options,
        }
        return redis.Redis(self.host.address, self.port, password=self.password, **settings)

    def pings(self) -> bool:
        return redis_pings(self.client())

    def start(self, ready: Callable[[], bool] | None = None, timeout: float = 20) -> RedisNode:
        """Write the config and start; ready when it answers PING (or ``ready``)."""
        self.write_config()
        self.service.start(ready or self.pings, timeout=timeout)
        return self

    def restart(self, timeout: float = 20) -> RedisNode:
        """Stop it if it runs (SIGTERM), then start it again from its config."""
        self.service.stop(grace=5)
        return self.start(timeout=timeout)

    def info(self, section: str) -> dict[str, Any]:
        return dict(self.client().info(section))

    def role(self) -> str:
        """The role: "master", "slave" or "sentinel"; raises a redis error if it does not answer."""
        return str(self.client().execute_command("ROLE")[0])


def start_together(nodes: Sequence[RedisNode], timeout: float = 20) -> None:
    """Start every node, then wait until each answers: peers that start at once never see each other
    down (a Sentinel started alone deems the others down after ``down-after-milliseconds``)."""
    for node in nodes:
        node.start(ready=lambda: True)
    for node in nodes:
        wait_for(partial(_answers, node), timeout, f"{node.name} to answer")


def _answers(node: RedisNode) -> bool:
    if not node.running():
        raise RuntimeError(f"{node.name} exited; log:\n{node.service.tail()}")
    return node.pings()


def answer_or_none(call: Callable[[], T]) -> T | None:
    """``call()``'s answer, or None while the node cannot answer (down, frozen, cut off, loading)."""
    try:
        return call()
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return None


def wait_until(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``check`` (None when satisfied, else why not) with a bound; the timeout says the last why."""
    last: list[str | None] = [None]
    started = time.monotonic()

    def satisfied() -> bool:
        reason = check()
        if reason != last[0] and reason is not None:  # the log says what a slow wait waited for
            log.debug("%.2fs waiting for %s: %s", time.monotonic() - started, what, reason)
        last[0] = reason
        return reason is None

    try:
        wait_for(satisfied, timeout, what, interval=0.05)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}: {last[0]}") from None
