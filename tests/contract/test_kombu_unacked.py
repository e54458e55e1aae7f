"""kombu's unacknowledged-message bookkeeping, which worker/transport.py and fetch.lua write themselves."""

from __future__ import annotations

import json
import time

import redis
from kombu import Connection

from tests.contract.contract import Contract
from tests.contract.rig import ONE_LIST, publish, tag_of

TRANSPORT = "worker/transport.py"
K1 = Contract(
    "K1", "kombu", "kombu.transport.redis.QoS's parent, virtual.QoS, keeping append/ack in memory only",
    TRANSPORT, "skipping the Redis QoS on purpose (super(kombu_redis.QoS, self)): fetch.lua already "
    "recorded a fetched message, and an ack rides with the next fetch; a Redis write there would cost "
    "a round trip per message, or undo the fetch's record",
    "kombu/transport/redis.py: QoS.append, QoS.ack; kombu/transport/virtual/base.py: QoS.append, QoS.ack",
)  # fmt: skip
K2 = Contract(
    "K2", "kombu", "QoS._delivered (tags delivered) and QoS._dirty (acked, not yet flushed)",
    TRANSPORT, "renewing the lease of every message a worker holds (Channel._renew_leases); without it a "
    "held retry passes the visibility timeout and runs twice",
    "kombu/transport/virtual/base.py: QoS.__init__, append, ack, _flush, can_consume",
)  # fmt: skip
K3 = Contract(
    "K3", "kombu", "the unacked hash entry [message, exchange, routing_key] and the unacked_index score "
    "(seconds), written by QoS.append, and the queue's list orientation (LPUSH, pop from the right)",
    "worker/fetch.lua", "recording a message as unacknowledged in the same script that takes it "
    "(celery/kombu#305); an entry kombu cannot read is a message its sweep never brings back",
    "kombu/transport/redis.py: QoS.append, Channel._put, Channel._get, Channel._brpop_read",
)  # fmt: skip
K4 = Contract(
    "K4", "kombu", "the restore paths reading unacked entries back: QoS.restore_visible (the sweep), "
    "QoS.restore_by_tag (a requeue) and Channel._restore (a closing channel)",
    "worker/fetch.lua", "bringing back the orders of a dead worker, a rejected message and a closed "
    "channel's messages, all recorded by fetch.lua rather than by kombu",
    "kombu/transport/redis.py: QoS.restore_visible, QoS.restore_by_tag, Channel._restore, "
    "Channel._do_restore_message",
)  # fmt: skip


def _fetch(client: redis.Redis, queue: str, count: int = 1, suffix: str = "") -> list[bytes]:
    from worker.transport import FETCH_SCRIPT

    keys = (queue, f"unacked{suffix}", f"unacked_index{suffix}")
    reply = client.eval(FETCH_SCRIPT, 3, *keys, count, "1")  # type: ignore[no-untyped-call]
    return list(reply[1:])


def test_k1_the_redis_qos_parent_keeps_append_and_ack_in_memory(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k1", range(1))
    with K1.holds():
        from kombu.transport import redis as kombu_redis
        from kombu.transport import virtual

        assert kombu_redis.QoS.__mro__[1] is virtual.QoS, f"QoS's MRO is now {kombu_redis.QoS.__mro__}"
        with Connection(redis_url, transport_options=ONE_LIST) as conn:
            channel = conn.default_channel
            message = channel.Message(channel._get("k1"), channel=channel)
            qos = channel.qos
            super(kombu_redis.QoS, qos).append(message, message.delivery_tag)
            assert message.delivery_tag in qos._delivered
            super(kombu_redis.QoS, qos).ack(message.delivery_tag)
            assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0, "wrote to Redis"
            qos._delivered.clear()  # nothing for the channel's close to restore


def test_k2_delivered_minus_dirty_is_what_a_channel_holds(redis_url: str) -> None:
    publish(redis_url, "k2", range(3))
    with K2.holds(), Connection(redis_url, transport_options=ONE_LIST) as conn:
        channel = conn.default_channel
        qos = channel.qos
        tags = []
        for _ in range(3):
            message = channel.Message(channel._get("k2"), channel=channel)
            qos.append(message, message.delivery_tag)  # kombu's own: records it in Redis too
            tags.append(message.delivery_tag)
        qos.ack(tags[0])
        held = {tag for tag in qos._delivered if tag not in qos._dirty}
        assert held == set(tags[1:]), f"held {held}, expected {set(tags[1:])}"
        qos.ack(tags[1])
        qos.ack(tags[2])
        assert not {tag for tag in qos._delivered if tag not in qos._dirty}


def test_k3_fetch_lua_records_what_kombus_own_append_records(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k3", range(2))
    with K3.holds():
        [oldest, newest] = client.lrange("k3", 0, -1)[::-1]  # kombu pushes on the left
        client.lpush("k3-copy", oldest)  # the same message, for fetch.lua to take
        with Connection(redis_url, transport_options=ONE_LIST) as conn:
            channel = conn.default_channel
            message = channel.Message(channel._get("k3"), channel=channel)
            assert message.delivery_tag == tag_of(oldest), "kombu's _get no longer takes the oldest first"
            channel.qos.append(message, message.delivery_tag)  # kombu's record of it
            theirs = json.loads(client.hget("unacked", message.delivery_tag) or b"null")
            channel.qos._delivered.clear()
        assert _fetch(client, "k3-copy", suffix="-lua") == [oldest]
        ours = json.loads(client.hget("unacked-lua", tag_of(oldest)) or b"null")
        assert ours == theirs, f"fetch.lua wrote {ours!r}, kombu writes {theirs!r}"
        for index in ("unacked_index", "unacked_index-lua"):
            score = client.zscore(index, tag_of(oldest))
            assert score is not None and abs(score - time.time()) < 60, f"{index} scored {score}"
        assert client.lrange("k3", 0, -1) == [newest]


def test_k4_kombus_restore_paths_bring_back_what_fetch_lua_recorded(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k4", range(3))
    with K4.holds():
        originals = [json.loads(raw) for raw in client.lrange("k4", 0, -1)[::-1]]
        swept, requeued, closed = (tag_of(raw) for raw in _fetch(client, "k4", count=3))
        client.zadd("unacked_index", {swept: time.time() - 3600})  # its worker died an hour ago
        options = {**ONE_LIST, "visibility_timeout": 60}
        with Connection(redis_url, transport_options=options) as conn:
            channel = conn.default_channel
            channel.qos.restore_visible(num=10, interval=1)
            channel.qos.restore_by_tag(requeued, leftmost=True)
            channel._restore(channel.Message(originals[2], channel=channel))
        back = [json.loads(raw) for raw in client.lrange("k4", 0, -1)]
        assert sorted(m["properties"]["delivery_tag"] for m in back) == sorted([swept, requeued, closed])
        for message in back:
            [original] = [m for m in originals if m["properties"]["delivery_tag"] == tag_of_dict(message)]
            assert message["headers"].get("redelivered") is True
            assert message["properties"]["delivery_info"].get("redelivered") is True
            message["headers"].pop("redelivered")
            message["properties"]["delivery_info"].pop("redelivered")
            assert message == original, f"restored {message!r}, published {original!r}"
        assert client.hlen("unacked") == 0, "an unacked entry outlived its restore"


def tag_of_dict(message: dict[str, object]) -> str:
    return str(message["properties"]["delivery_tag"])  # type: ignore[index]
