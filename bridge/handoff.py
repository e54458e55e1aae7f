"""Publishing orders to Celery by task name, and the Celery configuration both sides share."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename

from bridge.order import PROCESS_ORDER_TASK, OrderPayload, RecordOrigin
from bridge.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Longest a task may run before Celery kills it; part of the visibility-timeout arithmetic below.
TASK_TIME_LIMIT = 30
# How often a worker looks for unacknowledged messages past the visibility timeout.
RESTORE_SWEEP_SECONDS = 10


def longest_countdown(settings: Settings) -> int:
    """The longest retry countdown autoretry can choose: base * 2**(retries-1), capped."""
    if settings.max_retries == 0:
        return 0
    return min(settings.retry_backoff_max, settings.retry_backoff_base * 2 ** (settings.max_retries - 1))


def visibility_timeout(settings: Settings) -> int:
    """How long the Redis transport waits before redelivering an unacknowledged message.

    With acks_late a message stays unacknowledged while its task runs, and a retry scheduled with
    a countdown sits unacknowledged in the worker until its ETA. If either outlasts the visibility
    timeout, Redis hands the message to a second worker and the order runs twice. So the timeout
    must exceed the longest countdown plus the task time limit; a margin covers prefetched
    messages waiting their turn. It must not be much longer either: it is also how long orders
    held by a worker that died (SIGKILL, OOM) wait before another worker gets them.

    ``VISIBILITY_TIMEOUT`` overrides the margin (tests that kill workers use a short one); raises
    :class:`SettingsError` if it does not exceed the longest countdown plus the task time limit.
    """
    floor = longest_countdown(settings) + TASK_TIME_LIMIT
    if settings.visibility_timeout is None:
        return floor + 60
    if settings.visibility_timeout <= floor:
        raise SettingsError(
            "Invalid configuration:\n  VISIBILITY_TIMEOUT: must exceed the longest retry countdown plus the "
            f"task time limit ({floor} s), or a waiting retry runs twice (got {settings.visibility_timeout})"
        )
    return settings.visibility_timeout


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the bridge (sender) and the workers."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.celery_result_backend,
        "task_ignore_result": settings.celery_result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.celery_queue,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(settings),
            # kombu sweeps expired unacked messages back only every interval x throttle seconds
            # (10 x 10 by default since 5.7): scan on every 10 s tick instead, so a dead worker's
            # orders return within the visibility timeout + 10 s, not + 100 s.
            "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
            "unacked_restore_throttle": 1,
            # One Redis list per queue: worker/transport.py fetches from it atomically.
            "priority_steps": [0],
        },
        "broker_connection_retry_on_startup": True,
        # Our Redis transport reuses one client per channel (worker/transport.py).
        "broker_transport": None if settings.stock_transport else "worker.transport:Transport",
        "enable_utc": True,
    }


def create_sender(settings: Settings) -> Celery:
    """A Celery app that only publishes; it knows the task by name, not by import."""
    app = Celery("orders-bridge", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def task_reprs(payload: OrderPayload, origin: RecordOrigin) -> dict[str, str]:
    """How Flower shows a task: ``orderId product price`` and ``topic[partition]@offset``."""
    return {
        "argsrepr": f"{payload['orderId']} {payload['product']} {payload['price']}",
        "kwargsrepr": f"{origin['topic']}[{origin['partition']}]@{origin['offset']}",
    }


def task_id_for(order: OrderPayload) -> str:
    """Derived from the order, so a redelivered or replayed order keeps its identity in Flower."""
    return order["orderId"]


class Handoff:
    """Hands batches of orders to the Celery broker; returns only once the broker accepted them."""

    def __init__(self, app: Celery, queue: str, broker: redis.Redis) -> None:
        self._app = app
        self._queue = queue
        self._broker = broker
        # Celery declares the queue with every message it sends; a profile of the bridge found ~16%
        # of its time there. Declaring it with the first batch is enough (None = Celery's default).
        self._declare: list[Any] | None = None
        self._producer: Any = None
        # send_task looks these up for every message (a gethostname call, a settings lookup).
        self._origin = anon_nodename()
        self._sent_event = bool(app.conf.task_send_sent_event)

    def hand_off(self, orders: Sequence[tuple[OrderPayload, RecordOrigin]]) -> None:
        """Publish every order; raises (kombu/redis errors) if the broker did not take them all."""
        producer = self._producer or self._acquire_producer()
        try:
            # One pipelined round trip per batch instead of one LPUSH per order; kombu flushes the
            # batch on leaving the block and raises if Redis did not take it (then we retry all).
            with producer.batch(max_size=max(len(orders), 1)):
                for payload, origin in orders:
                    self._publish(producer, payload, origin)
        except BaseException:
            self._release()  # the retry starts from a producer the pool revives, as Celery's path does
            raise
        self._declare = []

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

    def _publish(self, producer: Any, payload: OrderPayload, origin: RecordOrigin) -> None:
        """What ``send_task`` sends, built with the two calls it makes itself.

        send_task also routes by name, looks for a parent task (twice), registers the id with the
        result backend and returns an AsyncResult. None of it applies to a process that is not a
        task and never reads results, and skipping it cut the hand-off's CPU from ~231 to ~131 µs
        per order (20,000 orders in batches of 500, same process, medians of 5).
        """
        amqp = self._app.amqp
        message = amqp.create_task_message(
            task_id_for(payload),
            PROCESS_ORDER_TASK,
            (payload, origin),
            reply_to=self._app.thread_oid,
            create_sent_event=self._sent_event,
            ignore_result=None,  # as send_task sends it: the worker's setting decides
            origin=self._origin,
            **task_reprs(payload, origin),
        )
        # retry=False: the bridge retries the same records itself; no hidden waits.
        amqp.send_task_message(
            producer, PROCESS_ORDER_TASK, message, queue=self._queue, retry=False, declare=self._declare
        )

    def queue_depth(self) -> int:
        """Messages waiting in the Celery queue (the Redis list kombu keeps for it)."""
        return int(self._broker.llen(self._queue))  # type: ignore[arg-type]
