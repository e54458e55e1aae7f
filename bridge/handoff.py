"""Publishing orders to Celery by task name (the Celery settings come from ``orders.core.celery_config``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename

from bridge.task_message import RedisTemplate, TemplateError, celery_task_message
from orders.core.broker_connection import publish_wait
from orders.core.celery_config import celery_config, task_id_for, task_reprs
from orders.core.order import PROCESS_ORDER_TASK, OrderPayload, RecordOrigin
from orders.core.settings import Settings
from orders.core.trace_context import TraceHeaders

# Per order of a batch, the trace headers (traceparent, tracestate) its task message carries; None: none.
TraceHeadersList = Sequence[TraceHeaders | None] | None

log = logging.getLogger(__name__)


def create_sender(settings: Settings, wait_replicas: int = 0) -> Celery:
    """A Celery app that only publishes; it knows the task by name, not by import.

    ``wait_replicas``: each batch waits until that many replicas of the broker's Redis have it
    (CELERY_BROKER_WAIT_REPLICAS, orders/core/replication.py), so no offset is stored on a push a
    failover could lose; a shortfall fails the batch like a refused push.
    """
    app = Celery("orders-bridge", set_as_current=False)
    config = celery_config(settings)
    if settings.broker_kind == "redis":
        wait = publish_wait(wait_replicas, settings.redis_wait_timeout)
        config["broker_transport_options"] = {**config["broker_transport_options"], **wait}
    app.conf.update(config)
    return app


class Handoff:
    """Hands batches of orders to the Celery broker; returns only once the broker accepted them.

    This one is for Redis; bridge/amqp_handoff.py has RabbitMQ's (:func:`create_handoff` picks). Neither
    reads the queue's depth: ``orders.core.queue_depth`` does, on a connection of its own.
    """

    # The message template of this broker's transport (bridge/task_message.py).
    TEMPLATE: Any = RedisTemplate

    def __init__(self, app: Celery, queue: str, template: bool = True) -> None:
        """``template``: each message from Celery's message encoded once (BRIDGE_HANDOFF=template), or
        built by Celery and kombu for every order (``celery``, the stock lane's)."""
        self._app = app
        self._queue = queue
        # Celery declares the queue with every message it sends; a profile of the bridge found ~16%
        # of its time there. Declaring it with the first batch is enough (None = Celery's default).
        self._declare: list[Any] | None = None
        self._producer: Any = None
        # send_task looks these up for every message (a gethostname call, a settings lookup).
        self._origin = anon_nodename()
        self._sent_event = bool(app.conf.task_send_sent_event)
        self._template: Any = self._new_template() if template else None

    def hand_off(
        self, orders: Sequence[tuple[OrderPayload, RecordOrigin]], trace_headers: TraceHeadersList = None
    ) -> None:
        """Publish every order; raises (kombu/redis errors) if the broker did not take them all.

        ``trace_headers``: per order, the trace context its message carries (or None), see
        :func:`message_headers`.
        """
        producer = self._producer or self._acquire_producer()
        try:
            if self._template is not None and producer.channel.supports_batch_publish:
                self._push_rendered(producer, orders, trace_headers)
            else:
                # One pipelined round trip per batch instead of one LPUSH per order; kombu flushes the
                # batch on leaving the block and raises if Redis did not take it (then we retry all).
                with producer.batch(max_size=max(len(orders), 1)):
                    for i, (payload, origin) in enumerate(orders):
                        self._publish(producer, payload, origin, message_headers(trace_headers, i))
        except BaseException:
            self._release()  # the retry starts from a producer the pool revives, as Celery's path does
            raise
        self._declare = []

    def _push_rendered(
        self, producer: Any, orders: Sequence[tuple[OrderPayload, RecordOrigin]], trace: TraceHeadersList
    ) -> None:
        """The batch's messages from the template, in one LPUSH (the list ends as one LPUSH per message
        leaves it), in the pipeline of a kombu publish batch (contract H4): one round trip, and whatever
        the transport adds to a batch's pipeline goes with it."""
        if self._declare is None:
            producer.maybe_declare(self._app.amqp.queues[self._queue])
        messages = [self._render(payload, origin, message_headers(trace, i))
                    for i, (payload, origin) in enumerate(orders)]  # fmt: skip
        channel = producer.channel
        batch = channel.create_publish_batch(max_size=len(messages))
        try:
            batch.pipeline.lpush(channel._q_for_pri(self._queue, 0), *messages)  # K7: the queue's one list
            batch.pipeline.execute()
        finally:
            batch.close()

    def _acquire_producer(self) -> Any:
        # Celery takes a producer from its pool and revives its channel for every publish: a sixth of
        # the bridge's time at moderate rates, where a batch holds one or two orders. One is kept.
        timeout = self._app.conf.broker_pool_acquire_timeout
        self._producer = self._app.producer_pool.acquire(block=True, timeout=timeout)
        return self._producer

    def _release(self) -> None:
        """Give the kept producer back to the pool (the next hand-off takes a fresh one)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.release()

    def _publish(
        self, producer: Any, payload: OrderPayload, origin: RecordOrigin, headers: TraceHeaders | None,
        **options: Any,
    ) -> None:  # fmt: skip
        """What ``send_task`` sends, built with the two calls it makes itself (Celery's message builder:
        contract H1 in worker/fast_path.py's list, whose test compares both messages).

        send_task also routes by name, looks for a parent task (twice), registers the id with the
        result backend and returns an AsyncResult. None of it applies to a process that is not a
        task and never reads results; docs/benchmarks.md has what skipping it saved.
        """
        message = celery_task_message(
            self._app, self._origin, task_id_for(payload), (payload, origin), **task_reprs(payload, origin),
            sent_event=self._sent_event,
        )  # fmt: skip
        # retry=False: the bridge retries the same records itself; no hidden waits.
        self._app.amqp.send_task_message(
            producer, PROCESS_ORDER_TASK, message, queue=self._queue, retry=False, declare=self._declare,
            headers=headers, **options,
        )  # fmt: skip

    def _new_template(self) -> Any:
        """This transport's template, or None (Celery builds every message) when Celery's message
        cannot be one: task-sent events on, or a message the template does not recognise."""
        if self._sent_event:
            log.info("task-sent events are on: each task message is built by Celery")
            return None
        try:
            return self.TEMPLATE(self._app, self._queue, self._origin)
        except TemplateError as exc:
            log.warning("each task message is built by Celery: no template of it (%s)", exc)
            return None

    def _render(self, payload: OrderPayload, origin: RecordOrigin, headers: TraceHeaders | None) -> Any:
        """One order's message from the template."""
        reprs = task_reprs(payload, origin)
        return self._template.render(task_id_for(payload), payload, origin, reprs, headers)

    def close(self) -> None:
        """Give the kept producer back (the process is about to exit)."""
        self._release()


def message_headers(trace_headers: TraceHeadersList, index: int) -> TraceHeaders | None:
    """The hook for tracing in the hand-off: extra message headers for one order (Celery merges them
    into its own; a worker reads them as ``task.request.traceparent``). None, as without tracing, adds
    nothing to the message and costs nothing."""
    return trace_headers[index] if trace_headers else None
