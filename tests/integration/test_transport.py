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
    from orders.core.celery_config import celery_config
    from orders.core.settings import Settings

    assert celery_config(Settings.from_env({}, env_file=None))["broker_transport"] == TRANSPORT_PATH
    stock = Settings.from_env({"ORDERS_STOCK_TRANSPORT": "1"}, env_file=None)
    assert celery_config(stock)["broker_transport"] is None


class EventLoop:
    """A kombu consumer on our transport, driven by kombu's Hub as a Celery worker drives it."""

    def __init__(self, redis_url: str, queue: str, prefetch: int = 4) -> None:
        from kombu import Consumer, Queue
        from kombu.asynchronous import Hub

        self.hub = Hub()
        # One list per queue, as orders.core.celery_config sets it: the fetch script serves it.
        options = {"priority_steps": [0]}
        self.conn = Connection(redis_url, transport=TRANSPORT_PATH, transport_options=options)
        self.conn.transport.register_with_event_loop(self.conn.connection, self.hub)
        self.channel = self.conn.channel()
        self.received: list[int] = []
        self.consumer = Consumer(self.channel, [Queue(queue)], callbacks=[self._on_message], accept=["json"])
        self.consumer.qos(prefetch_count=prefetch)
        self.consumer.consume()

    def _on_message(self, body: dict[str, int], message: object) -> None:
        self.received.append(body["n"])
        message.ack()  # type: ignore[attr-defined]

    def run_until(self, count: int, ticks: int = 2000) -> None:
        for _ in range(ticks):
            if len(self.received) >= count:
                return
            self.hub.run_once()
        raise AssertionError(f"received {len(self.received)} of {count}")

    def close(self) -> None:
        self.consumer.cancel()
        self.channel.close()
        self.conn.close()
        self.hub.close()


def publish(redis_url: str, queue: str, numbers: range) -> None:
    with Connection(redis_url, transport=TRANSPORT_PATH) as conn:
        simple = conn.SimpleQueue(queue)
        for n in numbers:
            simple.put({"n": n})
        simple.close()


def command_calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_in_an_event_loop_acks_ride_with_the_next_fetch(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "loop-test", range(40))
    client.config_resetstat()
    loop = EventLoop(redis_url, "loop-test", prefetch=4)
    try:
        loop.run_until(40)
        for _ in range(3):  # the tick after the last message sends its ack
            loop.hub.run_once()
        assert loop.received == list(range(40))
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
        # Fetches take up to the prefetch budget; no MULTI/EXEC per message for appends or acks.
        assert command_calls(client, "evalsha") + command_calls(client, "eval") <= 40 // 4 + 3
        assert command_calls(client, "exec") <= 2
    finally:
        loop.close()


def test_closing_sends_the_acks_still_pending(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "close-acks", range(3))
    loop = EventLoop(redis_url, "close-acks", prefetch=3)
    loop.run_until(3)  # acked in the callback: pending until the next tick's fetch
    assert loop.channel._pending_acks
    loop.close()
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def test_a_flushed_script_cache_is_reloaded(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "noscript", range(5))
    loop = EventLoop(redis_url, "noscript")
    try:
        loop.run_until(5)
        client.script_flush()  # as after a Redis restart
        publish(redis_url, "noscript", range(5, 10))
        loop.run_until(10)
        for _ in range(3):
            loop.hub.run_once()
        assert loop.received == list(range(10))
        assert client.hlen("unacked") == 0
    finally:
        loop.close()
