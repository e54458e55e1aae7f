"""worker/transport.py on a real Redis: messages flow as with kombu's own transport, on one client."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import redis
from kombu import Connection

from orders.stack.supervisor import free_port
from tests.harness.services import start_redis
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
    stock = Settings.from_env({"ORDERS_STOCK_CELERY": "true"}, env_file=None)
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


class HoldingLoop(EventLoop):
    """A consumer that keeps what it receives unacknowledged, as a worker holds a waiting retry."""

    def _on_message(self, body: dict[str, int], message: object) -> None:
        self.received.append(body["n"])


def test_control_replies_to_a_no_ack_consumer_are_not_recorded_as_unacknowledged(redis_url: str) -> None:
    """Replies to pings and Flower's commands: nobody acks them; recorded, they came back ~100 s later."""
    from kombu import Consumer, Queue

    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "no-ack", range(5))
    loop = EventLoop(redis_url, "no-ack")
    loop.consumer.cancel()
    loop.consumer = Consumer(loop.channel, [Queue("no-ack")], callbacks=[loop._on_message], no_ack=True)
    loop.consumer.consume()
    try:
        loop.run_until(5)
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    finally:
        loop.close()


def test_acks_that_could_not_be_sent_are_sent_later(redis_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "acks-kept", range(3))
    loop = EventLoop(redis_url, "acks-kept", prefetch=3)
    try:
        loop.run_until(3)
        pending = list(loop.channel._pending_acks)
        assert pending and client.hlen("unacked") == 3
        with monkeypatch.context() as patch:
            patch.setattr(loop.channel, "conn_or_acquire", _refused)
            with contextlib.suppress(redis.ConnectionError):
                loop.channel._send_pending_acks()
        assert loop.channel._pending_acks == pending  # kept, not dropped
        loop.channel._send_pending_acks()
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    finally:
        loop.close()


def _refused(*_args: object) -> object:
    raise redis.ConnectionError("Redis went away")


def test_a_live_consumer_renews_the_lease_of_what_it_holds(redis_url: str) -> None:
    """A held message never passes the visibility timeout while its worker lives; a dead one's does."""
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "leases", range(3))
    loop = HoldingLoop(redis_url, "leases", prefetch=3)
    try:
        loop.run_until(3)
        long_ago = time.time() - 3600
        tags = [t.decode() for t in client.zrange("unacked_index", 0, -1)]
        client.zadd("unacked_index", dict.fromkeys(tags, long_ago))  # as if held for an hour
        loop.channel._renewed_at = 0.0  # the next tick renews
        loop.hub.run_once()
        scores = [score for _tag, score in client.zrange("unacked_index", 0, -1, withscores=True)]
        assert len(scores) == 3 and min(scores) > time.time() - 60
        sweep(redis_url)  # another worker's sweep (visibility 60 s) takes nothing
        assert client.llen("leases") == 0
        # Its worker dies: nothing renews the leases, and the sweep brings the messages back.
        client.zadd("unacked_index", dict.fromkeys(tags, long_ago))
        sweep(redis_url)
        assert client.llen("leases") == 3
    finally:
        loop.channel.qos._delivered.clear()  # closing would restore them once more
        loop.close()


def sweep(redis_url: str) -> None:
    """What any worker's periodic sweep does: restore messages unacknowledged past the timeout."""
    with Connection(
        redis_url, transport=TRANSPORT_PATH, transport_options={"visibility_timeout": 60}
    ) as conn:
        conn.default_channel.qos.restore_visible()


def test_a_read_only_broker_pauses_the_fetch_instead_of_stopping_the_worker(tmp_path: Path) -> None:
    """A replica after a failover refuses the fetch script's first write: nothing taken, nothing lost."""
    server = start_redis(tmp_path)
    url = f"{server.url}/0"
    client = redis.Redis.from_url(url)
    try:
        publish(url, "readonly", range(3))
        loop = EventLoop(url, "readonly")
        client.replicaof("127.0.0.1", free_port())  # a primary that is not there: it keeps its data
        try:
            for _ in range(4):
                loop.hub.run_once()
            assert loop.received == [] and client.llen("readonly") == 3
            client.replicaof("NO", "ONE")  # promoted back
            loop.run_until(3)
            assert loop.received == [0, 1, 2]
        finally:
            loop.close()
    finally:
        server.service.stop()


def test_a_full_broker_keeps_the_worker_running(redis_url: str) -> None:
    """maxmemory with noeviction refuses the sweep's lock and lease renewals: skipped, not raised."""
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "full", range(3))
    loop = EventLoop(redis_url, "full")
    limit = client.config_get("maxmemory")["maxmemory"]
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        loop.run_until(3)
        loop.channel._renewed_at = 0.0
        loop.channel.qos.restore_visible()  # the periodic sweep, under the memory limit
        for _ in range(3):
            loop.hub.run_once()  # renewals refused, acks sent (HDEL frees memory)
        assert loop.received == [0, 1, 2] and client.hlen("unacked") == 0
    finally:
        client.config_set("maxmemory", limit)
        client.config_set("maxmemory-policy", policy)
        loop.close()
