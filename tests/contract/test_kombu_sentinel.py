"""The kombu internals replicated Redis adds to the fast path: the Sentinel pool hook, the batched publish's
pipeline (the hand-off's WAIT) and the order a reject writes in."""

from __future__ import annotations

from typing import Any

import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

from tests.contract.contract import Contract
from tests.contract.rig import FAST, ONE_LIST, publish

K14 = Contract(
    "K14", "kombu", "SentinelChannel._sentinel_managed_pool(asynchronous) making the pool _get_pool uses, "
    "from _connparams(asynchronous) and the master_name / sentinel_kwargs transport options; the Sentinel "
    "client kept in _sentinel_manager for _disconnect_pools; and Connection.switch (a failover to the next "
    ";-separated URL) taking that URL's scheme as the transport, so one URL is given",
    "worker/sentinel_transport.py",
    "making the broker's pool through the pipeline's Sentinel client (the newest epoch of a majority) on "
    "the fast path's channel; without it a sentinel:// broker cannot run the fast path",
    "kombu/transport/redis.py: SentinelChannel._sentinel_managed_pool, _get_pool, "
    "Channel._disconnect_pools, Channel._connparams",
)  # fmt: skip
K15 = Contract(
    "K15", "kombu", "PublishBatch.pipeline: the redis-py pipeline flush() executes once per batch, raising "
    "BatchPublishError from what it raises", "worker/publish_wait.py",
    "the hand-off's WAIT on the pushes' own connection, in the same round trip; without it the bridge "
    "stores offsets of pushes a failover can lose",
    "kombu/transport/redis.py: PublishBatch.__init__, PublishBatch.flush, Channel.create_publish_batch",
)  # fmt: skip
K16 = Contract(
    "K16", "kombu", "QoS.reject(tag, requeue) writing to Redis (restore_by_tag, or _remove_from_indices) "
    "before virtual.QoS.ack forgets the tag in memory", "worker/acks.py",
    "a reject the broker refuses leaving the message unacknowledged in Redis for the sweep, instead of "
    "stopping the worker; if kombu forgot the tag first, or wrote after, it could be lost or run twice",
    "kombu/transport/redis.py: QoS.reject, QoS.restore_by_tag; kombu/transport/virtual/base.py: QoS.ack",
)  # fmt: skip


def test_k14_the_sentinel_channel_makes_its_pool_in_one_hook() -> None:
    with K14.holds():
        channel_class = kombu_redis.SentinelChannel
        assert callable(channel_class._sentinel_managed_pool)
        for name in ("master_name", "sentinel_kwargs", "min_other_sentinels"):
            assert name in channel_class.from_transport_options, f"{name} is no transport option"
        source = _source(channel_class._get_pool)
        assert "_sentinel_managed_pool" in source, "_get_pool no longer calls _sentinel_managed_pool"
        assert "_sentinel_manager" in _source(kombu_redis.Channel._disconnect_pools)
        from worker.sentinel_transport import SentinelChannel
        from worker.transport import Channel

        mro = SentinelChannel.__mro__
        assert mro.index(Channel) < mro.index(channel_class) < mro.index(kombu_redis.Channel)
        ours = "worker.sentinel_transport:SentinelTransport"
        two = Connection("sentinel://h1:26379;sentinel://h2:26379", transport=ours)
        two.maybe_switch_next()
        assert two.transport_cls == "sentinel", (
            f"a switch kept {two.transport_cls}: one URL is no longer needed"
        )
        one = Connection("sentinel://h1:26379", transport=ours)
        one.maybe_switch_next()
        assert one.transport_cls == ours, f"one URL switched to {one.transport_cls}"


def test_k15_a_publish_batch_executes_its_pipeline_once_and_raises_what_it_raised(redis_url: str) -> None:
    from kombu import Exchange, Producer, Queue
    from kombu.exceptions import BatchPublishError

    from orders.core.broker_connection import publish_wait
    from worker.publish_wait import WaitingPipeline

    options = {**ONE_LIST, **publish_wait(replicas=1, timeout=0.05)}  # no replica here: always short
    with K15.holds(), Connection(redis_url, transport=FAST, transport_options=options) as conn:
        exchange = Exchange("k15", type="direct")
        Queue("k15", exchange, "k15")(conn.default_channel).declare()  # a message no queue takes is dropped
        producer = Producer(conn.default_channel, exchange=exchange, routing_key="k15")
        try:
            with producer.batch(max_size=10):
                producer.publish({"n": 1}, declare=[])  # the batch's session starts with its first message
                pipeline = producer._batch_local.current.session.pipeline
                assert isinstance(pipeline, WaitingPipeline), f"the batch's pipeline is {pipeline!r}"
                producer.publish({"n": 2}, declare=[])
        except BatchPublishError as exc:
            assert "0 of 1 replicas acknowledged" in str(exc.__cause__), f"caused by {exc.__cause__!r}"
        else:
            raise AssertionError("a batch short of its replicas was taken as published")


def test_k16_a_refused_reject_leaves_the_message_unacknowledged(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k16", range(1))
    with (
        K16.holds(),
        Connection(redis_url, transport_options=ONE_LIST, transport="worker.transport:Transport") as conn,
    ):
        channel = conn.default_channel
        message = channel.Message(channel._get("k16"), channel=channel)
        kombu_redis.QoS.append(channel.qos, message, message.delivery_tag)  # recorded in Redis, as fetched
        client.config_set("min-replicas-to-write", 1)  # refuse writes: NOREPLICAS
        try:
            channel.qos.reject(message.delivery_tag, requeue=True)
        finally:
            client.config_set("min-replicas-to-write", 0)
        assert client.hexists("unacked", message.delivery_tag), "the refused reject lost its record"
        assert client.llen("k16") == 0, "requeued although the broker refused it"
        held = {tag for tag in channel.qos._delivered if tag not in channel.qos._dirty}  # K2
        assert message.delivery_tag not in held, "still held in memory: its lease renewed, never swept back"


def _source(function: Any) -> str:
    import inspect

    return inspect.getsource(function)
