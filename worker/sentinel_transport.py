"""The fast path's Redis transport (worker/transport.py) on a Sentinel-managed primary.

Celery's ``broker_transport`` setting picks the transport class and overrides the URL's scheme, so a
``sentinel://`` CELERY_BROKER_URL would otherwise reach kombu's stock Sentinel transport, which fetches
with BRPOP and loses a message to a worker killed mid-fetch (celery/kombu#305). kombu's
``SentinelChannel`` changes only how the connection pool is made (it asks the Sentinels for the
primary); composed after our Channel, it keeps everything else of ours: the atomic fetch, deferred
acks, leases, the bounded waits.

The pool is made through orders/core/redis_client.py's Sentinel client, as every other client of the
pipeline: it believes the newest configuration epoch among a majority of Sentinels, so a Sentinel cut
off with the old primary cannot keep workers there; and its connections take a primary that answers
but will not write (NOREPLICAS: it lost its replicas; MASTERDOWN) as a lost connection, as redis-py's
take READONLY, so Celery reconnects and asks the Sentinels again (the worker's fetch, its acks, and the
publishes of retries and requeues alike).

kombu internals (worker/fast_path.py K14): ``SentinelChannel._sentinel_managed_pool(asynchronous)``
returns the pool ``_get_pool`` uses; it reads ``_connparams(asynchronous)`` and the ``master_name`` and
``sentinel_kwargs`` transport options, and keeps the Sentinel client in ``_sentinel_manager`` /
``_async_sentinel_manager`` for ``_disconnect_pools`` to close. kombu's failover switch to the next
``;``-separated URL takes that URL's scheme as the transport (``Connection.switch``): so this transport
is given one ``sentinel://`` URL and every Sentinel in the ``sentinels`` transport option.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.url import _parse_url

from orders.core.broker_connection import SENTINELS_OPTION
from orders.core.redis_client import FollowingConnection, FollowingSSLConnection, QuorumSentinel
from worker.transport import Channel, Transport


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """Our Channel, its pool made by kombu's SentinelChannel with the pipeline's Sentinel client."""

    # kombu's async connection subclasses these (K14): they follow the primary on NOREPLICAS too.
    connection_class = FollowingConnection
    connection_class_ssl = FollowingSSLConnection  # type: ignore[assignment]  # kombu's is the same pair

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:  # K14
        params = self._connparams(asynchronous)
        for where in ("host", "port"):
            params.pop(where, None)
        manager = QuorumSentinel(
            self._sentinel_addresses(), sentinel_kwargs=getattr(self, "sentinel_kwargs", None), **params
        )
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("'master_name' transport option must be specified.")
        credentials = {k: params[k] for k in ("username", "password") if params.get(k)}
        return manager.master_for(master_name, redis.Redis, **credentials).connection_pool

    def _sentinel_addresses(self) -> list[tuple[str, int]]:
        """Every Sentinel, from the transport options: kombu is given one URL (a ;-separated list would
        make its failover switch fall back to the stock transport, orders/core/broker_connection.py)."""
        listed = self.connection.client.transport_options.get(SENTINELS_OPTION)
        if listed:
            return [(host, int(port)) for host, _, port in (item.rpartition(":") for item in listed)]
        return [
            (p.hostname, p.port or self.connection.default_port)
            for p in map(_parse_url, self.connection.client.alt)
        ]


class SentinelTransport(Transport):  # type: ignore[misc]
    """Selected by ``broker_transport`` = "worker.sentinel_transport:SentinelTransport" for a Sentinel
    CELERY_BROKER_URL (orders/core/broker_connection.py)."""

    Channel = SentinelChannel
    default_port = 26379  # type: ignore[assignment]  # kombu's SentinelTransport says so too
