"""The SDK's exporter, sampler and resource, built from parsed settings; export that never floods the log.

Imported only when tracing is on, and only if the ``[tracing]`` extra is installed (orders/core/tracing.py
checks). Every value comes from :class:`~orders.core.tracing_settings.TracingSettings`; the SDK itself
still reads the span-limit variables (``OTEL_ATTRIBUTE_*``, ``OTEL_SPAN_*``) when a provider is made,
which we do not override.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import sampling as samplers
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from orders.core.tracing_settings import TracingSettings

log = logging.getLogger(__name__)
# One warning when export starts failing, then at most one per this many seconds, with a count.
WARN_EVERY = 60.0
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"


class QuietExporter(SpanExporter):
    """Wraps an exporter: a backend that is down costs one warning, then one a minute, never a traceback
    per batch (the batch processor logs every exception it sees with its traceback)."""

    def __init__(self, inner: SpanExporter, clock: Any = time.monotonic) -> None:
        self._inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_batches = 0
        self._next_warning = float("-inf")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # any failure to deliver is the backend's; spans are dropped
            result, error = SpanExportResult.FAILURE, repr(exc)
        else:
            error = "the backend refused the batch"
        if result is SpanExportResult.FAILURE:
            self._failed(len(spans), error)
        return result

    def _failed(self, count: int, error: str) -> None:
        with self._lock:
            self._failed_batches += 1
            now = self._clock()
            if now < self._next_warning:
                return
            batches, self._failed_batches = self._failed_batches, 0
            self._next_warning = now + WARN_EVERY
        log.warning(
            "trace export failed (%s): %d span(s) dropped, %d failed batch(es) since the last warning; "
            "orders are not affected; next warning in %.0fs at the earliest",
            error, count, batches, WARN_EVERY,
        )  # fmt: skip

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def build_exporter(settings: TracingSettings) -> SpanExporter:
    """The exporter OTEL_TRACES_EXPORTER (or the endpoint given) names, with its timeout."""
    kind = settings.trace_exporter
    if kind == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        timeout = max(1, round(settings.otel_exporter_zipkin_timeout / 1000))
        return ZipkinExporter(endpoint=settings.otel_exporter_zipkin_endpoint or None, timeout=timeout)
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_traces_endpoint or (
            (settings.otel_exporter_otlp_endpoint or DEFAULT_OTLP_ENDPOINT).rstrip("/") + "/v1/traces"
        )
        headers = _otlp_headers(settings)
        return OTLPSpanExporter(
            endpoint=endpoint, headers=headers, timeout=settings.otel_exporter_otlp_timeout / 1000
        )
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter()


def _otlp_headers(settings: TracingSettings) -> dict[str, str]:
    from urllib.parse import unquote

    raw = (
        settings.otel_exporter_otlp_headers.get_secret_value() if settings.otel_exporter_otlp_headers else ""
    )
    pairs = (pair.partition("=") for pair in raw.split(","))
    return {key.strip(): unquote(value.strip()) for key, sep, value in pairs if sep and key.strip()}


def build_sampler(settings: TracingSettings) -> samplers.Sampler:
    """OTEL_TRACES_SAMPLER with OTEL_TRACES_SAMPLER_ARG (the ratio of the ``traceidratio`` ones)."""
    ratio = settings.otel_traces_sampler_arg
    return {
        "always_on": lambda: samplers.ALWAYS_ON,
        "always_off": lambda: samplers.ALWAYS_OFF,
        "traceidratio": lambda: samplers.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: samplers.ParentBased(samplers.ALWAYS_ON),
        "parentbased_always_off": lambda: samplers.ParentBased(samplers.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: samplers.ParentBasedTraceIdRatio(ratio),
    }[settings.otel_traces_sampler]()


def build_provider(settings: TracingSettings) -> tuple[TracerProvider, BatchSpanProcessor]:
    """A provider of this process's own (never the global one: a forked child makes its own) with one
    bounded batch processor."""
    provider = TracerProvider(
        sampler=build_sampler(settings),
        resource=Resource(settings.resource_attributes()),  # Resource.create would read os.environ
        shutdown_on_exit=False,  # flushed with a bound by Tracing.shutdown, not at exit unbounded
    )
    processor = BatchSpanProcessor(
        QuietExporter(build_exporter(settings)),
        max_queue_size=settings.otel_bsp_max_queue_size,
        schedule_delay_millis=settings.otel_bsp_schedule_delay,
        max_export_batch_size=min(settings.otel_bsp_max_export_batch_size, settings.otel_bsp_max_queue_size),
        export_timeout_millis=settings.otel_bsp_export_timeout,
    )
    provider.add_span_processor(processor)
    return provider, processor
