"""What the replicated-Redis scenarios (22a-22e) share: lag injected into replicas, a failover timed, and
/healthz watched through an outage.

The Sentinel set comes from the session fixture ``redis_sentinel_cluster`` (tests/harness/ha_fixtures.py):
three nodes on the test network, each a data node and a Sentinel; down-after 1 s. The pipeline's
processes run on the host and reach the nodes through the network's bridge.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from orders.stack.processes import healthz
from orders.stack.redis_ha import RedisNode
from orders.stack.redis_sentinel import SentinelSet
from orders.stack.supervisor import Service, wait_for
from tests.harness.netns import TestNetwork
from tests.reliability.accounting import Accounting, count_or_zero
from tests.reliability.scenario import Scenario

# What the shipped configurations set (docker-compose.ha.yml): a primary refuses writes once no replica
# acknowledged for this long.
MIN_REPLICAS = (1, 10)
# How long the primary takes writes its replicas never get: the reproduction used 3 s.
LAG_SECONDS = 3.0
# A visibility timeout just above its floor (20 s): handed-back orders whose reject never reached the
# broker come back soon.
VISIBILITY = "21"


@contextlib.contextmanager
def frozen(nodes: Sequence[RedisNode]) -> Iterator[None]:
    """SIGSTOP the nodes (their links stay open: the primary sees them fall silent, not leave)."""
    for node in nodes:
        node.pause()
    try:
        yield
    finally:
        for node in nodes:
            node.resume()


def cut_from_replicas(ha: SentinelSet, network: TestNetwork) -> RedisNode:
    """Drop every packet between the primary's node and the replicas' (its clients on the host still
    reach it); returns the primary. Its writes from now on reach no replica.

    Freezing the replicas (SIGSTOP) instead lags them less than it seems: the kernel still takes the
    replication stream into their sockets' buffers, and a thawed replica applies it (a run without the
    aggregate's WAIT lost 348 orders once and none the next time).
    """
    primary = ha.primary()
    node = network.node_at(primary.host.address)
    for replica in ha.replicas():
        network.cut(node, network.node_at(replica.host.address))
    return primary


def kill_primary_behind_its_replicas(
    ha: SentinelSet, network: TestNetwork, lag: float = LAG_SECONDS
) -> tuple[RedisNode, float]:
    """Cut the primary from its replicas, let it take writes for ``lag`` seconds, then SIGKILL it.

    Returns the old primary and when the cut began. The two Sentinels beside the replicas lose it with
    the cut, so Sentinel promotes a replica (one without those writes) ~2.3 s into the cut.
    """
    cut_at = time.monotonic()
    old = cut_from_replicas(ha, network)
    time.sleep(lag)
    old.kill()
    return old, cut_at


def fail_over_mid_run(
    s: Scenario, ha: SentinelSet, network: TestNetwork, producer: Service, n: int
) -> tuple[float, Accounting]:
    """Scenarios 22a and 22b: once a quarter of the ``n`` orders is counted, the primary dies behind its
    replicas (:func:`kill_primary_behind_its_replicas`); the run goes on until every order settled.

    Returns the seconds from the cut to the promotion, and the settled figures.
    """
    aggregate = s.aggregate  # follows the failover itself (a Sentinel URL)
    wait_for(lambda: count_or_zero(aggregate) > n // 4, 60, "orders flowing")
    old, cut_at = kill_primary_behind_its_replicas(ha, network)
    ha.wait_for_failover(old, timeout=30)
    promoted = time.monotonic() - cut_at
    produced = s.produced(producer, n)
    to_count = n - len(s.expected_dlq(list(produced)))
    s.recovery.measure("failover", cut_at, lambda: count_or_zero(aggregate), 120,
                       lambda: count_or_zero(aggregate) >= to_count)  # fmt: skip
    return promoted, s.settle(produced)


@dataclass
class HealthWatch:
    """Polls the /healthz of some processes in the background: (seconds since start, name, status)."""

    services: dict[str, Service]
    interval: float = 0.25
    seen: list[tuple[float, str, int | None, dict[str, object]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthWatch:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="healthz-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, service in self.services.items():
                status, body = healthz(int(service.env["METRICS_PORT"]), timeout=3.0)
                self.seen.append((time.monotonic() - self._started, name, status, body))
            self._stop.wait(self.interval)

    def unhealthy(self, name: str) -> list[tuple[float, dict[str, object]]]:
        """When ``name`` answered 503, and what it said it waited for."""
        return [(at, body) for at, who, status, body in self.seen if who == name and status == 503]

    def healthy_again_at(self, name: str, after: float) -> float | None:
        """The first 200 of ``name`` after ``after`` (seconds since the watch started)."""
        return next(
            (at for at, who, status, _ in self.seen if who == name and at > after and status == 200), None
        )

    def since_start(self, monotonic: float) -> float:
        return monotonic - self._started
