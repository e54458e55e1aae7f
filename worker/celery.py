"""The Celery app. `celery -A worker worker` imports this module and finds ``app``.

Importing it reads no environment: the settings are built when Celery first reads the app's
configuration (a lazy ``config_from_object``), which a worker does as it starts, as Celery's own
configuration is loaded. The retry policy reaches the task through ``task_annotations`` at that moment.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import redis
from celery import Celery
from celery.app.defaults import DEFAULT_PROCESS_LOG_FMT, DEFAULT_TASK_LOG_FMT
from celery.signals import worker_init, worker_ready

from orders.core.celery_config import PREFETCH_MULTIPLIER, TASK_TIME_LIMIT, celery_config, check_dedupe_window
from orders.core.metrics_server import serve_metrics
from orders.core.order import PROCESS_ORDER_TASK
from orders.core.redis_client import connect
from orders.core.redis_health import pipeline_redis
from orders.core.settings import SettingsError
from orders.core.shards import LayoutMismatch, ensure_layout
from orders.core.tracing import LOG_SUFFIX, log_trace_ids
from worker.delayed_delivery import quiet_direct_exchange_warning
from worker.faults import announce as announce_failure_injection
from worker.settings import WorkerSettings

T = TypeVar("T")
log = logging.getLogger(__name__)


@functools.cache
def settings() -> WorkerSettings:
    """This worker's settings, built once from its environment."""
    return _or_exit(WorkerSettings.from_env)


def _or_exit(build: Callable[[], T]) -> T:
    """The worker's entry point is Celery's CLI: a bad setting leaves with its message, not a traceback."""
    try:
        return build()
    except SettingsError as exc:
        sys.exit(str(exc))


def worker_config(settings: WorkerSettings) -> dict[str, Any]:
    """The shared Celery settings plus what only the workers need: late acks, limits, events, retries."""
    check_dedupe_window(settings, settings.dedupe_ttl_seconds)
    return {
        **celery_config(settings),
        # Acknowledge after the task ran, and put the message back if the worker dies mid-task:
        # safe because the aggregate is idempotent on orderId.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": TASK_TIME_LIMIT,
        # A prefork child killed at the hard time limit: its message goes back to the queue (Celery
        # would acknowledge it by default, and the order would be neither counted nor dead-lettered).
        "task_acks_on_timeout": False,
        "worker_prefetch_multiplier": PREFETCH_MULTIPLIER,
        # Task events cost the workers a fifth of their CPU per order (3 events per task;
        # docs/benchmarks.md), so they are sent while someone watches: Flower turns them on as it
        # connects (and every 5 s), `celery -A worker control enable_events` does the same for
        # `celery events`; TASK_EVENTS=true sends them from the start.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        **delayed_delivery(settings),
        # Celery's own exponential backoff: countdown = base * 2**retries (2, 4, 8 s by default).
        # Annotations are applied before autoretry reads them, when the task is created.
        "task_annotations": {PROCESS_ORDER_TASK: retry_policy(settings)},
        **traced_log_formats(settings),
    }


def delayed_delivery(settings: WorkerSettings) -> dict[str, str]:
    """On quorum queues retries wait in RabbitMQ (native delayed delivery), set up through the node the
    worker reached rather than through every node of its broker URLs (worker/delayed_delivery.py, on
    the fast path: contract C6)."""
    return {} if settings.stock_celery else {"worker_consumer": "worker.delayed_delivery:Consumer"}


def traced_log_formats(settings: WorkerSettings) -> dict[str, str]:
    """With tracing on, Celery's log formats end with the trace id of the span a line is written in.

    Computed with the rest of the configuration, which Celery reads before it sets up logging: the
    record factory that provides ``trace_suffix`` is in place before the first line uses it.
    """
    if settings.trace_exporter is None:
        return {}
    log_trace_ids()
    return {
        "worker_log_format": DEFAULT_PROCESS_LOG_FMT.strip() + LOG_SUFFIX,
        "worker_task_log_format": DEFAULT_TASK_LOG_FMT.strip() + LOG_SUFFIX,
    }


def retry_policy(settings: WorkerSettings) -> dict[str, Any]:
    return {
        "max_retries": settings.max_retries,
        "retry_backoff": settings.retry_backoff_base or False,
        "retry_backoff_max": settings.retry_backoff_max,
        "retry_jitter": settings.retry_jitter,
    }


app = Celery("orders", include=["worker.tasks"])


class _LazyConfig(Mapping[str, Any]):
    """:func:`worker_config`, computed when Celery first reads it, not when this module is imported."""

    @functools.cached_property
    def _values(self) -> dict[str, Any]:
        return _or_exit(lambda: worker_config(settings()))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


app.config_from_object(_LazyConfig())


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """/metrics and /healthz from the process that runs the tasks (solo) or merges them (prefork).

    Served once the worker consumes, so /healthz answering is the worker's readiness signal; it answers
    503, saying what it waits for, while the worker cannot reach its Redis (aggregate or broker).
    """
    serve_metrics(settings().metrics_port, readiness=pipeline_redis(settings()), host=settings().metrics_host)


@worker_init.connect
def _quiet_held_retries(**_: object) -> None:
    """A retry held by the worker on a quorum queue is our choice, not news: a warning per retry is noise."""
    if settings().celery_queue_type == "quorum" and not settings().celery_native_delayed_delivery:
        quiet_direct_exchange_warning()


@worker_init.connect
def _check_layout(**_: object) -> None:
    """Refuse to start when AGGREGATE_SHARDS disagrees with the aggregate's stored layout (a fresh
    aggregate is laid out here). Redis away: start anyway; each shard's stamp still refuses a write
    laid out for another N (worker/aggregate.lua), and the first task checks again."""
    client = connect(settings().redis)
    try:
        ensure_layout(client, settings().aggregate_shards)
    except LayoutMismatch as exc:
        sys.exit(f"worker: {exc}")
    except redis.RedisError as exc:
        log.warning("could not check the aggregate's layout at start (%s); the first task will", exc)
    finally:
        client.close()


@worker_ready.connect
def _announce_failure_injection(**_: object) -> None:
    """Say at start-up whether this worker fails orders on purpose (FAILURE_INJECTION, a demo feature)."""
    announce_failure_injection(settings())
