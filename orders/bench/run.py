"""One measured run of `orders bench`: its names, environment and children, and how the bench waits on it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from orders.bench.lanes import Lane
from orders.bench.settings import BenchSettings
from orders.core.redis_client import AnyRedis, connect, connect_server
from orders.stack.supervisor import Service


class BenchError(Exception):
    """The bench cannot go on (no free Redis database, a child died, a run stalled)."""


@dataclass
class Run:
    """One measured run's names and environment; ``settings`` is what this process uses for it."""

    settings: BenchSettings
    env: dict[str, str]
    lane: Lane
    dir: Path  # the workers' working directory (where the bench probe writes)
    services: list[Service] = field(default_factory=list)
    ready_checks: list[Callable[[], bool]] = field(default_factory=list)
    workers: list[Service] = field(default_factory=list)
    bridges: list[Service] = field(default_factory=list)
    # Processes measured with the run's besides the rig's services (a Sentinel set it writes to).
    extra_pids: dict[str, list[int]] = field(default_factory=dict)
    cluster_aggregate: bool = False  # the aggregate on the rig's Redis Cluster (orders/bench/shards.py)

    @property
    def queue(self) -> str:
        return self.settings.celery_queue

    def server(self) -> redis.Redis:
        """The run's aggregate as one server's client (a ValueError on a Cluster): for the no-op ceilings,
        whose queue lives in the run's own database."""
        return connect_server(self.settings.redis_url)

    def redis(self) -> AnyRedis:
        """The run's aggregate: one Redis, a Sentinel-managed one or a Cluster (the readers take any)."""
        return connect(self.settings.redis_url)

    def check_alive(self) -> None:
        """Raise BenchError with its log tail if one of this run's children exited."""
        for service in self.services:
            if not service.running():
                raise BenchError(f"{service.name} exited during the run; its log:\n{service.tail(30)}")

    def stop_workers(self) -> None:
        """SIGTERM the workers and wait: a probed worker writes its file as it shuts down."""
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            assert worker.proc is not None
            code: int | None
            try:
                code = worker.proc.wait(20)
            except subprocess.TimeoutExpired:
                code = worker.stop(grace=1)
            if code != 0:
                raise BenchError(f"{worker.name} exited {code} when stopped; its log:\n{worker.tail(30)}")


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, run: Run, interval: float = 0.02
) -> None:
    """Poll ``condition`` until true; BenchError if ``timeout`` passes or a child of ``run`` dies."""
    deadline = time.monotonic() + timeout
    while not condition():
        run.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
