"""What a worker process builds once, on first use, from its settings.

Built in the process that uses it, so each prefork child makes its own after the fork: librdkafka's
threads do not survive fork(), and a Redis connection must not be shared across processes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

from orders.core.celery_config import WORKER_DLQ_WAIT
from orders.core.control import FailureRateOverride
from orders.core.dead_letter_publisher import DeadLetterPublisher, create_dead_letter_publisher
from orders.core.redis_client import AnyRedis, connect
from orders.core.shards import LayoutMismatch, StaleLayout, ensure_layout
from worker.aggregate import AggregateWriter
from worker.celery import settings
from worker.faults import FailureInjector, configured_injector, with_override

T = TypeVar("T")


def per_process(build: Callable[[], T]) -> Callable[[], T]:
    """Like functools.cache, but a forked child builds its own instead of using its parent's."""
    built: dict[int, T] = {}

    @functools.wraps(build)
    def get() -> T:
        pid = os.getpid()
        if pid not in built:
            built.clear()
            built[pid] = build()
        return built[pid]

    return get


@per_process
def redis_client() -> AnyRedis:
    """The aggregate's Redis. Every wait is bounded (orders/core/redis_client.py: a command 3 s at most),
    well inside TASK_TIME_LIMIT: the solo pool enforces no time limit, so these bounds keep a task short."""
    return connect(settings().redis)


@per_process
def aggregate() -> AggregateWriter:
    """The writer, laid out as the aggregate is (AGGREGATE_SHARDS checked against it: worker/celery.py
    refuses to start on a mismatch; one found later hands the order back as StaleLayout)."""
    s = settings()
    try:
        layout = ensure_layout(redis_client(), s.aggregate_shards)
    except LayoutMismatch as exc:
        raise StaleLayout(str(exc)) from exc
    return AggregateWriter(
        redis_client(), s.dedupe_ttl_seconds, s.max_products, s.aggregate_wait_replicas, s.redis_wait_timeout,
        layout,
    )  # fmt: skip


@per_process
def dead_letter_publisher() -> DeadLetterPublisher:
    """Waits at most WORKER_DLQ_WAIT for the DLQ, well inside the task time limit."""
    return create_dead_letter_publisher(settings(), min(settings().dlq_delivery_timeout, WORKER_DLQ_WAIT))


@per_process
def injector() -> FailureInjector:
    return configured_injector(settings())


@per_process
def failure_override() -> FailureRateOverride:
    return FailureRateOverride(redis_client())


def current_injector() -> FailureInjector:
    """The configured injector, with the transient rate a dashboard may have set (if injection is on)."""
    return with_override(injector(), settings(), lambda: failure_override().current())
