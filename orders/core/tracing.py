"""A process's tracing: on (the SDK, a tracer, bounded export) or off (no exporter, no span, no cost).

Built once per process from its settings with :func:`start_tracing` (a forked child builds its own).
Off when nothing is configured (orders/core/tracing_settings.py), and when it is configured but the
``[tracing]`` extra is not installed: the process says so once at start-up and runs untraced. Off or
on, the trace headers an order carries are passed along (orders/core/trace_context.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from orders.core.tracing_settings import TracingSettings

log = logging.getLogger(__name__)
# A SIGTERM waits at most this long for the last spans to reach the backend.
SHUTDOWN_TIMEOUT = 3.0
LOG_SUFFIX = "%(trace_suffix)s"
# The SDK's and exporters' own loggers (a filter holds only for its own logger, not its children):
# their warnings (a full queue, a refused batch, a retried export) would repeat per span or batch.
OTEL_LOGGERS = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.zipkin.json",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
)


class Tracing:
    """What a process traces with: ``enabled`` False means no SDK, a no-op tracer and nothing exported."""

    def __init__(self, tracer: trace.Tracer, shutdown: Callable[[], None] = lambda: None, on: bool = False):
        self.tracer = tracer
        self.enabled = on
        self._shutdown = shutdown

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds (a backend that is down does not
        hold a stopping process)."""
        if not self.enabled:
            return
        done = threading.Thread(target=self._shutdown, name="trace-flush", daemon=True)
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning("trace export did not finish within %.0fs at shutdown; the rest is dropped", timeout)


OFF = Tracing(trace.NoOpTracer())


def start_tracing(settings: TracingSettings, scope: str) -> Tracing:
    """This process's tracing from its settings; ``scope`` names the instrumenting code (the tracer).

    Never raises for a missing extra: a process that cannot trace still processes orders.
    """
    kind = settings.trace_exporter
    if kind is None:
        return OFF
    try:
        from orders.core.trace_export import build_provider
    except ImportError as exc:
        log.warning(
            "tracing is configured (exporter %s) but the OpenTelemetry SDK is not installed (%s): running "
            "WITHOUT tracing; install the extra: pip install 'orders-pipeline[tracing]'",
            kind, exc,
        )  # fmt: skip
        return OFF
    provider, _ = build_provider(settings)
    quiet_sdk_logs()
    log.info(
        "tracing on: service %s, exporter %s, sampler %s (%g)",
        settings.service_name, kind, settings.otel_traces_sampler, settings.otel_traces_sampler_arg,
    )  # fmt: skip
    return Tracing(provider.get_tracer(scope), provider.shutdown, on=True)


class _OncePerMessage(logging.Filter):
    """Lets each distinct SDK message through once a minute ("Queue full, dropping Span." per span)."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self._every = every
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        last = self._last.get(record.msg if isinstance(record.msg, str) else "")
        if last is not None and record.created - last < self._every:
            return False
        self._last[record.msg if isinstance(record.msg, str) else ""] = record.created
        return True


def quiet_sdk_logs() -> None:
    for name in OTEL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePerMessage) for f in logger.filters):
            logger.addFilter(_OncePerMessage())


def log_trace_ids() -> None:
    """Every log record gets ``trace_suffix``: `` [trace <id>]`` inside a sampled span, else empty.

    A record factory rather than a handler filter, so it holds for every handler Celery or logging
    sets up later; formats that show it end with :data:`LOG_SUFFIX`.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_trace_suffix", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        span_context = trace.get_current_span().get_span_context()
        record.trace_suffix = f" [trace {span_context.trace_id:032x}]" if span_context.is_valid else ""
        return record

    factory.adds_trace_suffix = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
