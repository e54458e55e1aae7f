"""Celery's connection to a Redis broker: every wait bounded, and a Sentinel-managed primary followed.

kombu's Redis transport waits without a bound by default (no socket timeout, a 25 s health check, a
reconnect that retries forever): across a silent partition the bridge and the workers blocked for the
whole outage, and against a primary that never comes back they would wait for TCP's own timeout
(~15 min). Here the broker connection takes the bounds of orders/core/redis_client.py:

- ``socket_timeout`` / ``socket_connect_timeout``: a reply within 3 s, a connection within 1 s;
- TCP keepalive on idle connections; ``health_check_interval``: redis-py PINGs a connection idle this
  long before using it, and kombu drops a blocking fetch whose reply is this overdue;
- ``max_retries`` / ``interval_*``: how often kombu tries to connect before a publish (the bridge's
  hand-off, a worker's retry) gives up, so the caller's own retry loop decides and logs.

redis-py itself retries nothing on this connection: kombu builds its pool without a ``retry``, and its
batched publish (the bridge's hand-off) requires that (a retried pipeline could push twice).

A Sentinel URL (orders/core/redis_url.py) becomes what kombu's Sentinel channel takes: the URL without
our options, ``master_name`` and ``sentinel_kwargs`` (the Sentinels' password, TLS, bounds) as transport
options, and the fast path's Sentinel transport (worker/transport.py) unless ORDERS_STOCK_CELERY asks
for kombu's own. Celery's ``broker_heartbeat`` applies to AMQP only.
"""

from __future__ import annotations

from typing import Any

from orders.core.redis_client import DEFAULT_BOUNDS, Bounds, sentinel_kwargs
from orders.core.redis_url import SentinelUrl, parse_redis_url
from orders.core.settings import Settings

# The fast path's transports by the path kombu resolves (worker/transport.py; core imports no worker).
FAST_TRANSPORT = "worker.transport:Transport"
FAST_SENTINEL_TRANSPORT = "worker.sentinel_transport:SentinelTransport"
# Tries to connect before a publish gives up (its caller retries): the first at once, one more after 0.5 s.
CONNECT_RETRIES = 1
# Transport options of the bridge's sender alone: replicas each batched publish waits for, and how long
# (worker/publish_wait.py reads them; the workers' own publishes never wait).
PUBLISH_WAIT_REPLICAS = "publish_wait_replicas"
PUBLISH_WAIT_TIMEOUT = "publish_wait_timeout"
# Every Sentinel of a Sentinel broker ("host:port"), for the fast path's channel.
SENTINELS_OPTION = "sentinels"


def publish_wait(replicas: int, timeout: float) -> dict[str, Any]:
    """The transport options that make each batched publish wait for ``replicas`` (0: no wait)."""
    return {PUBLISH_WAIT_REPLICAS: replicas, PUBLISH_WAIT_TIMEOUT: timeout} if replicas else {}


def redis_broker(settings: Settings, bounds: Bounds = DEFAULT_BOUNDS) -> dict[str, Any]:
    """The Celery settings that make CELERY_BROKER_URL's Redis connection (one server or Sentinel)."""
    parsed = parse_redis_url(settings.broker_url)
    options: dict[str, Any] = {
        "socket_timeout": bounds.socket_timeout,
        "socket_connect_timeout": bounds.connect_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": bounds.keepalive_options(),
        "health_check_interval": bounds.health_check_interval,
        "max_retries": CONNECT_RETRIES,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 0.5,
    }
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_transport": None if settings.stock_celery else FAST_TRANSPORT,
        # Celery's own bound on establishing the connection (its default is 4 s).
        "broker_connection_timeout": bounds.connect_timeout + bounds.socket_timeout,
    }
    if isinstance(parsed, SentinelUrl):
        options.update(master_name=parsed.master_name, sentinel_kwargs=sentinel_kwargs(parsed, bounds))
        # After a connection error kombu switches to the next ;-separated URL and takes its scheme as
        # the transport, leaving ours for its stock one (kombu.Connection.switch). So the fast path gets
        # one URL, and every Sentinel as a transport option (worker/sentinel_transport.py reads it).
        url = parsed.kombu_url(first_only=not settings.stock_celery)
        options[SENTINELS_OPTION] = [f"{host}:{port}" for host, port in parsed.sentinels]
        # Celery reads CELERY_BROKER_URL from the environment itself, over broker_url, and kombu refuses
        # our options in it; the read and write URLs come before both.
        for name in ("broker_url", "broker_read_url", "broker_write_url"):
            config[name] = url
        config["broker_transport"] = None if settings.stock_celery else FAST_SENTINEL_TRANSPORT
    return {**config, "broker_transport_options": options}
