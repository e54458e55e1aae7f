"""The task's base class: what happens around an attempt (a retry scheduled, an order failed for good).

Celery calls these hooks; they decide nothing about the order itself: a retry is counted and listed,
an order that failed for good is dead-lettered (worker/dead_letter.py) or, when that cannot be done
now, its message is published again for later. An order is never dropped for want of a DLQ or Redis.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.utils.log import get_task_logger
from confluent_kafka import KafkaException
from opentelemetry.trace import SpanKind

from orders.core.aggregate import Event, Status, dead_letter_event
from orders.core.celery_config import task_reprs
from orders.core.dead_letter import DeadLetter, decode_origin_bytes
from orders.core.dead_letter_publisher import DeadLetterNotDelivered
from orders.core.errors import OrderError, TransientError
from orders.core.order import MAX_ID_LENGTH, OrderPayload, RecordOrigin, origin_is_valid
from orders.core.redis_client import CLUSTER_UNREACHABLE, ReplicasBehind, Unwritable
from orders.core.shards import StaleLayout
from orders.core.trace_context import trace_id_of
from worker import metrics, tracing
from worker.celery import settings
from worker.dead_letter import Outcome, dead_letter_order
from worker.runtime import aggregate, dead_letter_publisher

logger = get_task_logger(__name__)

# Seconds before an order whose dead letter could not be sent now is tried again.
DLQ_REQUEUE_COUNTDOWN = 5
DLQ_ERRORS = (DeadLetterNotDelivered, KafkaException, BufferError)
# Redis answering nothing, or refusing writes (a replica after a failover, maxmemory with
# noeviction, still loading its data, fewer replicas than min-replicas-to-write, a replica that lost its
# primary), or the write not on enough replicas in time: none of it is the order's fault.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.AskError,  # and MovedError: the shard's slot lives on another node now
    StaleLayout,  # the aggregate was re-sharded under this worker (orders/core/shards.py)
    Unwritable,  # NOREPLICAS, MASTERDOWN
    ReplicasBehind,  # a WAIT short of REDIS_WAIT_REPLICAS
    *CLUSTER_UNREACHABLE,  # a Redis Cluster with no node answering (not RedisErrors)
)


class OrderTask(Task):
    """Hooks: count each scheduled retry; dead-letter an order that failed for good.

    Its requests are Celery's, or RetryAwareRequest once worker/fast_path.py installs the fast path.
    """

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
        if self.request.id is None:
            # Called by a prefork pool's parent after the hard time limit killed the child: there is
            # no task context here. Celery puts the message back (task_acks_on_timeout=False).
            logger.error(
                "order %s killed at the time limit (%s); its message goes back to the queue", task_id, exc
            )
            return
        letter = self._dead_letter(exc, task_id, args, einfo)
        if isinstance(exc, TransientError):  # autoretry gave up: Celery logs it as an expected failure (INFO)
            logger.warning("order %s: retries ran out after %d attempts (%s)", task_id, letter.attempts, exc)
        try:
            outcome = self._publish_dead_letter(letter, _order_id(args))
        except DLQ_ERRORS + REDIS_UNAVAILABLE as cause:
            tracing.outcome("requeued", cause)
            self._requeue(task_id, cause)
            return
        tracing.outcome("dead_lettered" if outcome == "published" else outcome, exc)
        if outcome == "published":
            metrics.DLQ_PUBLISHES.labels("ok").inc()
            metrics.DEAD_LETTERS.labels(letter.stage).inc()
            metrics.OUTCOMES.labels("dead_lettered").inc()
            metrics.ATTEMPTS.observe(letter.attempts)
            _log_dead_letter(letter)
            with _figures_only(task_id):
                trace_id = trace_id_of(tracing.next_headers(self.request))
                _note(args, "dlq", f"{type(exc).__name__}: {exc}", counts="dlq", trace_id=trace_id)
                aggregate().count_event(
                    dead_letter_event(letter.stage)
                )  # one more round trip, per dead letter
        else:
            logger.info("order %s not dead-lettered again: %s", task_id, outcome.replace("_", " "))

    def signature_from_request(  # type: ignore[override]
        self, request: Any = None, args: Any = None, kwargs: Any = None, queue: Any = None, **options: Any
    ) -> Any:
        """Retries and requeues keep the readable arguments Flower shows for the first attempt, and
        the order's trace: the attempt's context when traced, the one it arrived with otherwise (Celery
        copies only ``request.headers``, which does not hold a message's custom headers)."""
        request = request or self.request
        order, origin = split_args(args if args is not None else request.args)
        if order is not None and origin is not None:
            options = {**task_reprs(order, origin), **options}
        carried = tracing.next_headers(request)
        if carried:
            options["headers"] = {**(options.get("headers") or request.headers or {}), **carried}
        return super().signature_from_request(request, args, kwargs, queue, **options)

    def _publish_dead_letter(self, letter: DeadLetter, order_id: str | None) -> Outcome:
        """Claim and publish under a PRODUCER span; the letter carries that span's context (untraced:
        the one the order arrived with), so a replay can link back to this trace."""
        topic = settings().dlq_topic
        with tracing.child_span(
            f"publish {topic}", SpanKind.PRODUCER, **{"messaging.system": "kafka",
            "messaging.operation.type": "send", "messaging.destination.name": topic,
            "orders.dlq.stage": letter.stage, "orders.attempts": letter.attempts},
        ):  # fmt: skip
            letter = replace(letter, trace_headers=tracing.next_headers(self.request))
            return dead_letter_order(aggregate(), dead_letter_publisher(), letter, order_id)

    def _requeue(self, task_id: str, cause: BaseException) -> None:
        """Never drop an order that could not be dead-lettered now: publish the same message again.

        The copy keeps the task id and retry count and reaches the broker before this message is
        acknowledged. (Raising Reject here would do the same on prefork but stops a solo worker.)
        """
        logger.error("order %s not dead-lettered (%s); requeueing it", task_id, cause)
        metrics.DLQ_PUBLISHES.labels("failed").inc()
        metrics.OUTCOMES.labels("requeued").inc()
        self.signature_from_request(countdown=DLQ_REQUEUE_COUNTDOWN).apply_async()

    def _dead_letter(self, exc: BaseException, task_id: str, args: Any, einfo: Any) -> DeadLetter:
        _, origin = split_args(args)
        key, value = decode_origin_bytes(origin) if origin else (None, json.dumps(args, default=str).encode())
        order_id = _order_id(args)
        return DeadLetter.for_exception(
            exc,
            stacktrace=getattr(einfo, "traceback", None),
            key=order_id.encode() if order_id else key,
            value=value,
            origin=origin or _unknown_origin(),
            stage=exc.stage if isinstance(exc, OrderError) else "process",
            attempts=(self.request.retries or 0) + 1,
            component=self.name,
            task_id=task_id,
        )


def split_args(args: Any) -> tuple[OrderPayload | None, RecordOrigin | None]:
    """The (order, origin) a task was called with, each None where it is not of the expected shape."""
    if not (isinstance(args, list | tuple) and len(args) == 2):
        return None, None
    order, origin = args
    payload: OrderPayload | None = order if isinstance(order, dict) else None  # type: ignore[assignment]
    return payload, (origin if origin_is_valid(origin) else None)


def _order_id(args: Any) -> str | None:
    """The orderId to claim, when the payload names one the bridge would accept."""
    order, _ = split_args(args)
    order_id = order.get("orderId") if order else None
    return (
        order_id
        if isinstance(order_id, str) and order_id.strip() and len(order_id) <= MAX_ID_LENGTH
        else None
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


def _note(args: Any, status: Status, detail: str, counts: Event, trace_id: str | None = None) -> None:
    """Count the event and, for an order we can name, list it in the recent activity."""
    order, _ = split_args(args)
    order_id = _order_id(args)
    if order is None or order_id is None:
        aggregate().count_event(counts)
        return
    price = Decimal(order["price"]) if _is_decimal(order.get("price")) else Decimal(0)
    aggregate().note_status(
        order_id, str(order.get("product"))[:256], price, status, detail, counts, trace_id
    )


def _is_decimal(value: Any) -> bool:
    try:
        return Decimal(value).is_finite() and isinstance(value, str)
    except (TypeError, ArithmeticError, ValueError):
        return False


def _log_dead_letter(letter: DeadLetter) -> None:
    """ERROR for each dead letter (Celery logs the failure at INFO: the task's ``throws``), with where the
    record came from as ``topic[partition]@offset``."""
    origin = letter.origin
    logger.error(
        "order %s from %s[%s]@%s dead-lettered at stage %s after %d attempt(s): %s", letter.task_id,
        origin["topic"], origin["partition"], origin["offset"], letter.stage, letter.attempts,
        letter.error_message,
    )  # fmt: skip


def _unknown_origin() -> RecordOrigin:
    return {"topic": "", "partition": -1, "offset": -1, "timestamp": 0, "key": None, "value": "", "group": ""}
