"""A worker's part of a trace: one span per task attempt, with the aggregate write and the DLQ publish
as its children (with group commit the attempt's span stays open until the flush, which adds the write
under it and sets the outcome), and the trace context on every message the attempt sends.

Celery's signals open and close the attempt span in the process that runs the task, so it works the
same on the solo pool and in each prefork child, whose tracing is built at ``worker_process_init``
(the parent's exporter thread does not survive the fork). The contrib Celery instrumentation is not
used: it keeps its live spans on the task object keyed by task id (ours is the orderId, shared by an
order's attempts and by a redelivered copy), reads the context the same way we do, and still leaves
the outcome, the attempt number and the untraced pass-through for us to write.

Untraced, nothing here starts a span; an attempt's incoming ``traceparent`` still goes on to its
retry, its requeue and its dead letter unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from celery import Task
from celery.signals import (
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orders.core.order import PROCESS_ORDER_TASK
from orders.core.trace_context import TraceHeaders, context_of, from_request, headers_for
from orders.core.tracing import Tracing, start_tracing
from worker.celery import settings

# The aggregate write's span attributes (per task, or the group commit's flush).
AGGREGATE_SPAN = {
    "db.system.name": "redis",
    "db.operation.name": "EVALSHA",
    "db.query.summary": "aggregate.lua",
}
_BUILT: dict[int, Tracing] = {}
# The attempt running in this process (one at a time, on solo and in a prefork child): span, token.
_ACTIVE: list[tuple[Span, object]] = []
# Attempts whose span the group commit's flush ends (defer_attempt), by id().
_DEFERRED: set[int] = set()


def tracing() -> Tracing:
    """This process's tracing, built on first use (a forked child builds its own)."""
    pid = os.getpid()
    if pid not in _BUILT:
        _BUILT.clear()
        _BUILT[pid] = start_tracing(settings(), "worker")
    return _BUILT[pid]


@worker_process_init.connect
def _start_in_child(**_: object) -> None:
    tracing()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush(**_: object) -> None:
    """SIGTERM: the spans still queued go out, within a bound (only where tracing was built)."""
    built = _BUILT.get(os.getpid())
    if built is not None:
        built.shutdown()


@task_prerun.connect
def _open_attempt(task: Task, task_id: str, args: Any = None, **_: object) -> None:
    if task.name != PROCESS_ORDER_TASK or not tracing().enabled:
        return
    request = task.request
    order = args[0] if isinstance(args, list | tuple) and args and isinstance(args[0], dict) else {}
    span = tracing().tracer.start_span(
        PROCESS_ORDER_TASK,
        context=context_of(from_request(request)),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "celery",
            "messaging.operation.type": "process",
            "messaging.destination.name": str((request.delivery_info or {}).get("routing_key") or ""),
            "messaging.message.id": task_id,
            "celery.task_name": task.name,
            "celery.hostname": str(request.hostname or ""),
            "orders.attempt": (request.retries or 0) + 1,
            "orderId": str(order.get("orderId", ""))[:256],
        },
    )
    _ACTIVE.append((span, otel_context.attach(trace.set_span_in_context(span))))


@task_postrun.connect
def _close_attempt(task: Task, state: str | None = None, **_: object) -> None:
    if task.name != PROCESS_ORDER_TASK or not _ACTIVE:
        return
    span, token = _ACTIVE.pop()
    span.set_attribute("celery.state", str(state))
    otel_context.detach(token)  # type: ignore[arg-type]
    if id(span) in _DEFERRED:  # ended by the group commit's flush, with the outcome
        _DEFERRED.discard(id(span))
        return
    span.end()


@task_retry.connect
def _retry_scheduled(request: Any = None, reason: Any = None, **_: object) -> None:
    when = getattr(reason, "when", None)
    countdown: dict[str, Any] = {"orders.retry.countdown_s": when} if isinstance(when, int | float) else {}
    outcome("retry_scheduled", None, **countdown)


def outcome(name: str, error: BaseException | None = None, **attributes: Any) -> None:
    """What became of the attempt running now: succeeded, duplicate, retry_scheduled, dead_lettered..."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("orders.outcome", name)
    for key, value in attributes.items():
        span.set_attribute(key, value)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))


@contextlib.contextmanager
def child_span(name: str, kind: SpanKind, **attributes: Any) -> Iterator[Span | None]:
    """A span under the current attempt (the aggregate's Redis call, the DLQ publish); None untraced.

    Untraced this is one branch: the task's cost does not change.
    """
    if not tracing().enabled or not trace.get_current_span().is_recording():
        yield None
        return
    with tracing().tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
        yield span


def defer_attempt() -> Span | None:
    """The running attempt's span, left open when the task ends: its write joined the group commit
    (worker/group_commit.py), whose flush ends it with the outcome (:func:`end_attempt`). None untraced."""
    if not _ACTIVE or not _ACTIVE[-1][0].is_recording():
        return None
    span = _ACTIVE[-1][0]
    _DEFERRED.add(id(span))
    return span


@contextlib.contextmanager
def flush_spans(attempts: list[Span]) -> Iterator[None]:
    """The group commit's write as a CLIENT span under each attempt it carries, as a per-task write is
    (one span per attempt: trace views such as Zipkin's show parents, not links)."""
    if not attempts:
        yield
        return
    attributes: dict[str, str | int] = {**AGGREGATE_SPAN, "orders.group_commit.orders": len(attempts)}
    spans = [
        tracing().tracer.start_span(
            "aggregate record_order", trace.set_span_in_context(attempt), SpanKind.CLIENT, attributes
        )
        for attempt in attempts
    ]
    try:
        yield
    finally:
        for span in spans:
            span.end()


def end_attempt(span: Span, name: str, error: BaseException | None = None) -> None:
    """What the flush made of a deferred attempt (succeeded, duplicate, handed_back); ends its span."""
    span.set_attribute("orders.outcome", name)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
    span.end()


def next_headers(request: Any) -> TraceHeaders | None:
    """The trace headers for a message this attempt sends (its retry, its requeue, its dead letter):
    the current span's context when traced, else the ones the attempt arrived with, unchanged."""
    span = trace.get_current_span()
    if span.is_recording():
        return headers_for(span)
    return from_request(request)
