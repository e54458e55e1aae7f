"""Dead letters: the original record, unchanged, on the DLQ topic with headers saying why.

A record too large to travel with its headers goes without its value: ``__orders.errors.value.dropped``
and ``__orders.errors.original.size`` say so, and the topic, partition and offset point back at it.

Headers follow Kafka Connect's dead-letter-queue convention (``__connect.errors.*``, UTF-8 strings),
so tools that read Connect's DLQs read ours; what Connect has no header for (attempts, the original
timestamp, the consumer group, when it failed) uses the same style under ``__orders.errors.*``. The
order's trace context rides beside them as W3C ``traceparent``/``tracestate`` headers.
"""

from __future__ import annotations

import base64
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from orders.core.errors import Stage
from orders.core.order import RecordOrigin

H = "__connect.errors."
X = "__orders.errors."
HEADER_TOPIC = H + "topic"
HEADER_PARTITION = H + "partition"
HEADER_OFFSET = H + "offset"
HEADER_CONNECTOR = H + "connector.name"
HEADER_TASK_ID = H + "task.id"
HEADER_STAGE = H + "stage"
HEADER_CLASS = H + "class.name"
HEADER_EXC_CLASS = H + "exception.class.name"
HEADER_EXC_MESSAGE = H + "exception.message"
HEADER_EXC_STACKTRACE = H + "exception.stacktrace"
HEADER_ATTEMPTS = X + "attempts"
HEADER_TIMESTAMP = X + "original.timestamp"
HEADER_GROUP = X + "consumer.group"
HEADER_FAILED_AT = X + "failed.at"
# Set when the original bytes could not travel with the letter (over the producer's size limit).
HEADER_VALUE_DROPPED = X + "value.dropped"
HEADER_ORIGINAL_SIZE = X + "original.size"
CONNECTOR_NAME = "orders-bridge"
# Error texts are for people; a record's repr inside one must not push the letter over the size limit.
MAX_TEXT_HEADER = 16_384
MAX_KEPT_KEY = 1024


@dataclass(frozen=True)
class DeadLetter:
    """One failed record and why it failed."""

    key: bytes | None
    value: bytes
    origin: RecordOrigin
    stage: Stage
    error_class: str
    error_message: str
    stacktrace: str
    attempts: int
    component: str  # which code gave up on it, e.g. "bridge.consumer" or "orders.process_order"
    task_id: str = ""
    value_dropped_size: int | None = None  # the original value's size, when it was left out
    # W3C traceparent/tracestate: the context of the span that gave up on it (or, untraced, the one the
    # order arrived with), so `orders dlq replay` can link back to the order's trace.
    trace_headers: Mapping[str, str] | None = None

    @classmethod
    def for_exception(cls, exc: BaseException, stacktrace: str | None = None, **fields: Any) -> DeadLetter:
        """Describe ``exc``; ``stacktrace`` overrides the one taken from the exception itself."""
        if stacktrace is None:
            stacktrace = "".join(traceback.format_exception(exc))
        return cls(
            error_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
            error_message=str(exc),
            stacktrace=stacktrace,
            **fields,
        )

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        fields = {
            HEADER_TOPIC: self.origin["topic"],
            HEADER_PARTITION: str(self.origin["partition"]),
            HEADER_OFFSET: str(self.origin["offset"]),
            HEADER_CONNECTOR: CONNECTOR_NAME,
            HEADER_TASK_ID: self.task_id,
            HEADER_STAGE: self.stage,
            HEADER_CLASS: self.component,
            HEADER_EXC_CLASS: self.error_class,
            HEADER_EXC_MESSAGE: _clipped(self.error_message),
            HEADER_EXC_STACKTRACE: _clipped(self.stacktrace),
            HEADER_ATTEMPTS: str(self.attempts),
            HEADER_TIMESTAMP: str(self.origin["timestamp"]),
            HEADER_GROUP: self.origin["group"],
            HEADER_FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if self.value_dropped_size is not None:
            fields[HEADER_VALUE_DROPPED] = "true"
            fields[HEADER_ORIGINAL_SIZE] = str(self.value_dropped_size)
        fields.update(self.trace_headers or {})
        return [(name, value.encode("utf-8", "replace")) for name, value in fields.items()]

    def size(self) -> int:
        """Bytes the letter takes in a Kafka record: key, value and headers (record framing aside)."""
        headers = sum(len(name) + len(value or b"") for name, value in self.headers())
        return len(self.key or b"") + len(self.value) + headers

    def without_value(self) -> DeadLetter:
        """The same letter without the original bytes; headers say so and give their size and offset.

        A key too long to be an order's (the record's own) is left out as well.
        """
        key = self.key if self.key is None or len(self.key) <= MAX_KEPT_KEY else None
        return replace(self, key=key, value=b"", value_dropped_size=len(self.value))


def _clipped(text: str) -> str:
    if len(text) <= MAX_TEXT_HEADER:
        return text
    return text[:MAX_TEXT_HEADER] + f"... [{len(text) - MAX_TEXT_HEADER} characters clipped]"


def origin_of(message: Message, group: str) -> RecordOrigin:
    """The origin of a consumed record, JSON-safe (bytes as base64)."""
    key = message.key()
    _, timestamp = message.timestamp()
    return {
        "topic": message.topic() or "",
        "partition": message.partition() or 0,
        "offset": message.offset() or 0,
        "timestamp": timestamp,
        "key": base64.b64encode(key).decode() if key is not None else None,
        "value": base64.b64encode(message.value() or b"").decode(),
        "group": group,
    }


def decode_origin_bytes(origin: RecordOrigin) -> tuple[bytes | None, bytes]:
    key = base64.b64decode(origin["key"]) if origin["key"] is not None else None
    return key, base64.b64decode(origin["value"])
