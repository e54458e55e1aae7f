"""The bridge's message templates: kombu's Redis message layout and publish batch, py-amqp's frame writer."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import redis

from tests.contract.contract import Contract

ORIGIN = {"topic": "orders", "partition": 2, "offset": 41, "timestamp": 0, "key": "o-1", "value": "",
          "group": "g"}  # fmt: skip
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b"}
CASES = [  # (order, origin, trace headers)
    ({"orderId": "o-1", "product": "Laptop", "price": "999.99"}, ORIGIN, None),
    ({"orderId": "o-ü☃", "product": 'Ноутбук "漢字" \\ %s', "price": "0.01"}, {**ORIGIN, "key": None}, TRACE),
]
H4 = Contract(
    "H4", "kombu", "the Redis transport's message (virtual Channel.prepare_message and "
    "_inplace_augment_message: a base64 body, content type and encoding, headers, properties with "
    "delivery_mode, delivery_info, priority, body_encoding and a uuid4 delivery_tag) pushed by "
    "Channel._put as one JSON string; Channel.create_publish_batch(max_size) and its pipeline, executed "
    "once per batch",
    "bridge/task_message.py (RedisTemplate) and bridge/handoff.py (_push_rendered)",
    "rendering each order's message from a template, byte for byte what kombu would push, and pushing a "
    "batch of them in one round trip through the transport's own batch",
    "kombu/transport/virtual/base.py: Channel.prepare_message, basic_publish, _inplace_augment_message, "
    "Base64; kombu/transport/redis.py: Channel._put, create_publish_batch, PublishBatch",
)  # fmt: skip
H5 = Contract(
    "H5", "amqp", "basic_publish's frame writer (method_framing.frame_writer) taking a message's encoded "
    "properties from content._serialize_properties() and a bytes body as it is; Message.PROPERTIES and "
    "serialization.dumps' encoding of tables and short strings",
    "bridge/amqp_message.py (AmqpTemplate, EncodedMessage)",
    "publishing each order with its properties encoded from a template, byte for byte py-amqp's encoding "
    "of the message kombu's producer builds",
    "amqp/method_framing.py: frame_writer; amqp/serialization.py: GenericContent._serialize_properties, "
    "dumps, _write_table; amqp/basic_message.py: Message; kombu/transport/pyamqp.py: Channel.prepare_message",
)  # fmt: skip


def _sender(broker_url: str) -> Any:
    from bridge.handoff import create_sender
    from orders.core.settings import Settings

    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_BROKER_URL": broker_url, "CELERY_QUEUE": "h"}
    return create_sender(Settings.from_env(env, env_file=None))


def _render(template: Any, order: Any, origin: Any, trace: Any) -> Any:
    from orders.core.celery_config import task_reprs

    return template.render(order["orderId"], order, origin, task_reprs(order, origin), trace)


def test_h4_the_redis_transport_pushes_what_the_template_renders(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with H4.holds():
        from celery.utils.nodenames import anon_nodename

        from bridge.handoff import Handoff
        from bridge.task_message import RedisTemplate

        app = _sender(redis_url)
        template = RedisTemplate(app, "h4", anon_nodename())
        for order, origin, trace in CASES:
            Handoff(app, "h4", template=False).hand_off([(order, origin)], [trace])  # kombu's own push
            kombus = client.rpop("h4").decode()
            ours = _render(template, order, origin, trace)
            tags = [json.loads(m)["properties"]["delivery_tag"] for m in (kombus, ours)]
            assert all(uuid.UUID(tag).version == 4 for tag in tags), f"delivery tags {tags}"
            assert ours.replace(tags[1], tags[0]) == kombus, "the template's message is not kombu's"
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            batch = channel.create_publish_batch(max_size=2)
            batch.pipeline.lpush(channel._q_for_pri("h4", 0), "a", "b")
            assert client.llen("h4") == 0, "the batch's pipeline sent before it was executed"
            batch.pipeline.execute()
            batch.close()
        assert client.lrange("h4", 0, -1) == [b"b", b"a"]


def test_h5_py_amqp_sends_the_templates_encoded_properties() -> None:
    with H5.holds():
        from amqp import spec
        from amqp.method_framing import frame_writer
        from amqp.serialization import dumps
        from celery.utils.nodenames import anon_nodename
        from kombu.serialization import dumps as serialize
        from kombu.transport import pyamqp

        from bridge.amqp_message import AmqpTemplate
        from bridge.task_message import celery_task_message
        from orders.core.celery_config import task_reprs

        app, sender = _sender("amqp://guest:guest@127.0.0.1:1//"), anon_nodename()
        template = AmqpTemplate(app, "h5", sender)
        for order, origin, trace in CASES:
            headers, properties, body, _ = celery_task_message(
                app, sender, order["orderId"], (order, origin), **task_reprs(order, origin)
            )
            headers.update(trace or {})  # as send_task_message merges extra headers
            content_type, encoding, data = serialize(body, serializer="json")
            kombus = pyamqp.Channel.prepare_message(
                None, data, 0, content_type, encoding, headers, {**properties, "delivery_mode": 2}
            )
            ours = _render(template, order, origin, trace)
            assert ours._serialize_properties() == kombus._serialize_properties(), "properties differ"
            assert ours.body == data.encode(), "bodies differ"
        written: list[bytes] = []
        write = frame_writer(SimpleNamespace(frame_max=131072, bytes_sent=0),
                             SimpleNamespace(write=lambda view: written.append(bytes(view))))  # fmt: skip
        write(1, 1, spec.Basic.Publish, dumps("Bssbb", (0, "", "h5", True, False)), ours)
        frames = b"".join(written)
        assert ours._serialize_properties() in frames and ours.body in frames, "not what the writer sent"
