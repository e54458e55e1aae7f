"""worker/transport.py on a real Redis: messages flow as with kombu's own transport, on one client."""

from __future__ import annotations

import redis
from kombu import Connection

from worker.transport import TRANSPORT_PATH, Channel


def test_publish_fetch_ack_reuse_one_client(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT_PATH) as conn:
        queue = conn.SimpleQueue("transport-test")
        for i in range(50):
            queue.put({"n": i})
        received = []
        for _ in range(50):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        channel = queue.channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        assert channel.client is not first  # the async client (BRPOP) stays separate
        assert redis.Redis.from_url(redis_url).llen("transport-test") == 0
        assert received == list(range(50))
        queue.close()


def test_a_new_pool_gets_a_new_client(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT_PATH) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as before:
            assert before.connection_pool is channel.pool
        channel._pool = None  # what kombu does when it drops a broken pool
        with channel.conn_or_acquire() as after:
            assert after is not before
            assert after.connection_pool is channel.pool
        given = object()
        with channel.conn_or_acquire(given) as passed:
            assert passed is given


def test_the_apps_use_it_unless_told_otherwise() -> None:
    from bridge.handoff import celery_config
    from bridge.settings import Settings

    assert celery_config(Settings.from_env({}, env_file=None))["broker_transport"] == TRANSPORT_PATH
    stock = Settings.from_env({"ORDERS_STOCK_TRANSPORT": "1"}, env_file=None)
    assert celery_config(stock)["broker_transport"] is None
