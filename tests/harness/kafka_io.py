"""Test-side Kafka helpers: produce framed orders (good or deliberately bad) and read topics back."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message, Producer


def produce_raw(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) pairs as they are and wait for every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors: list[Any] = []
    for key, value in records:
        producer.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0, "records not delivered within 30 s"
    assert not errors, errors


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Message]:
    """Read a topic from the start until ``expected`` records arrived or ``timeout`` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def headers_of(message: Message) -> dict[str, str]:
    return {name: (value or b"").decode() for name, value in (message.headers() or [])}
