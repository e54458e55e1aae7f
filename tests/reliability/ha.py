"""What the replicated-Redis scenarios (22a-22f) share: lag injected into replicas, a failover timed, and
/healthz watched through an outage.

The Sentinel set comes from the session fixture ``redis_sentinel_cluster`` (tests/harness/ha_fixtures.py):
three nodes on the test network, each a data node and a Sentinel; down-after 1 s. The Cluster (22f) is
``redis_cluster``: six nodes, cluster-node-timeout 1 s. The pipeline's
processes run on the host and reach the nodes through the network's bridge.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from orders.stack.processes import healthz
from orders.stack.redis_cluster import RedisClusterSet
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


def cut_from(network: TestNetwork, primary: RedisNode, replicas: Sequence[RedisNode]) -> None:
    """Drop every packet between ``primary``'s node and the ``replicas``' (its clients on the host still
    reach it). Its writes from now on reach none of them.

    Freezing the replicas (SIGSTOP) instead lags them less than it seems: the kernel still takes the
    replication stream into their sockets' buffers, and a thawed replica applies it (a run without the
    aggregate's WAIT lost 348 orders once and none the next time).
    """
    node = network.node_at(primary.host.address)
    for replica in replicas:
        network.cut(node, network.node_at(replica.host.address))


def cut_from_replicas(ha: SentinelSet, network: TestNetwork) -> RedisNode:
    """Cut the Sentinel set's primary from its replicas (:func:`cut_from`); returns the primary."""
    primary = ha.primary()
    cut_from(network, primary, ha.replicas())
    return primary


def kill_behind(
    network: TestNetwork, primary: RedisNode, replicas: Sequence[RedisNode], lag: float = LAG_SECONDS
) -> float:
    """Cut ``primary`` from its ``replicas``, let it take writes for ``lag`` seconds, then SIGKILL it.

    Returns when the cut began. A replica promoted now has none of the writes made during the cut.
    """
    cut_at = time.monotonic()
    cut_from(network, primary, replicas)
    time.sleep(lag)
    primary.kill()
    return cut_at


def kill_primary_behind_its_replicas(
    ha: SentinelSet, network: TestNetwork, lag: float = LAG_SECONDS
) -> tuple[RedisNode, float]:
    """:func:`kill_behind` on the Sentinel set's primary; returns it and when the cut began.

    The two Sentinels beside the replicas lose it with the cut, so Sentinel promotes a replica (one
    without those writes) ~2.3 s into the cut.
    """
    primary = ha.primary()
    return primary, kill_behind(network, primary, ha.replicas(), lag)


# What a fail-over step returns: when the cut began, and when a replica was promoted (time.monotonic()).
FailOver = Callable[[], tuple[float, float]]


def sentinel_failover(ha: SentinelSet, network: TestNetwork) -> FailOver:
    """The Sentinel set's primary killed behind its replicas, until a replica is promoted."""

    def fail_over() -> tuple[float, float]:
        old, cut_at = kill_primary_behind_its_replicas(ha, network)
        ha.wait_for_failover(old, timeout=30)
        return cut_at, time.monotonic()

    return fail_over


def cluster_failover(cluster: RedisClusterSet, network: TestNetwork, key: str) -> FailOver:
    """The Cluster primary owning ``key`` killed behind its replica, until that replica is promoted; then
    the dead node is restarted, as a supervisor would, and rejoins as the promoted one's replica.

    Its replica is cut from it, but the other primaries still reach it, so no failure is agreed on
    (cluster-node-timeout) until the SIGKILL: the promotion comes ~1-2 s after the kill. The restart
    is needed: with one replica per primary, the promoted node has none, so min-replicas-to-write 1
    (and the aggregate's WAIT) refuses every write of its shards until the old node is back and synced;
    orders are handed back meanwhile, not lost. It full-syncs, so the writes it took during the cut
    stay gone.
    """

    def fail_over() -> tuple[float, float]:
        primary = cluster.node_for_key(key)
        replica = cluster.replica_of(primary)
        cut_at = kill_behind(network, primary, [replica])
        cluster.wait_for_promotion(primary, timeout=30)
        promoted_at = time.monotonic()
        network.restore(network.node_at(primary.host.address), network.node_at(replica.host.address))
        primary.start()
        return cut_at, promoted_at

    return fail_over


def fail_over_mid_run(
    s: Scenario, producer: Service, n: int, fail_over: FailOver
) -> tuple[float, Accounting]:
    """Scenarios 22a, 22b and 22f: once a quarter of the ``n`` orders is counted, ``fail_over`` (e.g.
    :func:`sentinel_failover`) kills a primary behind its replicas until a replica is promoted; the run
    goes on until every order settled.

    Returns the seconds from the cut to the promotion, and the settled figures.
    """
    aggregate = s.aggregate  # follows the failover itself (a Sentinel or Cluster URL)
    wait_for(lambda: count_or_zero(aggregate) > n // 4, 60, "orders flowing")
    cut_at, promoted_at = fail_over()
    produced = s.produced(producer, n)
    to_count = n - len(s.expected_dlq(list(produced)))
    s.recovery.measure("failover", cut_at, lambda: count_or_zero(aggregate), 120,
                       lambda: count_or_zero(aggregate) >= to_count)  # fmt: skip
    return promoted_at - cut_at, s.settle(produced)


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
