"""What the kombu contracts drive: our transport's channel in kombu's own event loop, on a real Redis."""

from __future__ import annotations

import json
from typing import Any

from kombu import Connection, Consumer, Queue
from kombu.asynchronous import Hub

FAST = "worker.transport:Transport"  # as orders.core.celery_config names it (FAST_TRANSPORT)
ONE_LIST = {"priority_steps": [0]}  # one Redis list per queue, as the project configures kombu


class EventLoop:
    """A kombu consumer on ``transport``, driven by kombu's Hub as a Celery worker drives it.

    ``ack`` says which message bodies its callback acknowledges (all by default); the rest it holds,
    as a worker holds a retry waiting out its countdown.
    """

    def __init__(self, redis_url: str, queue: str, prefetch: int = 4, transport: str = FAST, ack: Any = None):
        self.hub = Hub()
        self.conn = Connection(redis_url, transport=transport, transport_options=ONE_LIST)
        self.conn.transport.register_with_event_loop(self.conn.connection, self.hub)
        self.channel = self.conn.channel()
        self.received: list[int] = []
        self._ack = ack or (lambda n: True)
        self.consumer = Consumer(self.channel, [Queue(queue)], callbacks=[self._on_message], accept=["json"])
        self.consumer.qos(prefetch_count=prefetch)
        self.consumer.consume()

    def _on_message(self, body: dict[str, int], message: Any) -> None:
        self.received.append(body["n"])
        if self._ack(body["n"]):
            message.ack()

    def run_until(self, count: int, ticks: int = 2000) -> None:
        for _ in range(ticks):
            if len(self.received) >= count:
                return
            self.hub.run_once()
        raise AssertionError(f"the consumer received {len(self.received)} of {count} messages")

    def close(self) -> None:
        self.consumer.cancel()
        self.channel.close()
        self.conn.close()
        self.hub.close()


def publish(redis_url: str, queue: str, numbers: range) -> None:
    """Messages ``{"n": n}`` published by kombu's own Redis transport, one list per queue."""
    with Connection(redis_url, transport_options=ONE_LIST) as conn:
        simple = conn.SimpleQueue(queue)
        for n in numbers:
            simple.put({"n": n})
        simple.close()


def tag_of(raw: bytes) -> str:
    return str(json.loads(raw)["properties"]["delivery_tag"])
