"""The bridge's hand-off: Celery's message builder, kombu's publish batches and py-amqp's confirm events."""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import redis

from tests.contract.contract import Contract

ORIGIN = {"topic": "orders", "partition": 2, "offset": 41, "timestamp": 0, "key": "o-1", "value": "",
          "group": "g"}  # fmt: skip
ORDER = {"orderId": "o-1", "product": "Laptop", "price": "999.99"}
H1 = Contract(
    "H1", "celery", "app.amqp.create_task_message and send_task_message(producer, name, message, queue=, "
    "retry=, declare=), anon_nodename() and app.thread_oid: what send_task builds and sends",
    "bridge/handoff.py", "handing orders off without send_task's per-call extras, in a message the "
    "workers, Flower and the DLQ tools read as send_task's; and declaring the queue once (declare=[])",
    "celery/app/base.py: Celery.send_task; celery/app/amqp.py: AMQP.as_task_v2, "
    "AMQP._create_task_sender (send_task_message)",
)  # fmt: skip
H2 = Contract(
    "H2", "kombu", "Producer.batch(max_size) buffering a batch's publishes on the Redis transport",
    "bridge/handoff.py", "one pipelined round trip per batch; where kombu finds batching unsafe "
    "(supports_batch_publish) it publishes message by message without a word",
    "kombu/messaging.py: Producer.batch, _ProducerBatch; kombu/transport/redis.py: PublishBatch, "
    "Channel.supports_batch_publish, Transport.supports_batch_publish",
)  # fmt: skip
H3 = Contract(
    "H3", "amqp", "Channel.events['basic_ack' | 'basic_nack' | 'basic_return'] and their callbacks' "
    "arguments", "bridge/amqp_handoff.py", "waiting once per batch for RabbitMQ's publisher confirms "
    "(BatchConfirms); a batch with a refused message must fail, not be committed",
    "amqp/channel.py: Channel._on_basic_ack, _on_basic_nack, _on_basic_return, confirm_select",
)  # fmt: skip
VOLATILE = {"delivery_tag", "argsrepr", "kwargsrepr"}  # differ per message, or unread in properties


def _sender(redis_url: str) -> Any:
    from bridge.handoff import create_sender
    from orders.core.settings import Settings

    return create_sender(Settings.from_env({"REDIS_URL": redis_url, "CELERY_QUEUE": "h"}, env_file=None))


def test_h1_the_hand_off_sends_what_send_task_sends(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with H1.holds():
        from bridge.handoff import Handoff
        from orders.core.celery_config import task_reprs
        from orders.core.order import PROCESS_ORDER_TASK

        app = _sender(redis_url)
        wanted = {"reply_to", "create_sent_event", "ignore_result", "origin", "argsrepr", "kwargsrepr"}
        params = set(inspect.signature(app.amqp.create_task_message).parameters)
        assert wanted <= params, f"create_task_message no longer takes {sorted(wanted - params)}"
        Handoff(app, "h").hand_off([(ORDER, ORIGIN)])
        app.send_task(PROCESS_ORDER_TASK, args=(ORDER, ORIGIN), task_id="o-1", queue="h",
                      **task_reprs(ORDER, ORIGIN))  # fmt: skip
        ours, celerys = (json.loads(raw) for raw in client.lrange("h", 0, -1)[::-1])
        assert ours["headers"] == celerys["headers"], "the task headers differ from send_task's"
        assert ours["body"] == celerys["body"]
        same = {k: v for k, v in celerys["properties"].items() if k not in VOLATILE}
        assert {k: v for k, v in ours["properties"].items() if k not in VOLATILE} == same
        declared: list[Any] = []
        with app.producer_or_acquire() as producer:
            producer.maybe_declare = lambda entity, *a, **k: declared.append(entity)
            message = app.amqp.create_task_message("o-2", PROCESS_ORDER_TASK, (ORDER, ORIGIN))
            app.amqp.send_task_message(producer, PROCESS_ORDER_TASK, message, queue="h", retry=False,
                                       declare=[])  # fmt: skip
        assert declared == [], f"declare=[] still declared {declared}"


def test_h2_a_batch_reaches_redis_in_one_go_when_it_ends(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with H2.holds():
        app = _sender(redis_url)
        with app.connection_for_write() as conn:
            assert conn.default_channel.supports_batch_publish, "kombu finds batching unsafe here"
            producer = conn.Producer()
            with producer.batch(max_size=10):
                for n in range(3):
                    producer.publish({"n": n}, routing_key="h2")
                assert client.llen("h2") == 0, "published one by one, not batched"
            assert client.llen("h2") == 3


class _Channel:
    """A py-amqp channel's confirm surface, without a server: its events and confirm_select."""

    def __init__(self) -> None:
        self.events: dict[str, set[Any]] = defaultdict(set)

    def confirm_select(self) -> None:
        pass


def test_h3_py_amqps_confirm_events_reach_the_batch() -> None:
    with H3.holds():
        import amqp

        from bridge.amqp_handoff import BatchConfirms

        channel = _Channel()
        confirms = BatchConfirms(channel)
        for _ in range(3):
            confirms.published()
        amqp.Channel._on_basic_ack(channel, 2, True)  # RabbitMQ confirms 1 and 2 at once
        assert confirms._unconfirmed == {3}, f"after a multiple ack: {confirms._unconfirmed}"
        amqp.Channel._on_basic_nack(channel, 3, False)
        amqp.Channel._on_basic_return(channel, 312, "NO_ROUTE", "", "h3", SimpleNamespace())
        assert not confirms._unconfirmed and len(confirms._refused) == 2, f"refused: {confirms._refused}"
