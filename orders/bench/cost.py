"""What a measured run costs: CPU seconds of every process in it (psutil), and Redis' own time per command.

A run's processes are grouped by component (producer, broker, bridge, workers, Redis, registry). CPU is
user + system time over the measured window, of each process and its descendants (RabbitMQ's
``beam.smp`` runs under a shell wrapper). Redis' server time comes from ``INFO commandstats``: the
microseconds it spent executing commands, without the network I/O psutil's figure includes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil
import redis

# The components in table order; "producer" is the bench's own producer process.
# redis_shard_*: the bench's Redis Cluster (orders/bench/shards.py), each primary apart, replicas together.
SHARD_NODES = ("redis_shard_node_0", "redis_shard_node_1", "redis_shard_node_2", "redis_shard_replicas")
COMPONENTS = ("producer", "broker", "bridge", "workers", "celery_broker", "redis", "redis_ha", *SHARD_NODES,
              "registry")  # fmt: skip
LABELS = {
    "producer": "producer", "broker": "Kafka broker", "bridge": "bridge", "workers": "workers",
    "celery_broker": "RabbitMQ", "redis": "Redis", "redis_ha": "Redis (Sentinel set)", "registry": "registry",
    "redis_shard_node_0": "Cluster primary 0", "redis_shard_node_1": "Cluster primary 1",
    "redis_shard_node_2": "Cluster primary 2", "redis_shard_replicas": "Cluster replicas",
}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants; 0 for a process that is gone."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in family:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class CpuMeter:
    """CPU seconds per component between :meth:`start` and :meth:`stop`."""

    pids: Mapping[str, Sequence[int]]
    _started: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._started = {pid: cpu_seconds(pid) for pids in self.pids.values() for pid in pids}

    def stop(self) -> dict[str, float]:
        return {
            component: sum(max(0.0, cpu_seconds(pid) - self._started.get(pid, 0.0)) for pid in pids)
            for component, pids in self.pids.items()
        }


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis' ``INFO commandstats``: command -> (calls, microseconds spent executing it)."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(entry["calls"]), int(entry["usec"]))
        for name, entry in stats.items()
        if isinstance(entry, dict)
    }


def command_delta(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per command between two snapshots (commands not called are left out)."""
    delta = {}
    for name, (calls, usec) in after.items():
        was_calls, was_usec = before.get(name, (0, 0))
        if calls > was_calls:
            delta[name] = (calls - was_calls, usec - was_usec)
    return delta


@dataclass
class RunCost:
    """A measured window's cost: CPU per component, Redis' command time, and how many orders it moved.

    ``other_cores``: the machine's busy CPU in the window that was neither the run's processes nor the
    bench's own, in cores (other work sharing the machine; the figures above it are that much less sure).
    """

    orders: int
    cpu: dict[str, float]  # component -> CPU seconds in the window
    redis_commands: dict[str, tuple[int, int]]  # command -> (calls, usec)
    seconds: float
    other_cores: float = 0.0

    def per_order_us(self) -> dict[str, float]:
        """CPU µs per order for each component measured, "total", and "redis_server" (commandstats)."""
        scale = 1e6 / max(self.orders, 1)
        figures = {name: seconds * scale for name, seconds in self.cpu.items()}
        figures["total"] = sum(self.cpu.values()) * scale
        figures["redis_server"] = sum(usec for _, usec in self.redis_commands.values()) / max(self.orders, 1)
        figures["other_cores"] = self.other_cores
        return figures

    def commands_per_order(self) -> dict[str, float]:
        return {name: calls / max(self.orders, 1) for name, (calls, _) in self.redis_commands.items()}


def _own_cpu_seconds() -> float:
    """The bench process alone: its children are the run's processes, counted by component."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; psutil's non-idle times)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CostWindow:
    """Measures one window: psutil CPU of the processes, the Redis commandstats delta, and the machine's
    busy time that belongs to neither (other work on the machine)."""

    def __init__(self, pids: Mapping[str, Sequence[int]], client: redis.Redis) -> None:
        self._meter = CpuMeter({name: list(p) for name, p in pids.items() if p})
        self._client = client
        self._stats: dict[str, tuple[int, int]] = {}
        self._started = 0.0
        self._busy = self._own = 0.0

    def start(self) -> None:
        self._stats = command_stats(self._client)
        self._started = time.monotonic()
        self._meter.start()
        self._busy, self._own = busy_seconds(), _own_cpu_seconds()

    def stop(self, orders: int, extra_cpu: Mapping[str, float] | None = None) -> RunCost:
        """``extra_cpu``: CPU seconds reported by processes that exit before the window ends."""
        busy, own = busy_seconds() - self._busy, _own_cpu_seconds() - self._own
        cpu = self._meter.stop()
        seconds = time.monotonic() - self._started
        accounted = own + sum(cpu.values()) + sum((extra_cpu or {}).values())
        other = max(0.0, busy - accounted) / max(seconds, 1e-3)
        cpu.update(extra_cpu or {})
        stats = command_delta(self._stats, command_stats(self._client))
        return RunCost(orders, cpu, stats, seconds, other)
