"""Dead letters: the original record, unchanged, on the DLQ topic with headers saying why.

Headers follow Kafka Connect's dead-letter-queue convention (``__connect.errors.*``, UTF-8 strings),
so tools that read Connect's DLQs read ours; what Connect has no header for (attempts, the original
timestamp, the consumer group, when it failed) uses the same style under ``__orders.errors.*``.
"""

from __future__ import annotations

import base64
import logging
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from orders.core.errors import Stage
from orders.core.order import RecordOrigin

log = logging.getLogger(__name__)

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
CONNECTOR_NAME = "orders-bridge"


class DeadLetterNotDelivered(Exception):
    """The DLQ topic did not acknowledge a dead letter; the order must not be acknowledged either."""


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
            HEADER_EXC_MESSAGE: self.error_message,
            HEADER_EXC_STACKTRACE: self.stacktrace,
            HEADER_ATTEMPTS: str(self.attempts),
            HEADER_TIMESTAMP: str(self.origin["timestamp"]),
            HEADER_GROUP: self.origin["group"],
            HEADER_FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        return [(name, value.encode("utf-8", "replace")) for name, value in fields.items()]


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


class DeadLetterPublisher:
    """Produces dead letters and tells which the broker acknowledged."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._failures: list[KafkaError] = []

    def publish(self, letter: DeadLetter) -> None:
        """Queue one dead letter; :meth:`wait` confirms it."""
        log.error(
            "dead letter %s[%s]@%s stage=%s after %d attempt(s): %s: %s",
            letter.origin["topic"], letter.origin["partition"], letter.origin["offset"],
            letter.stage, letter.attempts, letter.error_class, letter.error_message,
        )  # fmt: skip
        self._producer.produce(
            self._topic,
            letter.value,
            letter.key,
            headers=letter.headers(),
            on_delivery=self._delivered,
        )

    def wait(self, timeout: float) -> None:
        """Block until every queued dead letter is acknowledged; raise if any was not."""
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        if remaining or failures:
            reason = failures[0] if failures else f"{remaining} still unacknowledged after {timeout}s"
            raise DeadLetterNotDelivered(f"DLQ topic {self._topic} did not acknowledge: {reason}")

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failures.append(err)
