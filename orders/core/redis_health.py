"""Whether a process can reach the Redis servers it needs, for its /healthz: and if not, what it waits for.

A bridge or worker whose Redis is down, silently partitioned, or failing over answers /healthz with 503
and says which Redis, where it last found it, and the error, e.g.::

    {"ready": false, "redis": {"aggregate": "waiting for Sentinel primary 'orders' (3 Sentinels), last at
     10.213.7.2:6379: Timeout reading from socket"}}

Each target is PINGed through a client of its own from orders/core/redis_client.py (so a Sentinel URL is
followed to the current primary), with short bounds, at most once per ``interval`` however often
/healthz is asked. A change either way is logged once.

A Redis Cluster is healthy when every primary that owns a shard of the aggregate (each tag of the stored
layout, orders/core/shards.py) answers and says ``cluster_state:ok``: with N shards an order may go to
any of them, so one unreachable owner is enough to hand orders back. (A node serves no key while any
slot is uncovered, the default ``cluster-require-full-coverage yes``, so a dead primary anywhere shows
until its replica is promoted; asking each owner also catches one cut off from this process alone.)
The layout is read once it says more than one shard (it changes only with ``orders reshard``, run with
the pipeline stopped); while it says one (or is not written yet) it is read again at each probe. A
failed probe re-reads the slot map, so the next one asks the promoted replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from orders.core.redis_client import AnyRedis, Bounds, connect, describe, node_for, refresh_routes, where
from orders.core.redis_url import RedisUrl
from orders.core.settings import Settings
from orders.core.shards import Layout, read_layout

log = logging.getLogger(__name__)

PROBE_BOUNDS = Bounds(socket_timeout=1.0, connect_timeout=1.0, retries=0)
PROBE_INTERVAL = 1.0


class RedisReachability:
    """A readiness check (orders/core/metrics_server.py's ``Readiness``) over named Redis targets."""

    def __init__(
        self,
        targets: Mapping[str, RedisUrl],
        interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = dict(targets)
        self._clients: dict[str, AnyRedis] = {}
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._states: dict[str, str] = {}
        self._layouts: dict[str, Layout] = {}

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        """(every target answered, {"redis": {name: "ok" or what it waits for}})."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._interval:
                self._states = {name: self._probe(name) for name in self._targets}
                self._checked_at = self._clock()
            states = dict(self._states)
        return all(state == "ok" for state in states.values()), {"redis": states}

    def _probe(self, name: str) -> str:
        client = None
        try:
            client = self._client(name)  # a Cluster's reads the slot map at once: it may fail here
            answer(client, self._layout(name, client))
            state = "ok"
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            last = where(client) if client is not None else "nowhere yet"
            state = f"waiting for {describe(self._targets[name])}, last at {last}: {exc}"
            if client is not None:
                refresh_routes(client)
        self._log_change(name, state)
        return state

    def _client(self, name: str) -> AnyRedis:
        if name not in self._clients:
            self._clients[name] = connect(self._targets[name], PROBE_BOUNDS)
        return self._clients[name]

    def _layout(self, name: str, client: AnyRedis) -> Layout:
        """The aggregate's layout (Cluster only: one server needs none), cached once it has shards."""
        if not isinstance(client, RedisCluster):
            return Layout()
        cached = self._layouts.get(name)
        if cached is None or cached.shards == 1:
            cached = self._layouts[name] = read_layout(client)
        return cached

    def _log_change(self, name: str, state: str) -> None:
        before = self._states.get(name)
        if state == before:
            return
        if state != "ok":
            log.warning("%s Redis unreachable: %s", name, state)
        elif before is not None:
            log.info("%s Redis reachable again at %s", name, where(self._clients[name]))


def answer(client: AnyRedis, layout: Layout) -> None:
    """Return if ``client``'s Redis serves the aggregate now; raise a RedisError saying why not (under a
    Cluster: which shards' owner, where, and its error)."""
    if not isinstance(client, RedisCluster):
        client.ping()
        return
    owners: dict[int, tuple[redis.Redis, list[int]]] = {}
    for k, shard in enumerate(layout.all()):
        node = node_for(client, shard.totals)
        owners.setdefault(id(node), (node, []))[1].append(k)
    for node, shards in owners.values():
        owner = f"the Cluster node owning shard(s) {', '.join(map(str, shards))} at {where(node)}"
        try:
            state = dict(node.execute_command("CLUSTER INFO")).get("cluster_state")
        except redis.RedisError as exc:
            raise redis.ConnectionError(f"{owner}: {exc}") from exc
        if state != "ok":
            raise redis.ConnectionError(f"{owner} says cluster_state:{state}")


def pipeline_redis(settings: Settings) -> RedisReachability:
    """The Redis servers the bridge and the workers need: the aggregate's, and Celery's broker if it is
    another Redis (RabbitMQ's own connection reports itself)."""
    targets: dict[str, RedisUrl] = {"aggregate": settings.redis}
    broker = settings.broker_redis
    if broker is not None and settings.broker_url != settings.redis_url:
        targets["broker"] = broker
    return RedisReachability(targets)


def combined(*checks: Callable[[], tuple[bool, dict[str, Any]]]) -> Callable[[], tuple[bool, dict[str, Any]]]:
    """One readiness from several: ready when all are, their details merged."""

    def check() -> tuple[bool, dict[str, Any]]:
        ready, details = True, dict[str, Any]()
        for one in checks:
            ok, more = one()
            ready, details = ready and ok, {**details, **more}
        return ready, details

    return check
