"""The one place Redis clients are built, for every process and tool: one server or a Sentinel-managed one.

Every wait is bounded (:class:`Bounds`), so a dead or silently partitioned server is noticed in seconds and
a failover is followed: redis-py's defaults wait up to 5 s per read and retry ten times with back-off,
and a connection across a link that drops packets would otherwise hang until TCP gives up (~15 min).

- A command waits at most ``socket_timeout`` for its reply, a connection ``connect_timeout`` to open.
- A connection idle for ``health_check_interval`` is PINGed before it is used again, and TCP keepalive
  probes idle connections, so a dead peer is found before a command waits on it.
- redis-py retries a command once, at once, and only after a *connection* error (the connection was
  refused or dropped): with Sentinel that retry asks the Sentinels again and reaches the new primary.
  A timeout is never retried (the command may have run); callers decide (a task hands its order back,
  the bridge retries its batch).

Sentinel (:class:`QuorumSentinel`): a client asks every Sentinel where the primary is and believes the
one with the newest configuration epoch. redis-py believes the first that answers, and a Sentinel cut
off with the old primary still names it after the others promoted a replica.

Answers that mean "this primary cannot take writes now" are classified here once: ``NOREPLICAS`` (fewer
replicas than ``min-replicas-to-write``), ``MASTERDOWN`` (a replica that lost its primary) and a ``WAIT``
short of its count (:class:`ReplicasBehind`). A primary cut off from its replicas answers NOREPLICAS
forever and never drops a connection itself, so a Sentinel-managed connection (:class:`FollowingConnection`)
takes either reply as redis-py takes READONLY: it disconnects and raises a ConnectionError, and the next
command asks the Sentinels again. After a short WAIT, :func:`reconnect` does the same for a client.

Redis Cluster (``redis+cluster://``, orders/core/redis_cluster.py): :func:`connect` returns redis-py's
RedisCluster; :func:`node_for` is the plain client of the primary that owns a key (where a script and its
WAIT go: redis-py would send a pipelined WAIT to a default node), :func:`refresh_routes` re-reads the slot
map after a MOVED or a lost node.
"""

from __future__ import annotations

import re
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection

from orders.core.redis_bounds import DEFAULT_BOUNDS as DEFAULT_BOUNDS
from orders.core.redis_bounds import Bounds as Bounds
from orders.core.redis_bounds import tls_kwargs
from orders.core.redis_cluster import (
    cluster_client,
    drop_connections,
    primaries,
    primary_for,
    refresh_slot_map,
)
from orders.core.redis_url import ClusterUrl, RedisUrl, SentinelUrl, ServerUrl, parse_redis_url, redact

# What connect() returns: one server's client (also a Sentinel-managed primary's) or a Cluster's.
AnyRedis = redis.Redis | RedisCluster
# What a Cluster client raises outside redis.RedisError when the Cluster is away: no node answered a
# refresh of the slot map, or no primary serves a slot after its retries. Like a ConnectionError, no
# fault of the data: a task hands its order back (worker/hooks.py); REDIS_ERRORS is what a caller that
# catches RedisError to wait Redis out (the bridge's counters, the tools) catches instead.
CLUSTER_UNREACHABLE: tuple[type[Exception], ...] = (
    redis.exceptions.RedisClusterUnreachableError,
    redis.exceptions.SlotNotCoveredError,
)
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, *CLUSTER_UNREACHABLE)

# Error replies that mean the primary will not write now: no fault of the data, try again elsewhere or later.
UNWRITABLE_REPLIES = ("NOREPLICAS", "MASTERDOWN")
# redis-py puts "Command # n (...) of pipeline caused error: " before a pipelined command's error reply.
_UNWRITABLE_REPLY = re.compile(r"(?:^|of pipeline caused error: )(?:NOREPLICAS|MASTERDOWN)\b")


class ReplicasBehind(redis.RedisError):
    """``WAIT`` returned before enough replicas acknowledged the connection's writes: not yet durable."""


class Unwritable(redis.ResponseError):
    """The primary refused the write (``NOREPLICAS``, ``MASTERDOWN``): see :data:`UNWRITABLE_REPLIES`."""


def is_unwritable(exc: BaseException) -> bool:
    """Whether a Redis error reply says "not now" (NOREPLICAS, MASTERDOWN) rather than "never"."""
    return isinstance(exc, redis.ResponseError) and _UNWRITABLE_REPLY.search(str(exc)) is not None


def refuses_writes(exc: BaseException) -> bool:
    """Whether Redis answered but will not write now: :func:`is_unwritable`, a replica (READONLY) or a
    full Redis (OOM, maxmemory with noeviction)."""
    return isinstance(
        exc, redis.exceptions.ReadOnlyError | redis.exceptions.OutOfMemoryError
    ) or is_unwritable(exc)


def as_unwritable(exc: redis.ResponseError) -> redis.ResponseError:
    """The same error as :class:`Unwritable` when it is one, so ``except`` clauses can name it."""
    return Unwritable(str(exc)) if is_unwritable(exc) and not isinstance(exc, Unwritable) else exc


