"""worker/fetch.lua on a real redis-server: a message is taken and recorded unacknowledged in one step."""

from __future__ import annotations

import json

import redis

from bridge.handoff import Handoff, create_sender
from orders.core.settings import Settings
from worker.transport import FETCH_SCRIPT

RECORD = "1"  # record what is taken as unacknowledged ("0" for a no-ack consumer)
ORIGIN = {"topic": "t", "partition": 0, "offset": 0, "timestamp": 0, "key": None, "value": "", "group": "g"}


def test_fetch_takes_the_messages_and_records_them_unacknowledged_atomically(redis_url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_QUEUE": "q"}, env_file=None)
    client = redis.Redis.from_url(redis_url)
    orders = [({"orderId": f"o-{i}", "product": "p", "price": "1.00"}, ORIGIN) for i in range(3)]
    Handoff(create_sender(settings), "q").hand_off(orders)
    queued = client.lrange("q", 0, -1)[::-1]  # kombu pushes on the left: oldest last

    queue, *items = client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index", 2, RECORD)

    assert queue == b"q"
    assert items == queued[:2]  # at most the count asked for, oldest first
    assert client.llen("q") == 1
    for item, order in zip(items, orders, strict=False):
        tag = json.loads(item)["properties"]["delivery_tag"]
        message, exchange, routing_key = json.loads(client.hget("unacked", tag))
        assert message == json.loads(item)  # the message verbatim, as kombu's restore reads it back
        assert message["headers"]["id"] == order[0]["orderId"]
        info = message["properties"]["delivery_info"]
        assert (exchange, routing_key) == (info["exchange"], info["routing_key"]) == ("", "q")
        assert client.zscore("unacked_index", tag) is not None


def test_fetch_acknowledges_the_tags_it_is_given_first(redis_url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_QUEUE": "q"}, env_file=None)
    client = redis.Redis.from_url(redis_url)
    orders = [({"orderId": f"o-{i}", "product": "p", "price": "1.00"}, ORIGIN) for i in range(3)]
    Handoff(create_sender(settings), "q").hand_off(orders)
    _, *first = client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index", 2, RECORD)
    done = [json.loads(item)["properties"]["delivery_tag"] for item in first]

    _, last = client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index", 5, RECORD, *done)

    last_tag = json.loads(last)["properties"]["delivery_tag"]
    assert {t.decode() for t in client.hkeys("unacked")} == {last_tag}
    assert [t.decode() for t in client.zrange("unacked_index", 0, -1)] == [last_tag]
    # An empty queue still takes the acks, and answers with an empty list.
    assert client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index", 5, RECORD, last_tag) == []
    assert client.hlen("unacked") == 0
    assert client.zcard("unacked_index") == 0


def test_a_no_ack_fetch_takes_without_recording(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.lpush("q", json.dumps({"properties": {"delivery_tag": "t1", "delivery_info": {}}}))
    queue, item = client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index", 5, "0")
    assert queue == b"q" and json.loads(item)["properties"]["delivery_tag"] == "t1"
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def test_closing_after_the_connection_is_gone_is_a_connection_error(redis_url: str) -> None:
    """Celery closes a channel after losing Redis; kombu's unacked restore then must not crash the worker.

    It used to raise AttributeError (a closed connection has no client to build a pool from), which is
    no connection error, so Celery's close gave up and the worker stopped ("Unrecoverable error").
    """
    import pytest
    from kombu import Connection

    from worker.transport import TRANSPORT_PATH

    conn = Connection(redis_url, transport=TRANSPORT_PATH)
    queue = conn.SimpleQueue("close-test")
    queue.put({"n": 1})
    queue.get(timeout=5)  # unacknowledged: closing the channel restores it
    channel = queue.channel
    channel._disconnect_pools()
    channel.connection.client = None  # as after the broker connection was lost
    with pytest.raises(conn.connection_errors):
        channel.close()
