"""How kombu's Redis channel fetches, delivers, reuses clients and closes: the hooks worker/transport.py
overrides, checked by driving our transport in kombu's own event loop on a real Redis."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue

from tests.contract.contract import Contract
from tests.contract.rig import FAST, ONE_LIST, EventLoop, publish

TRANSPORT = "worker/transport.py"
REDIS_PY = "kombu/transport/redis.py"
K5 = Contract(
    "K5", "kombu", "MultiChannelPoller fetching through Channel._brpop_start(timeout) and "
    "handlers['BRPOP'] (_brpop_read), with _in_poll, _brpop_sent_at, _flush_brpop_reauth and Empty",
    TRANSPORT, "fetching with fetch.lua (take and record unacked in one step: celery/kombu#305, several "
    "messages and the pending acks per round trip); if the poller stops calling these, kombu's BRPOP "
    "runs again without a word",
    f"{REDIS_PY}: MultiChannelPoller._register_BRPOP, on_readable, maybe_check_brpop_health, "
    "Channel._brpop_start, Channel._brpop_read",
)  # fmt: skip
K6 = Contract(
    "K6", "kombu", "Channel._queue_cycle.rotate(queue) and Transport._deliver(message, queue)",
    TRANSPORT, "handing each message fetch.lua took to its consumer, as _brpop_read does",
    f"{REDIS_PY}: Channel._brpop_read; kombu/transport/virtual/base.py: Transport._deliver",
)  # fmt: skip
K7 = Contract(
    "K7", "kombu", "Channel._q_for_pri(queue, 0) naming a queue's one list (priority_steps [0]), "
    "global_keyprefix and active_queues",
    TRANSPORT, "choosing the one list fetch.lua and BLMOVE work on, and when kombu's BRPOP must serve",
    f"{REDIS_PY}: Channel._q_for_pri, Channel.priority, Channel._put, Channel.active_queues",
)  # fmt: skip
K8 = Contract(
    "K8", "kombu", "QoS.can_consume_max_estimate() (the prefetch budget left; None without a limit)",
    TRANSPORT, "how many messages one fetch may take without passing the prefetch limit",
    "kombu/transport/virtual/base.py: QoS.can_consume_max_estimate",
)  # fmt: skip
K9 = Contract(
    "K9", "kombu", "Channel.conn_or_acquire(client=None) as the way publish, ack and restore get a client; "
    "_create_client(); _pool dropped by _disconnect_pools",
    f"{TRANSPORT} (in the workers and the bridge's sender)", "one kept redis client per channel instead "
    "of one built per publish, fetch and ack, rebuilt when kombu replaces a broken pool",
    f"{REDIS_PY}: Channel.conn_or_acquire, _create_client, pool, _disconnect_pools, PublishBatch, QoS",
)  # fmt: skip
K10 = Contract(
    "K10", "kombu", "Transport.cycle (the MultiChannelPoller every channel adds itself to) and "
    "register_with_event_loop calling its on_poll_init once and on_poll_start every tick",
    TRANSPORT, "sending the acks no fetch took before the tick ends, and renewing leases; without "
    "them an acked order is redelivered after the visibility timeout, and a held one too",
    f"{REDIS_PY}: Transport.__init__, Transport.register_with_event_loop, MultiChannelPoller",
)  # fmt: skip
K11 = Contract(
    "K11", "kombu", "Channel.basic_consume(queue, no_ack, ...) as kombu's Consumer calls it",
    TRANSPORT, "not recording a no-ack consumer's messages (control replies) as unacknowledged; "
    "recorded, they come back after the visibility timeout",
    "kombu/messaging.py: Consumer._basic_consume; kombu/transport/virtual/base.py: Channel.basic_consume",
)  # fmt: skip
K12 = Contract(
    "K12", "kombu", "Channel.close restoring what the channel holds through QoS.restore_unacked(client)",
    TRANSPORT, "sending pending acks before a closing channel restores the rest; otherwise acked "
    "orders go back on the queue and run again",
    "kombu/transport/virtual/base.py: Channel.close, QoS.restore_unacked_once; "
    f"{REDIS_PY}: QoS.restore_unacked",
)  # fmt: skip
K13 = Contract(
    "K13", "kombu", "the transport options unacked_restore_interval and unacked_restore_throttle",
    "orders/core/celery_config.py", "sweeping a dead worker's orders back within the visibility "
    "timeout + 10 s (kombu's defaults wait up to 100 s more)",
    f"{REDIS_PY}: Channel.from_transport_options, Transport.register_with_event_loop, QoS.restore_visible",
)  # fmt: skip


def _counting(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    """Count the calls of ``cls.name`` (which must exist on ``cls`` or a parent)."""
    calls: list[int] = []
    original = getattr(cls, name)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_k5_the_poller_fetches_through_our_brpop_hooks(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k5", range(6))
    with K5.holds():
        from kombu.transport import redis as kombu_redis

        from worker.transport import Channel

        # Our overrides fall back to kombu's own for a fetch fetch.lua does not serve: a hook renamed
        # upstream with its callers would bypass them (the poller check below), one renamed alone
        # would fail those fallbacks with AttributeError inside the worker.
        for name in (
            "_brpop_start",
            "_brpop_read",
            "_in_poll",
            "_brpop_sent_at",
            "_flush_brpop_reauth",
            "Empty",
        ):
            owner = kombu_redis if name == "Empty" else kombu_redis.Channel
            assert hasattr(owner, name), f"kombu no longer has {name}"
        starts = _counting(monkeypatch, Channel, "_brpop_start")
        reads = _counting(monkeypatch, Channel, "_brpop_read")
        client.config_resetstat()
        loop = EventLoop(redis_url, "k5")
        try:
            assert loop.channel.handlers["BRPOP"].__func__ is Channel._brpop_read, "handlers['BRPOP'] changed"
            loop.run_until(6)
        finally:
            loop.close()
        assert starts and reads, f"the poller called _brpop_start {len(starts)}, _brpop_read {len(reads)}x"
        stats = client.info("commandstats")
        assert "cmdstat_brpop" not in stats, "kombu's BRPOP fetched instead of fetch.lua"
        assert loop.received == list(range(6))


def test_k6_a_fetched_message_reaches_its_consumer(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k6", range(1))
    with K6.holds():
        from kombu.transport import virtual

        params = list(inspect.signature(virtual.Transport._deliver).parameters)
        assert params == ["self", "message", "queue"], f"Transport._deliver takes {params}"
        loop = EventLoop(redis_url, "k6-other")
        try:
            assert callable(loop.channel._queue_cycle.rotate)
            consumer = Consumer(loop.channel, [Queue("k6")], callbacks=[loop._on_message], accept=["json"])
            consumer.consume()
            loop.channel._deliver_fetched("k6", [client.rpop("k6")])
            assert loop.received == [0]
        finally:
            loop.close()


def test_k7_priority_step_zero_is_the_queues_own_list(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with K7.holds(), Connection(redis_url, transport=FAST, transport_options=ONE_LIST) as conn:
        channel = conn.default_channel
        assert channel._q_for_pri("k7", 0) == "k7"
        assert not channel.global_keyprefix
        channel.basic_consume("k7", False, lambda message: None, "k7-tag")
        assert set(channel.active_queues) == {"k7"}
        assert channel._single_key() == "k7"
        publish(redis_url, "k7", range(2))
        assert client.llen("k7") == 2, f"kombu published to {client.keys('k7*')}"


def test_k8_the_prefetch_budget_left(redis_url: str) -> None:
    with K8.holds(), Connection(redis_url, transport=FAST, transport_options=ONE_LIST) as conn:
        qos = conn.default_channel.qos
        assert qos.can_consume_max_estimate() is None  # no prefetch limit
        qos.prefetch_count = 4
        qos._delivered["t1"] = object()
        assert qos.can_consume_max_estimate() == 3
        qos._delivered.clear()


def test_k9_publish_fetch_and_ack_borrow_the_one_kept_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with K9.holds():
        from worker.transport import Channel

        built: list[bool] = []  # one entry per client built: asynchronous or not
        create = Channel._create_client
        monkeypatch.setattr(Channel, "_create_client", lambda self, asynchronous=False: (
            built.append(asynchronous), create(self, asynchronous=asynchronous))[1])  # fmt: skip
        with Connection(redis_url, transport=FAST, transport_options=ONE_LIST) as conn:
            queue = conn.SimpleQueue("k9")
            for n in range(5):
                queue.put({"n": n})
            producer = conn.Producer()
            with producer.batch(max_size=10):  # as the bridge hands off (H2)
                for n in range(5, 8):
                    producer.publish({"n": n}, routing_key="k9")
            for _ in range(8):
                queue.get(timeout=5).ack()
            channel = queue.channel
            synchronous = built.count(False)
            assert synchronous == 1, f"{synchronous} clients built for 8 publishes, fetches and acks"
            channel._disconnect_pools()
            assert channel._pool is None, "_disconnect_pools no longer drops the pool"
            with channel.conn_or_acquire() as client:
                assert client.connection_pool is channel.pool
            queue.close()


def test_k10_our_poller_is_the_transports_and_runs_every_tick(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k10", range(2))
    with K10.holds():
        from worker.transport import MultiChannelPoller

        ticks = _counting(monkeypatch, MultiChannelPoller, "on_poll_start")
        loop = EventLoop(redis_url, "k10", prefetch=2)
        try:
            cycle = loop.conn.transport.cycle
            assert isinstance(cycle, MultiChannelPoller), f"the transport's poller is a {type(cycle)}"
            assert loop.channel in cycle._channels
            assert cycle.in_event_loop, "register_with_event_loop no longer calls on_poll_init"
            loop.run_until(2)
            loop.hub.run_once()  # the acks made in the callbacks go out by the end of this tick
            assert ticks, "on_poll_start was never called"
            assert client.hlen("unacked") == 0, "acks made in the event loop were not sent"
        finally:
            loop.close()


def test_k11_a_no_ack_consumer_reaches_our_basic_consume(redis_url: str) -> None:
    with K11.holds(), Connection(redis_url, transport=FAST, transport_options=ONE_LIST) as conn:
        channel = conn.channel()
        Consumer(channel, [Queue("k11-replies")], no_ack=True, callbacks=[print]).consume()
        Consumer(channel, [Queue("k11-tasks")], no_ack=False, callbacks=[print]).consume()
        assert channel._no_ack_queues == {"k11-replies"}
        channel.close()


def test_k12_closing_restores_what_is_held_and_not_what_was_acked(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k12", range(2))
    with K12.holds():
        loop = EventLoop(redis_url, "k12", prefetch=2, ack=lambda n: n == 0)
        try:
            loop.run_until(2)
            assert loop.channel._pending_acks, "the ack is not pending: no fetch by fetch.lua took it"
        finally:
            loop.close()
        assert len(client.lrange("k12", 0, -1)) == 1, "not exactly the held message came back"
        assert client.hlen("unacked") == 0, "an acked or restored message is still recorded"


def test_k13_the_sweep_period_options_reach_the_channel(redis_url: str) -> None:
    from kombu.transport import redis as kombu_redis

    options = {**ONE_LIST, "unacked_restore_interval": 7, "unacked_restore_throttle": 1}
    with K13.holds(), Connection(redis_url, transport=FAST, transport_options=options) as conn:
        for name in ("unacked_restore_interval", "unacked_restore_throttle"):
            assert name in kombu_redis.Channel.from_transport_options, f"{name} is no transport option"
        channel = conn.default_channel
        assert (channel.unacked_restore_interval, channel.unacked_restore_throttle) == (7, 1)