class FollowingConnection(SentinelManagedConnection):
    """redis-py's Sentinel-managed connection, following the primary on NOREPLICAS and MASTERDOWN too.

    The reply means the command did not run, and that this node may no longer be the primary (the
    Sentinels promoted a replica while it was cut off from them): drop the connection and raise a
    ConnectionError, so the command is sent again (the client's one retry, or its caller's) through a
    new connection to whichever node the Sentinels name now, as redis-py does for READONLY. Every client
    on a Sentinel URL uses it: the aggregate's, the broker's (kombu's pools), the tools'.
    """

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if not (self.connection_pool.is_master and is_unwritable(exc)):
                raise
            self.disconnect()
            raise redis.ConnectionError(f"the primary refuses writes ({exc}); asking the Sentinels") from exc


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    """:class:`FollowingConnection` over TLS."""


class QuorumSentinel(Sentinel):
    """redis-py's Sentinel client, believing the Sentinel with the newest view of the primary.

    ``discover_master`` asks Sentinels until a majority of them named a primary they deem up (each
    bounded by its socket timeout) and takes the one of the highest ``config-epoch``. A failover needs
    the votes of a majority and raises the epoch, so a Sentinel left behind with the old primary (cut
    off with it) is outvoted. An answer of a newer epoch whose primary is down means a failover is under
    way: no primary is named until it ends. Sentinels that did not answer are asked last next time, so
    an unreachable one costs its timeout only when needed. Raises ``MasterNotFoundError`` (a
    ConnectionError) when no primary can be named.
    """

    def discover_master(self, service_name: str) -> tuple[str, int]:
        best: tuple[int, tuple[str, int]] | None = None
        newest = -1  # the newest epoch any answer carried, a primary up or not (a failover under way)
        agreeing, answered, silent, errors = 0, [], [], []
        for sentinel in self.sentinels:
            if agreeing > len(self.sentinels) // 2:
                silent.append(sentinel)  # not asked: keeps its place behind those that answered
                continue
            try:
                masters: dict[str, dict[str, Any]] = sentinel.sentinel_masters()  # type: ignore[assignment]
                state = masters.get(service_name)
            except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError) as exc:
                errors.append(f"{_where(sentinel)}: {exc}")
                silent.append(sentinel)
                continue
            answered.append(sentinel)
            epoch = int(state.get("config-epoch", 0)) if state else -1
            newest = max(newest, epoch)
            if state and self.check_master_state(state, service_name):
                agreeing += 1
                if best is None or epoch > best[0]:
                    best = (epoch, (state["ip"], int(state["port"])))
        self.sentinels[:] = answered + silent
        if best is None or best[0] < newest:
            detail = f" ({'; '.join(errors)})" if errors else ""
            raise MasterNotFoundError(
                f"no Sentinel names a primary for {service_name!r} that is up "
                f"(or a failover is under way){detail}"
            )
        return best[1]


def _where(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def connect(url: str | RedisUrl, bounds: Bounds = DEFAULT_BOUNDS, **options: Any) -> AnyRedis:
    """A client for ``url`` (any form orders/core/redis_url.py parses), every wait bounded by ``bounds``.

    ``options`` are further redis-py client options (``decode_responses``, ``client_name``...).
    Raises ValueError for a URL that does not parse; for a Cluster URL, redis.ConnectionError when no
    seed node answers (the client reads the slot map at once; one server's client connects lazily).
    """
    parsed = parse_redis_url(url) if isinstance(url, str) else url
    if isinstance(parsed, SentinelUrl):
        client_options: dict[str, Any] = {**_credentials(parsed), **options}
        return sentinel_manager(parsed, bounds).master_for(parsed.master_name, **client_options)
    if isinstance(parsed, ClusterUrl):
        return cluster_client(parsed, bounds, **options)
    return redis.Redis.from_url(parsed.url, **_server_kwargs(parsed, bounds), **options)


def connect_server(url: str | RedisUrl, bounds: Bounds = DEFAULT_BOUNDS, **options: Any) -> redis.Redis:
    """:func:`connect` for what never lives on a Cluster (Celery's broker, the registry's state: kombu has
    no Cluster transport, and a Cluster has no database apart); ValueError for a Cluster URL."""
    client = connect(url, bounds, **options) if not _is_cluster(url) else None
    if not isinstance(client, redis.Redis):
        raise ValueError("a Redis Cluster URL here: this client needs one Redis or a Sentinel-managed one")
    return client


def _is_cluster(url: str | RedisUrl) -> bool:
    return isinstance(parse_redis_url(url) if isinstance(url, str) else url, ClusterUrl)


def _server_kwargs(parsed: ServerUrl, bounds: Bounds) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**bounds.connection_kwargs(), "retry": bounds.retry()}
    if parsed.url.startswith("unix:"):  # no TCP: no connect timeout or keepalive to set
        for name in ("socket_connect_timeout", "socket_keepalive", "socket_keepalive_options"):
            kwargs.pop(name)
    return kwargs


