"""worker/fetch.lua on a real redis-server: a message is taken and recorded unacknowledged in one step."""

from __future__ import annotations

import json

import redis

from bridge.handoff import Handoff, create_sender
from bridge.settings import Settings
from worker.transport import FETCH_SCRIPT

ORIGIN = {"topic": "t", "partition": 0, "offset": 0, "timestamp": 0, "key": None, "value": "", "group": "g"}


def test_fetch_takes_the_message_and_records_it_unacknowledged_atomically(redis_url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_QUEUE": "q"}, env_file=None)
    client = redis.Redis.from_url(redis_url)
    Handoff(create_sender(settings), "q", client).hand_off(
        [({"orderId": "o-1", "product": "p", "price": "1.00"}, ORIGIN)]
    )
    [queued] = client.lrange("q", 0, -1)

    queue, item = client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index")

    assert (queue, item) == (b"q", queued)
    assert client.llen("q") == 0
    tag = json.loads(item)["properties"]["delivery_tag"]
    message, exchange, routing_key = json.loads(client.hget("unacked", tag))
    assert message == json.loads(queued)  # the message verbatim, as kombu's restore reads it back
    info = message["properties"]["delivery_info"]
    assert (exchange, routing_key) == (info["exchange"], info["routing_key"]) == ("", "q")
    assert client.zscore("unacked_index", tag) is not None
    assert client.eval(FETCH_SCRIPT, 3, "q", "unacked", "unacked_index") is None  # empty queue


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
