"""The hand-off to RabbitMQ: a batch counts as handed off once RabbitMQ confirmed every message of it.

kombu's ``confirm_publish`` waits for each message's confirm in turn (~870 messages/s here); the
bridge instead publishes the whole batch, then waits once for the confirms of all of it (~2,900/s,
measured with 10,000 task messages in batches of 500). A message RabbitMQ refuses (nack) or cannot
route (returned: the queue is gone) fails the batch, and the bridge hands the same records off
again; the workers' dedupe absorbs what had gone through. The queue's depth is read elsewhere
(``orders.core.queue_depth``), on a connection of its own: this one is the publisher's alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import amqp
from kombu.exceptions import OperationalError

from bridge.amqp_message import AmqpTemplate
from bridge.handoff import Handoff, TraceHeadersList, message_headers
from orders.core.order import OrderPayload, RecordOrigin

# How long a batch may wait for its confirms before the hand-off counts as failed (and is retried).
CONFIRM_TIMEOUT = 30.0
# What py-amqp raises when RabbitMQ or the connection fails; socket errors are OSErrors.
AMQP_ERRORS = (amqp.exceptions.AMQPError, OSError)


class BatchConfirms:
    """Publisher confirms on one channel, awaited per batch (RabbitMQ numbers a channel's publishes)."""

    def __init__(self, channel: Any) -> None:
        channel.confirm_select()
        self._channel = channel
        self._next_tag = 1
        self._unconfirmed: set[int] = set()
        self._refused: list[str] = []
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)

    def published(self) -> None:
        self._unconfirmed.add(self._next_tag)
        self._next_tag += 1

    def wait(self, timeout: float) -> None:
        """Until every message published so far is confirmed; OperationalError if one was refused."""
        deadline = time.monotonic() + timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                unconfirmed = len(self._unconfirmed)
                raise OperationalError(f"RabbitMQ left {unconfirmed} messages unconfirmed for {timeout:.0f}s")
            self._channel.connection.drain_events(timeout=remaining)
        refused, self._refused = self._refused, []
        if refused:
            raise OperationalError(f"RabbitMQ did not take {len(refused)} message(s): {refused[0]}")

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool, *_: Any) -> None:
        self._settle(delivery_tag, multiple)
        self._refused.append(f"nacked (delivery tag {delivery_tag})")

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # Sent before the message's ack: unroutable, mandatory messages are acked, not nacked.
        self._refused.append(f"returned as unroutable (exchange {exchange!r}, key {routing_key!r}): {exc}")


class AmqpHandoff(Handoff):
    """Hands batches to RabbitMQ on a connection of its own; returns once RabbitMQ confirmed them."""

    TEMPLATE = AmqpTemplate

    def __init__(
        self, app: Any, queue: str, confirm_timeout: float = CONFIRM_TIMEOUT, template: bool = True
    ) -> None:
        super().__init__(app, queue, template)
        self._confirm_timeout = confirm_timeout
        self._connection: Any = None
        self._confirms: BatchConfirms | None = None

    def hand_off(
        self, orders: Sequence[tuple[OrderPayload, RecordOrigin]], trace_headers: TraceHeadersList = None
    ) -> None:
        """Publish every order, then wait for RabbitMQ's confirms; raises OperationalError otherwise."""
        with self._failing_closes_all("hand-off"):
            producer = self._producer or self._open_producer()
            assert self._confirms is not None
            if self._template is not None and self._declare is None:
                producer.maybe_declare(self._app.amqp.queues[self._queue])
            for i, (payload, origin) in enumerate(orders):
                # mandatory: a message no queue takes comes back (and fails the batch), not dropped.
                headers = message_headers(trace_headers, i)
                if self._template is None:
                    self._publish(producer, payload, origin, headers, mandatory=True)
                else:  # py-amqp's publish, as kombu's producer calls it (H5)
                    message = self._render(payload, origin, headers)
                    producer.channel.basic_publish(message, "", self._queue, mandatory=True)
                self._confirms.published()
            self._confirms.wait(self._confirm_timeout)
        self._declare = []

    def close(self) -> None:
        """Close the connection (unconfirmed messages were never counted as handed off)."""
        connection, self._connection = self._connection, None
        self._producer = self._confirms = None
        self._declare = None  # a new connection declares the queue again, in case it went away
        if connection is not None:
            with contextlib.suppress(*AMQP_ERRORS, OperationalError):
                connection.release()

    def _ensure_connection(self) -> Any:
        if self._connection is None:
            # Confirms per batch here, not kombu's per message (the workers' setting).
            connection = self._app.connection_for_write(transport_options={"confirm_publish": False})
            connection.ensure_connection(max_retries=1)
            self._connection = connection
        return self._connection

    def _open_producer(self) -> Any:
        channel = self._ensure_connection().channel()
        self._confirms = BatchConfirms(channel)
        self._producer = self._app.amqp.Producer(channel, auto_declare=False)
        return self._producer

    @contextlib.contextmanager
    def _failing_closes_all(self, what: str) -> Iterator[None]:
        """Any broker error closes the connection (the retry starts afresh) and is raised as kombu's
        OperationalError, which the bridge retries with backoff."""
        try:
            yield
        except OperationalError:
            self.close()
            raise
        except AMQP_ERRORS as exc:
            self.close()
            raise OperationalError(f"RabbitMQ {what} failed: {exc!r}") from exc
