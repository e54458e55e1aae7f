"""The aggregate's client on a Redis Cluster (``redis+cluster://``): redis-py's RedisCluster, every wait
bounded, and the primary that owns a key, where a script and its ``WAIT`` must go.

- Seeds: the URL's nodes; the client learns the rest (and each slot's primary) from ``CLUSTER SLOTS``.
- Each node's connections carry :class:`Bounds` as a single server's do (timeouts, keepalive, health
  checks). The client retries a command ``bounds.retries`` times after a connection error, a timeout, or
  ``CLUSTERDOWN`` (redis-py's Cluster retries timeouts too; the aggregate's scripts are idempotent by
  their dedupe marker, so a timed-out script sent again cannot count twice), re-reading the slot map
  first. A node's own client (:func:`primary_for`) never retries: its caller refreshes the routes and
  hands the order back.
- A Cluster has only database 0, and kombu has no Cluster transport: Celery's broker and the registry's
  state live elsewhere (orders/core/settings.py, orders/registry/settings.py).

redis-py internals relied on (contract tests R1-R3 in tests/contract/test_redis_cluster.py, listed in
worker/fast_path.py's docstring):

- R1 ``get_node_from_key(key)`` answers from the cached slot map (no round trip) with the slot's primary,
  and ``get_redis_connection(node)`` is that node's plain ``redis.Redis``.
- R2 ``nodes_manager.initialize()`` re-reads the slot map at once, raising ``RedisClusterException`` when
  no node answers (and keeping the old map then).
- R3 ``connection_pool_class`` reaches ``NodesManager``, which builds every node's pool with it: the one
  way to give nodes ``health_check_interval``, which RedisCluster drops from its keyword arguments.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from orders.core.redis_bounds import Bounds, tls_kwargs
from orders.core.redis_url import ClusterUrl

log = logging.getLogger(__name__)

# Errors after which one order is handed back call refresh_routes: during a failover, a worker holding
# many orders would re-read the slot map for each. Once per this many seconds is enough.
REFRESH_INTERVAL = 0.5
_refreshed_at: WeakKeyDictionary[RedisCluster, float] = WeakKeyDictionary()
_refresh_lock = threading.Lock()


def cluster_client(parsed: ClusterUrl, bounds: Bounds, **options: Any) -> RedisCluster:
    """A RedisCluster on ``parsed``'s seeds; ``options`` are further client options (decode_responses...).

    Reads the slot map at once: raises ``redis.ConnectionError`` when no seed answers (redis-py raises
    a RedisClusterUnreachableError, no RedisError, which callers would take for a bug).
    """
    kwargs: dict[str, Any] = {**bounds.connection_kwargs(), **tls_kwargs(parsed.tls), **options}
    interval = kwargs.pop("health_check_interval")
    credentials = {"username": parsed.username, "password": parsed.password}
    kwargs.update({name: value for name, value in credentials.items() if value})
    try:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
            # R3: redis-py would drop health_check_interval; every node's pool gets it this way
            connection_pool_class=partial(redis.ConnectionPool, health_check_interval=interval),
            retry=Retry(NoBackoff(), bounds.retries),
            **kwargs,
        )
    except redis.exceptions.RedisClusterUnreachableError as exc:
        raise redis.ConnectionError(f"no seed node of the Redis Cluster answers: {exc}") from exc


def primary_for(client: RedisCluster, key: str) -> redis.Redis:
    """The plain client of the primary serving ``key``'s slot, as the client last learned it (R1).

    Raises ``redis.ConnectionError`` when no primary is known for the slot (the map is re-read first).
    """
    try:
        node = client.get_node_from_key(key)
    except RedisClusterException:  # SlotNotCoveredError: a slot map read mid-failover
        refresh_slot_map(client, force=True)
        try:
            node = client.get_node_from_key(key)
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"no Redis Cluster primary serves {key!r} now: {exc}") from exc
    return client.get_redis_connection(node)


def refresh_slot_map(client: RedisCluster, force: bool = False) -> None:
    """Re-read which primary serves which slot (R2), at most once per :data:`REFRESH_INTERVAL` unless
    ``force``. When no node answers, the old map stays and this logs: the caller's order is handed back
    and the next attempt asks again."""
    with _refresh_lock:
        now = time.monotonic()
        if not force and now - _refreshed_at.get(client, -REFRESH_INTERVAL) < REFRESH_INTERVAL:
            return
        _refreshed_at[client] = now
    try:
        client.nodes_manager.initialize()
    except (RedisClusterException, redis.RedisError) as exc:
        log.warning("could not re-read the Redis Cluster's slot map (keeping the old one): %s", exc)


def drop_connections(client: RedisCluster) -> None:
    """Every node's connections closed, then the slot map re-read: for after a refusal or a short WAIT."""
    client.disconnect_connection_pools()
    refresh_slot_map(client, force=True)


def primaries(client: RedisCluster) -> str:
    """The primaries the client knows now, safe to log: ``10.0.0.2:6379, 10.0.0.3:6379 (3 primaries)``."""
    names = sorted(node.name for node in client.get_primaries())
    return f"{', '.join(names)} ({len(names)} primaries)" if names else "no primary known"
