"""Celery's task message for an order, encoded once as a template: per order, only its own fields go in.

The bridge sends every order to one task on one queue from one process, so of the message ``send_task``
builds and kombu encodes (~1.2 KB on Redis) only a few fields differ between orders: the task id (three
times: ``id``, ``root_id``, ``correlation_id``), the two arguments, their readable forms (``argsrepr``,
``kwargsrepr``), the trace headers and, on Redis, kombu's delivery tag. A template is Celery's own message
for a placeholder order (:func:`celery_task_message`, contract H1), encoded once the way the broker's
transport encodes it: for Redis, the one JSON string kombu's transport pushes (:class:`RedisTemplate`,
contract H4); for RabbitMQ, the body and the properties py-amqp sends (bridge/amqp_message.py, H5).
Rendering an order fills the slots with its JSON-encoded values. The contract tests compare the result
with what ``send_task`` publishes, field by field. ``BRIDGE_HANDOFF=celery`` (and the stock lane) build
each message with Celery instead (bridge/handoff.py).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from celery import Celery
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as kombu_dumps

from orders.core.order import PROCESS_ORDER_TASK, OrderPayload, RecordOrigin
from orders.core.trace_context import TraceHeaders

# The placeholder slots: ids, arguments, readable forms; the trace headers' slot is a header of its own.
ID, ORDER, ORIGIN, ARGSREPR, KWARGSREPR, TRACE, BODY, TAG = (
    "id", "order", "origin", "argsrepr", "kwargsrepr", "trace", "body", "tag",
)  # fmt: skip


class TemplateError(ValueError):
    """Celery's message did not have the shape the template expects (a new Celery or kombu?)."""


def slot(name: str) -> str:
    """The placeholder value of a slot (ASCII: JSON and AMQP encode it as it is)."""
    return f"@orders-slot:{name}@"


def celery_task_message(
    app: Celery, sender: str, task_id: str, args: tuple[Any, Any], argsrepr: str, kwargsrepr: str,
    sent_event: bool = False,
) -> Any:  # fmt: skip
    """Celery's (headers, properties, body, sent_event) for one order, as ``send_task`` builds them
    (contract H1): its message builder, with ``sender`` (``anon_nodename()``) as the origin and the
    thread's oid as reply-to, as send_task passes them."""
    return app.amqp.create_task_message(
        task_id,
        PROCESS_ORDER_TASK,
        args,
        reply_to=app.thread_oid,
        create_sent_event=sent_event,
        ignore_result=None,  # as send_task sends it: the worker's setting decides
        origin=sender,
        argsrepr=argsrepr,
        kwargsrepr=kwargsrepr,
    )


def placeholder_message(app: Celery, sender: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Celery's headers, properties and body for an order whose fields are all slots.

    Its reply-to is the oid of the thread that builds the template: the bridge builds it and hands off
    in the same thread, as send_task would answer there.
    """
    headers, properties, body, _ = celery_task_message(
        app, sender, slot(ID), (slot(ORDER), slot(ORIGIN)), slot(ARGSREPR), slot(KWARGSREPR)
    )
    return headers, properties, body


def delivery_mode(app: Celery, queue: str) -> int:
    """The delivery mode send_task gives the queue's messages (the exchange's, else Celery's default:
    persistent), as kombu's producer writes it."""
    exchange_mode = app.amqp.queues[queue].exchange.delivery_mode
    return int(maybe_delivery_mode(exchange_mode or app.conf.task_default_delivery_mode))


def json_format(text: str, slots: Mapping[str, int]) -> str:
    """``text`` (JSON) as a %-format string: each quoted slot becomes ``%(name)s``; ``slots`` says how
    many times each must occur. The trace slot is a whole header (``, "slot": "slot"``).

    Raises :class:`TemplateError` when one does not occur as often as expected.
    """
    form = text.replace("%", "%%")
    for name, times in slots.items():
        quoted = json.dumps(slot(name))
        target = f", {quoted}: {quoted}" if name == TRACE else quoted
        if (found := form.count(target)) != times:
            raise TemplateError(f"slot {name} occurs {found} times in {text[:300]!r}, not {times}")
        form = form.replace(target, f"%({name})s")
    return form


def trace_items(trace: TraceHeaders | None, names: frozenset[str]) -> str:
    """The trace headers as the last members of the JSON headers object ('' for none), where Celery
    merges them (``headers.update``). Raises ValueError for one that would replace Celery's own."""
    if not trace:
        return ""
    if names.intersection(trace):
        raise ValueError(f"trace headers {sorted(names.intersection(trace))} would replace Celery's own")
    return ", " + json.dumps(trace)[1:-1]


class RedisTemplate:
    """The message kombu's Redis transport pushes for an order: one JSON string, the body base64-encoded.

    Its layout is kombu's ``prepare_message`` and ``_inplace_augment_message`` (contract H4): the body,
    content type and encoding, Celery's headers, and Celery's properties with the delivery mode, the
    delivery info (anonymous exchange, the queue as routing key), priority 0, the body encoding and a
    new delivery tag (a uuid4, as kombu's) per message.
    """

    def __init__(self, app: Celery, queue: str, sender: str) -> None:
        headers, properties, body = placeholder_message(app, sender)
        content_type, content_encoding, body_text = serialize(body, serializer=app.conf.task_serializer)
        self._body = json_format(body_text, {ORDER: 1, ORIGIN: 1})
        self._headers = frozenset(headers)
        message = {
            "body": slot(BODY),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": {**headers, slot(TRACE): slot(TRACE)},
            "properties": {
                **properties,
                "delivery_mode": delivery_mode(app, queue),
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": slot(TAG),
            },
        }
        slots = {ID: 3, ARGSREPR: 1, KWARGSREPR: 1, TRACE: 1, BODY: 1, TAG: 1}
        self._message = json_format(kombu_dumps(message), slots)

    def body(self, payload: OrderPayload, origin: RecordOrigin) -> str:
        """The task's body, ``[[order, origin], {}, {callbacks...}]``, as kombu's serializer writes it."""
        return self._body % {ORDER: json.dumps(payload), ORIGIN: json.dumps(origin)}

    def render(
        self, task_id: str, payload: OrderPayload, origin: RecordOrigin, reprs: Mapping[str, str],
        trace: TraceHeaders | None,
    ) -> str:  # fmt: skip
        """The whole message for one order, as the Redis transport would push it."""
        body = base64.b64encode(self.body(payload, origin).encode()).decode("ascii")
        return self._message % {
            ID: json.dumps(task_id),
            ARGSREPR: json.dumps(reprs[ARGSREPR]),
            KWARGSREPR: json.dumps(reprs[KWARGSREPR]),
            TRACE: trace_items(trace, self._headers),
            BODY: f'"{body}"',
            TAG: f'"{uuid.uuid4()}"',
        }
