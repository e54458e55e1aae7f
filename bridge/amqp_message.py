"""Celery's task message for RabbitMQ from a template: the body, and the AMQP properties already encoded.

py-amqp encodes a message's properties, Celery's ~20 headers among them, field by field in Python for
every publish; most of it is the same for every order. :class:`AmqpTemplate` encodes Celery's message
for a placeholder order once (bridge/task_message.py), with py-amqp's own encoder, and cuts it at the
slots; per order it encodes only the order's fields. :class:`EncodedMessage` hands the result to
py-amqp's ``basic_publish``, whose frame writer asks the message for its encoded properties (contract H5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from struct import pack

import amqp
from amqp.serialization import dumps as amqp_dumps
from celery import Celery
from kombu.serialization import dumps as serialize

from bridge.task_message import (
    ARGSREPR,
    ID,
    KWARGSREPR,
    ORDER,
    ORIGIN,
    TemplateError,
    delivery_mode,
    json_format,
    placeholder_message,
    slot,
)
from orders.core.order import OrderPayload, RecordOrigin
from orders.core.trace_context import TraceHeaders

# Celery's headers that differ per order, in the slots they fill (id and root_id are both the task id).
HEADER_SLOTS = (ID, ARGSREPR, KWARGSREPR)


def text(value: str) -> bytes:
    """A string as py-amqp encodes one."""
    return value.encode("utf-8", "surrogatepass")


def longstr(value: str) -> bytes:
    """A table's string value: ``S``, its length in 4 bytes, its UTF-8."""
    data = text(value)
    return b"S" + pack(">I", len(data)) + data


def shortstr(value: str) -> bytes:
    """A property's short string: its length in 1 byte (struct.error past 255, as py-amqp), its UTF-8."""
    data = text(value)
    return pack("B", len(data)) + data


def cut(data: bytes, piece: bytes, times: int) -> list[bytes]:
    """``data`` split at every ``piece``, which must occur ``times`` times (TemplateError otherwise)."""
    parts = data.split(piece)
    if len(parts) != times + 1:
        raise TemplateError(f"{piece!r} occurs {len(parts) - 1} times in the encoded message, not {times}")
    return parts


class EncodedMessage(amqp.Message):  # type: ignore[misc]
    """A py-amqp message whose properties are encoded already (H5: the frame writer asks for them)."""

    __slots__ = ("_encoded",)

    def __init__(self, body: bytes, properties: bytes) -> None:
        super().__init__(body)
        self._encoded = properties

    def _serialize_properties(self) -> bytes:
        return self._encoded


class AmqpTemplate:
    """What kombu and py-amqp send for an order: the JSON body, and the properties (content type and
    encoding, Celery's headers as a table, delivery mode, priority 0, the task id as correlation id,
    reply-to) in py-amqp's encoding."""

    def __init__(self, app: Celery, queue: str, sender: str) -> None:
        headers, properties, body = placeholder_message(app, sender)
        content_type, content_encoding, body_text = serialize(body, serializer=app.conf.task_serializer)
        self._body = json_format(body_text, {ORDER: 1, ORIGIN: 1})
        self._headers = frozenset(headers)
        # The table's entries without its 4-byte length, cut where the slots' values go.
        entries = amqp_dumps("F", [headers])[4:]
        self._entries = self._cut_entries(entries)
        marker = {slot("headers"): slot("headers")}
        encoded = amqp.Message(
            b"", priority=0, content_type=content_type, content_encoding=content_encoding,
            application_headers=marker, **{**properties, "delivery_mode": delivery_mode(app, queue)},
        )._serialize_properties()  # fmt: skip
        self._head, after_table = cut(encoded, amqp_dumps("F", [marker]), 1)
        self._before_id, self._after_id = cut(after_table, shortstr(slot(ID)), 1)

    @staticmethod
    def _cut_entries(entries: bytes) -> list[tuple[bytes, str]]:
        """(constant bytes, the slot after them) pairs; the last slot is '' (nothing after)."""
        parts: list[tuple[bytes, str]] = [(entries, "")]
        for name in HEADER_SLOTS:
            split = []
            for constant, after in parts:
                pieces = constant.split(longstr(slot(name)))
                split += [(piece, name) for piece in pieces[:-1]] + [(pieces[-1], after)]
            parts = split
        found = sum(1 for _, name in parts if name)
        if found != 4:  # id, root_id, argsrepr, kwargsrepr
            raise TemplateError(f"Celery's headers hold {found} slots, not 4")
        return parts

    def render(
        self, task_id: str, payload: OrderPayload, origin: RecordOrigin, reprs: Mapping[str, str],
        trace: TraceHeaders | None,
    ) -> EncodedMessage:  # fmt: skip
        """The message for one order, ready for py-amqp's ``basic_publish``."""
        values = {
            ID: longstr(task_id),
            ARGSREPR: longstr(reprs[ARGSREPR]),
            KWARGSREPR: longstr(reprs[KWARGSREPR]),
        }
        table = b"".join([constant + values.get(name, b"") for constant, name in self._entries])
        if trace:
            table += self._trace_entries(trace)
        properties = b"".join(
            [self._head, pack(">I", len(table)), table, self._before_id, shortstr(task_id), self._after_id]
        )
        body = self._body % {ORDER: json.dumps(payload), ORIGIN: json.dumps(origin)}
        return EncodedMessage(body.encode(), properties)

    def _trace_entries(self, trace: TraceHeaders) -> bytes:
        """The trace headers after Celery's, where ``headers.update`` puts them."""
        if self._headers.intersection(trace):
            clash = sorted(self._headers.intersection(trace))
            raise ValueError(f"trace headers {clash} would replace Celery's own")
        return b"".join(shortstr(name) + longstr(value) for name, value in trace.items())
