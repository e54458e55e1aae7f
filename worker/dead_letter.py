"""The failure hook's DLQ publishing, with one Kafka producer per worker process.

librdkafka's threads do not survive fork(), so a producer is created lazily in the process that
uses it (each prefork child makes its own after the fork) and never inherited.
"""

from __future__ import annotations

import os

from orders.core.dead_letter import DeadLetter, DeadLetterPublisher
from orders.core.kafka import create_producer
from orders.core.settings import Settings

_publisher: DeadLetterPublisher | None = None
_publisher_pid = 0


def _get_publisher(settings: Settings) -> DeadLetterPublisher:
    global _publisher, _publisher_pid
    if _publisher is None or _publisher_pid != os.getpid():
        timeout_ms = int(settings.dlq_delivery_timeout * 1000)
        # Give up on a dead letter after the delivery timeout rather than hold it forever, so
        # the task can requeue the order instead of acknowledging it.
        producer = create_producer(settings, **{"message.timeout.ms": timeout_ms})
        _publisher, _publisher_pid = DeadLetterPublisher(producer, settings.dlq_topic), os.getpid()
    return _publisher


def publish_dead_letter(settings: Settings, letter: DeadLetter) -> None:
    """Publish and wait for the broker's acknowledgement; raises DeadLetterNotDelivered if none."""
    publisher = _get_publisher(settings)
    publisher.publish(letter)
    publisher.wait(settings.dlq_delivery_timeout + 5)
