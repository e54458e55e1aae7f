"""W3C trace context (``traceparent``, ``tracestate``) as it travels with an order, with or without tracing.

The same two headers ride on every hop: the Kafka record (bytes headers), the Celery task message
(message headers, which a worker sees as ``task.request.traceparent``), a retry or requeue of it, and
the dead letter. A process that traces reads and writes them through OpenTelemetry's W3C propagator;
one that does not still copies them along unchanged (:func:`carried`), so one untraced process does not
cut every trace. Only ``opentelemetry-api`` is needed here: it is a base dependency, the SDK is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)
# Not the global propagator: OTEL_PROPAGATORS would be read from os.environ, and W3C is what we send.
PROPAGATOR = TraceContextTextMapPropagator()
TraceHeaders = dict[str, str]


def carried(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> TraceHeaders | None:
    """The trace headers among ``headers`` (Kafka's bytes or a Celery message's strings); None if none.

    This is all an untraced process does with a context: it passes these on unchanged.
    """
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: TraceHeaders = {}
    for name, value in items:
        if name in TRACE_HEADERS and value:
            found[name] = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return found or None


def from_request(request: Any) -> TraceHeaders | None:
    """The trace headers of a Celery task request (its message headers become request attributes)."""
    found = {name: getattr(request, name, None) for name in TRACE_HEADERS}
    return carried({name: value for name, value in found.items() if isinstance(value, str)})


def context_of(headers: Mapping[str, str] | None) -> Context | None:
    """The remote parent these headers describe; None when there is none (a new trace starts)."""
    if not headers:
        return None
    context = PROPAGATOR.extract(headers)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def span_context_of(headers: Mapping[str, str] | None) -> SpanContext | None:
    context = context_of(headers)
    return trace.get_current_span(context).get_span_context() if context is not None else None


def link_to(headers: Mapping[str, str] | None, **attributes: Any) -> list[Link]:
    """A link to the span these headers name (a replay's link to the dead-lettered trace), or none."""
    span_context = span_context_of(headers)
    return [Link(span_context, attributes)] if span_context is not None else []


def headers_for(span: Span) -> TraceHeaders | None:
    """The headers that make ``span`` the parent of what receives them; None for a non-recording span
    with no valid context."""
    if not span.get_span_context().is_valid:
        return None
    carrier: TraceHeaders = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier or None


def trace_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The 32-hex trace id of a ``traceparent``, or None."""
    span_context = span_context_of(headers)
    return f"{span_context.trace_id:032x}" if span_context is not None else None


def as_kafka_headers(headers: Mapping[str, str] | None) -> list[tuple[str, str | bytes | None]]:
    """Trace headers as Kafka record headers (UTF-8 bytes, like the dead-letter headers)."""
    return [(name, value.encode("ascii")) for name, value in (headers or {}).items()]