def sentinel_manager(
    parsed: SentinelUrl, bounds: Bounds = DEFAULT_BOUNDS, **overrides: Any
) -> QuorumSentinel:
    """The Sentinels of ``parsed`` with the data nodes' connection options (``overrides`` on top: kombu's)."""
    data_options: dict[str, Any] = {**bounds.connection_kwargs(), "retry": bounds.retry(), "db": parsed.db}
    data_options.update(tls_kwargs(parsed.tls))
    tls = data_options.pop("ssl", False)
    data_options["connection_class"] = FollowingSSLConnection if tls else FollowingConnection
    data_options.update(overrides)
    return QuorumSentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs(parsed, bounds), **data_options)


def sentinel_kwargs(parsed: SentinelUrl, bounds: Bounds = DEFAULT_BOUNDS) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: their own password, TLS, and a short bound each."""
    kwargs: dict[str, Any] = {
        "socket_timeout": bounds.sentinel_timeout,
        "socket_connect_timeout": bounds.sentinel_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": bounds.keepalive_options(),
        # discovery moves on to the next Sentinel itself; a retry would double an unreachable one's wait
        "retry": Retry(NoBackoff(), 0),
        **tls_kwargs(parsed.tls),
    }
    if parsed.sentinel_password:
        kwargs["password"] = parsed.sentinel_password
    if parsed.sentinel_username:
        kwargs["username"] = parsed.sentinel_username
    return kwargs


def _credentials(parsed: SentinelUrl) -> dict[str, str]:
    return {k: v for k, v in (("username", parsed.username), ("password", parsed.password)) if v}


def reconnect(client: AnyRedis) -> None:
    """Drop every connection of ``client``: the next command connects afresh (with Sentinel, asking the
    Sentinels where the primary is now; with a Cluster, every node's, and the slot map is re-read). For
    after an unwritable answer or a short WAIT."""
    if isinstance(client, RedisCluster):
        drop_connections(client)
    else:
        reconnect_pool(client.connection_pool)


def reconnect_pool(pool: Any) -> None:
    """:func:`reconnect` for a connection pool (kombu's channels keep theirs)."""
    pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        pool.reset()


def node_for(client: AnyRedis, key: str) -> redis.Redis:
    """The client of the one server that owns ``key``, where a script and its ``WAIT`` must go.

    ``client`` itself for one server or a Sentinel-managed primary. Under Redis Cluster: the plain client
    of the primary that serves ``key``'s slot, as last learned (no round trip; see :func:`refresh_routes`
    after a MOVED or a lost node). Raises redis.ConnectionError when no primary serves the slot.
    """
    return primary_for(client, key) if isinstance(client, RedisCluster) else client


def refresh_routes(client: AnyRedis) -> None:
    """Forget where keys live (a Cluster's slot map) so the next :func:`node_for` asks again; else a no-op.

    Re-reads the map at once, at most every half second however many orders ask (a failover fails many
    at once); never raises: when no node answers, the old map stays until the next call.
    """
    if isinstance(client, RedisCluster):
        refresh_slot_map(client)


def wait_for_replicas(replies: list[Any], replicas: int) -> None:
    """Check a pipeline's last reply, a ``WAIT``'s count; raise :class:`ReplicasBehind` when short."""
    if isinstance(replies[-1], Exception):
        raise replies[-1]
    acknowledged = int(replies[-1])
    if acknowledged < replicas:
        raise ReplicasBehind(f"{acknowledged} of {replicas} replicas acknowledged the write in time")


def describe(url: str | RedisUrl) -> str:
    """What a client of ``url`` talks to, safe to log: ``Sentinel primary 'orders' (3 Sentinels)``."""
    parsed = parse_redis_url(url) if isinstance(url, str) else url
    if isinstance(parsed, SentinelUrl):
        return f"Sentinel primary {parsed.master_name!r} ({len(parsed.sentinels)} Sentinels)"
    if isinstance(parsed, ClusterUrl):
        return f"Redis Cluster ({len(parsed.nodes)} seed nodes)"
    return redact(parsed.url)


def where(client: AnyRedis) -> str:
    """The address a client's connections go to now (with Sentinel: the primary it last found; with a
    Cluster: the primaries it knows)."""
    if isinstance(client, RedisCluster):
        return primaries(client)
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        return f"{address[0]}:{address[1]}" if address else "not yet found"
    kwargs = pool.connection_kwargs
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")


# Answers that mean "this key's owner is elsewhere now or unreachable": a Cluster moved the slot (MOVED,
# ASK), lost its quorum (CLUSTERDOWN), or the node's connection failed. The aggregate's writer forgets
# its routes (:func:`refresh_routes`) and hands the order back; the redelivered copy finds the new owner.
ROUTING_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.AskError,  # MovedError is an AskError
    redis.exceptions.ClusterDownError,
    redis.ConnectionError,
    redis.TimeoutError,
)
