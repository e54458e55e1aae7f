"""The tasks: thin. Payload -> Order (checked), inject faults, record in the aggregate.

Errors become retries (autoretry with backoff) or dead letters (worker/hooks.py); Redis being away
or refusing writes hands the order back, since that is no fault of the order.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_init, worker_ready
from celery.utils.log import get_task_logger
from opentelemetry.trace import SpanKind

from orders.core.celery_config import parked_queue_name
from orders.core.errors import InvalidOrder, PermanentError, TransientError
from orders.core.order import (
    NOOP_TASK,
    PROCESS_ORDER_TASK,
    Order,
    OrderPayload,
    RecordOrigin,
    order_from_payload,
    origin_is_valid,
)
from worker import fast_path, group_commit, metrics, task_log, tracing
from worker.aggregate import ClaimedForDeadLetter
from worker.celery import app, settings
from worker.hooks import REDIS_UNAVAILABLE, OrderTask
from worker.runtime import aggregate, current_injector

logger = get_task_logger(__name__)

# Seconds a worker waits before handing back an order it could not record (Redis unreachable).
AGGREGATE_DOWN_PAUSE = 1


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
def process_order(self: Task, order: OrderPayload, origin: RecordOrigin) -> bool | None:
    """Record one order in the running average; True if counted, False if it was a duplicate, None if
    its write joined the tick's group commit (worker/group_commit.py reports the outcome after the flush)."""
    with metrics.PROCESSING.time():
        if _past_delivery_limit(self.request.delivery_info):
            # A poison message, or an order handed back for days: never run it again, dead-letter it.
            limit = settings().celery_delivery_limit
            raise PermanentError(
                f"delivered more than CELERY_DELIVERY_LIMIT ({limit}) times; RabbitMQ parked it"
            )
        parsed = _parse(order, origin)
        report = functools.partial(_report, parsed.order_id, self.request.retries + 1, origin)
        try:
            current_injector().check(parsed.order_id, self.request.retries)
            if group_commit.join(
                (parsed.order_id, parsed.product, parsed.price_cents), report, tracing.defer_attempt
            ):
                return None
            with tracing.child_span("aggregate record_order", SpanKind.CLIENT, **tracing.AGGREGATE_SPAN):
                counted = aggregate().record_order(parsed.order_id, parsed.product, parsed.price_cents)
        except ClaimedForDeadLetter as exc:
            # An earlier attempt claimed it for the DLQ (its letter may not have gone out): finish that.
            raise PermanentError(str(exc)) from exc
        except REDIS_UNAVAILABLE as exc:
            # Redis being away, refusing writes or short of replicas (a write no replica has may
            # vanish in a failover: the order must not be acknowledged on it) is no fault of the
            # order: never dead-letter it for that. Hand the message back unacknowledged (if the
            # broker is down the reject fails too, and the message returns after the visibility
            # timeout); the pause keeps a worker whose broker is up from spinning on it.
            logger.warning("order %s: aggregate unavailable (%s); handing it back", parsed.order_id, exc)
            tracing.outcome("handed_back", exc)
            time.sleep(AGGREGATE_DOWN_PAUSE)
            raise Reject(picklable(exc), requeue=True) from exc
    report(counted)
    tracing.outcome("succeeded" if counted else "duplicate")
    return counted


def picklable(exc: BaseException) -> str:
    """A Reject's reason as text: under the prefork pool the child pickles the Reject to its parent, and
    a redis-py error from a failing Cluster once held a lock ("cannot pickle '_thread.RLock'"): the
    parent never saw the requeue, acknowledged the message, and the order was lost (scenario 22f)."""
    return f"{type(exc).__name__}: {exc}"


def _report(order_id: str, attempts: int, origin: RecordOrigin, counted: bool) -> None:
    """An order's outcome in the metrics: after its write, in the task or in the group commit's flush."""
    metrics.OUTCOMES.labels("succeeded" if counted else "duplicate").inc()
    metrics.ATTEMPTS.observe(attempts)
    if counted and origin.get("timestamp", 0) > 0:
        metrics.LATENCY.observe(max(0.0, time.time() - origin["timestamp"] / 1000))
    if not counted:
        logger.info("order %s already counted; duplicate delivery ignored", order_id)


def _past_delivery_limit(delivery_info: dict[str, Any] | None) -> bool:
    """Whether the message came from ``<queue>.parked``, where a quorum queue's messages go once they
    reach the delivery limit (orders/core/celery_config.py), directly or through a delayed requeue."""
    routing_key = str((delivery_info or {}).get("routing_key") or "")
    parked = parked_queue_name(settings().celery_queue)
    return routing_key == parked or routing_key.endswith("." + parked)


def _parse(order: OrderPayload, origin: RecordOrigin) -> Order:
    """The order, checked by the bridge's rules; InvalidOrder (a dead letter, stage validate) if not."""
    if not origin_is_valid(origin):
        raise InvalidOrder(f"malformed task payload: the origin is not a record origin: {origin!r:.200}")
    return order_from_payload(order)


@worker_init.connect
def _install_fast_path(**_: object) -> None:
    """The lazy retry tracebacks (worker/fast_path.py), unless ORDERS_STOCK_CELERY; before any pool forks.

    Here, not in worker/celery.py: Celery imports this module (the app's ``include``) before it sends
    ``worker_init``, and the fast path needs the tasks' base class.
    """
    fast_path.install(settings(), OrderTask)


@worker_init.connect
def _choose_group_commit(sender: Any = None, **_: object) -> None:
    """Group commit on the solo pool (worker/group_commit.py); the sender's pool_cls says which pool (C7)."""
    pool = getattr(sender, "pool_cls", None)
    fast_path.install_group_commit(
        settings(), pool, aggregate, group_commit.Tracing(tracing.flush_spans, tracing.end_attempt)
    )


@worker_init.connect
def _choose_task_log_lines(**_: object) -> None:
    """TASK_SUCCESS_LOG (worker/task_log.py), before the consumer builds its strategies and any pool forks."""
    task_log.apply(settings())


@worker_ready.connect
def _announce_task_log_lines(**_: object) -> None:
    task_log.announce(settings())


@app.task(name=NOOP_TASK, acks_late=True)
def noop() -> None:
    """Does nothing: `orders bench` drains a queue of these to measure the Celery ceiling."""
