"""The fast path's Redis transport (worker/transport.py) on a Sentinel-managed primary.

Celery's ``broker_transport`` setting picks the transport class and overrides the URL's scheme, so a
``sentinel://`` CELERY_BROKER_URL would otherwise reach kombu's stock Sentinel transport, which fetches
with BRPOP and loses a message to a worker killed mid-fetch (celery/kombu#305). kombu's
``SentinelChannel`` changes only how the connection pool is made (it asks the Sentinels for the
primary); composed after our Channel, it keeps everything else of ours: the atomic fetch, deferred
acks, leases, the bounded waits.

The pool is made through orders/core/redis_client.py's Sentinel client, as every other client of the
pipeline: it believes the newest configuration epoch among a majority of Sentinels, so a Sentinel cut
off with the old primary cannot keep workers there. A primary that answers but will not write
(NOREPLICAS: it lost its replicas; MASTERDOWN) makes the channel raise a connection error, so Celery
reconnects and asks the Sentinels again; READONLY is turned into one by redis-py's Sentinel connection.

kombu internals (worker/fast_path.py K14): ``SentinelChannel._sentinel_managed_pool(asynchronous)``
returns the pool ``_get_pool`` uses; it reads ``_connparams(asynchronous)``, the ``sentinel://`` URLs
in ``connection.client.alt``, and the ``master_name`` and ``sentinel_kwargs`` transport options, and
keeps the Sentinel client in ``_sentinel_manager`` / ``_async_sentinel_manager`` for
``_disconnect_pools`` to close.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.url import _parse_url

from orders.core.redis_client import QuorumSentinel, is_unwritable
from worker.transport import Channel, Transport


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """Our Channel, its pool made by kombu's SentinelChannel with the pipeline's Sentinel client."""

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:  # K14
        params = self._connparams(asynchronous)
        for where in ("host", "port"):
            params.pop(where, None)
        manager = QuorumSentinel(
            self._sentinel_addresses(params), sentinel_kwargs=getattr(self, "sentinel_kwargs", None), **params
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

    def _sentinel_addresses(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        addresses = []
        for url in self.connection.client.alt:
            parts = _parse_url(url)
            if parts.scheme == "sentinel":
                addresses.append((parts.hostname, parts.port or self.connection.default_port))
        return addresses

    def _refused(self, exc: redis.ResponseError) -> None:
        """A primary short of replicas (NOREPLICAS) may be one the Sentinels replaced: reconnect."""
        if is_unwritable(exc):
            self.client.connection.disconnect()
            raise redis.ConnectionError(f"the broker's primary refuses writes ({exc}); asking the Sentinels")
        super()._refused(exc)


class SentinelTransport(Transport):  # type: ignore[misc]
    """Selected by ``broker_transport`` = "worker.sentinel_transport:SentinelTransport" for a Sentinel
    CELERY_BROKER_URL (orders/core/broker_connection.py)."""

    Channel = SentinelChannel
    default_port = 26379  # type: ignore[assignment]  # kombu's SentinelTransport says so too
