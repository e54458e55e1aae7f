"""The task: thin. Payload -> Order, inject faults, record in the aggregate; errors -> retry or DLQ."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.utils.log import get_task_logger
from confluent_kafka import KafkaException

from orders.core.aggregate import Event, Status, dead_letter_event
from orders.core.celery_config import task_reprs
from orders.core.control import FailureRateOverride
from orders.core.dead_letter import DeadLetter, DeadLetterNotDelivered, decode_origin_bytes
from orders.core.errors import InvalidOrder, OrderError, PermanentError, TransientError
from orders.core.order import NOOP_TASK, PROCESS_ORDER_TASK, OrderPayload, RecordOrigin, order_from_payload
from worker import metrics
from worker.aggregate import AggregateWriter
from worker.celery import app, settings
from worker.dead_letter import publish_dead_letter
from worker.faults import FailureInjector, configured_injector, with_override

logger = get_task_logger(__name__)

# Seconds before an order whose dead letter the DLQ topic refused is tried again.
DLQ_REQUEUE_COUNTDOWN = 5
# Seconds a worker waits before handing back an order it could not record (Redis unreachable).
AGGREGATE_DOWN_PAUSE = 1


@functools.cache
def injector() -> FailureInjector:
    return configured_injector(settings())


@functools.cache
def redis_client() -> redis.Redis:
    """One Redis client per process (redis-py's pool reconnects after fork)."""
    return redis.Redis.from_url(settings().redis_url)


@functools.cache
def aggregate() -> AggregateWriter:
    return AggregateWriter(redis_client(), settings().dedupe_ttl_seconds)


@functools.cache
def failure_override() -> FailureRateOverride:
    return FailureRateOverride(redis_client())


def current_injector() -> FailureInjector:
    """The configured injector, with the transient rate a dashboard may have set (if injection is on)."""
    return with_override(injector(), settings(), lambda: failure_override().current())


class OrderTask(Task):
    """Hooks: count each scheduled retry; dead-letter an order that failed for good."""

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, except that a retry the broker did not take hands the order back.

        Celery rejects the message *without* requeueing when it cannot publish the retry; if the
        broker is back by the time of that reject, the order is gone. Requeued, it runs again (or,
        with the broker still down, returns after the visibility timeout).
        """
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            logger.warning("retry of %s not published (%s); handing it back", self.request.id, exc.reason)
            raise Reject(exc.reason, requeue=True) from exc

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        metrics.OUTCOMES.labels("retried").inc()
        with _figures_only(task_id):
            _note(args, "retrying", f"attempt {self.request.retries + 1}: {exc}", counts="retry_attempts")

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        letter = self._dead_letter(exc, task_id, args, einfo)
        try:
            publish_dead_letter(settings(), letter)
        except (DeadLetterNotDelivered, KafkaException, BufferError) as dlq_exc:
            logger.error("order %s not dead-lettered (%s); requeueing it", task_id, dlq_exc)
            metrics.DLQ_PUBLISHES.labels("failed").inc()
            metrics.OUTCOMES.labels("requeued").inc()
            self._requeue()
            return
        metrics.DLQ_PUBLISHES.labels("ok").inc()
        metrics.DEAD_LETTERS.labels(letter.stage).inc()
        metrics.OUTCOMES.labels("dead_lettered").inc()
        metrics.ATTEMPTS.observe(letter.attempts)
        with _figures_only(task_id):
            _note(args, "dlq", f"{type(exc).__name__}: {exc}", counts="dlq")
            aggregate().count_event(dead_letter_event(letter.stage))  # one more round trip, per dead letter

    def signature_from_request(  # type: ignore[override]
        self, request: Any = None, args: Any = None, kwargs: Any = None, queue: Any = None, **options: Any
    ) -> Any:
        """Retries and requeues keep the readable arguments Flower shows for the first attempt."""
        order, origin = _split_args(args if args is not None else (request or self.request).args)
        if order is not None and origin is not None:
            options = {**task_reprs(order, origin), **options}
        return super().signature_from_request(request, args, kwargs, queue, **options)

    def _requeue(self) -> None:
        """Never drop an order the DLQ did not take: publish the same message again, for later.

        The copy keeps the task id and retry count and reaches the broker before this message is
        acknowledged. (Raising Reject here would do the same on prefork but stops a solo worker.)
        """
        self.signature_from_request(countdown=DLQ_REQUEUE_COUNTDOWN).apply_async()

    def _dead_letter(self, exc: BaseException, task_id: str, args: Any, einfo: Any) -> DeadLetter:
        order, origin = _split_args(args)
        key, value = decode_origin_bytes(origin) if origin else (None, json.dumps(args).encode())
        stage = exc.stage if isinstance(exc, OrderError) else "process"
        return DeadLetter.for_exception(
            exc,
            stacktrace=getattr(einfo, "traceback", None),
            key=order["orderId"].encode() if order else key,
            value=value,
            origin=origin or _unknown_origin(),
            stage=stage,
            attempts=self.request.retries + 1,
            component=self.name,
            task_id=task_id,
        )


@contextlib.contextmanager
def _figures_only(task_id: str) -> Iterator[None]:
    """Counters and the activity list are figures: Redis away must not fail the order's hook.

    An exception from on_retry makes Celery fail the task, and on_failure would then dead-letter an
    order whose retry is already queued (seen in the Redis-restart scenario: counted and
    dead-lettered).
    """
    try:
        yield
    except redis.RedisError as exc:
        logger.warning("order %s: figures not recorded (%s)", task_id, exc)


def _note(args: Any, status: Status, detail: str, counts: Event) -> None:
    """Count the event and, for an order we can name, list it in the recent activity."""
    order, _ = _split_args(args)
    if order is None:
        aggregate().count_event(counts)
        return
    price = Decimal(order["price"]) if _is_decimal(order.get("price")) else Decimal(0)
    aggregate().note_status(
        str(order.get("orderId")), str(order.get("product")), price, status, detail, counts
    )


def _is_decimal(value: Any) -> bool:
    try:
        Decimal(value)
    except (TypeError, ArithmeticError, ValueError):
        return False
    return True


def _split_args(args: Any) -> tuple[OrderPayload | None, RecordOrigin | None]:
    if isinstance(args, list | tuple) and len(args) == 2 and all(isinstance(a, dict) for a in args):
        return args[0], args[1]
    return None, None


def _unknown_origin() -> RecordOrigin:
    return {
        "topic": "",
        "partition": -1,
        "offset": -1,
        "timestamp": 0,
        "key": None,
        "value": "",
        "group": "",
    }


@app.task(
    bind=True,
    base=OrderTask,
    name=PROCESS_ORDER_TASK,
    autoretry_for=(TransientError,),
    dont_autoretry_for=(PermanentError, InvalidOrder),
    # max_retries and the backoff (2, 4, 8 s by default) come from the settings when the worker
    # starts, through task_annotations (worker/celery.py): this module reads no environment.
    default_retry_delay=0,  # used only when the base is 0: retry at once
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(TransientError, PermanentError, InvalidOrder),  # expected: logged without traceback
)
def process_order(self: Task, order: OrderPayload, origin: RecordOrigin) -> bool:
    """Record one order in the running average; True if counted, False if it was a duplicate."""
    with metrics.PROCESSING.time():
        parsed = _parse(order)
        try:
            current_injector().check(parsed.order_id, self.request.retries)
            counted = aggregate().record_order(parsed.order_id, parsed.product, parsed.price_cents)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis being away is no fault of the order: never dead-letter it for that. Hand the
            # message back unacknowledged (if Redis is down the reject fails too, and the message
            # returns after the visibility timeout); the pause keeps a worker whose broker is up
            # from spinning on it.
            logger.warning("order %s: aggregate unreachable (%s); handing it back", parsed.order_id, exc)
            time.sleep(AGGREGATE_DOWN_PAUSE)
            raise Reject(exc, requeue=True) from exc
    metrics.OUTCOMES.labels("succeeded" if counted else "duplicate").inc()
    metrics.ATTEMPTS.observe(self.request.retries + 1)
    if counted and origin.get("timestamp", 0) > 0:
        metrics.LATENCY.observe(max(0.0, time.time() - origin["timestamp"] / 1000))
    if not counted:
        logger.info("order %s already counted; duplicate delivery ignored", parsed.order_id)
    return counted


def _parse(order: OrderPayload) -> Any:
    try:
        return order_from_payload(order)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidOrder(f"malformed task payload: {exc!r}") from exc


@app.task(name=NOOP_TASK, acks_late=True)
def noop() -> None:
    """Does nothing: `orders bench` drains a queue of these to measure the Celery ceiling."""
