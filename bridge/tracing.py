"""The bridge's part of a trace: one CONSUMER span per record, whose context its Celery message carries.

Not the contrib confluent-kafka instrumentation: its consumer side wraps ``poll``/``consume`` and
starts one "process" span per *batch* as a new root, with the producers' contexts only as links, and
keeps it current until the next poll. That is the orphaned span users report: the record's trace stops
at the producer. Here each record continues its producer's trace through the OpenTelemetry API (a
record without a context starts a new trace), and the span's context goes explicitly into that
record's task message, which is what making it current around the publish would achieve, at no cost.

Untraced (no exporter configured, or no SDK), a record's own trace headers pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Message
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orders.core.trace_context import TraceHeaders, carried, context_of, headers_for
from orders.core.tracing import Tracing


class RecordSpans:
    """Opens a span per record as a batch is read; ends them once the batch is handed off."""

    def __init__(self, tracing: Tracing, group: str) -> None:
        self._tracing = tracing
        self._group = group

    def begin(self, message: Message) -> tuple[Span | None, TraceHeaders | None]:
        """The record's span (None untraced) and the trace headers its task message or letter carries."""
        incoming = carried(message.headers())
        if not self._tracing.enabled:
            return None, incoming
        topic = message.topic() or ""
        key = message.key()
        span = self._tracing.tracer.start_span(
            f"process {topic}",
            context=context_of(incoming),  # None: a record from a producer that does not trace
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(message.partition()),
                "messaging.kafka.offset": message.offset() or 0,
                "messaging.consumer.group.name": self._group,
                "messaging.kafka.message.key": key.decode("utf-8", "replace") if key is not None else "",
                "messaging.message.body.size": len(message.value() or b""),
            },
        )
        return span, headers_for(span)

    @staticmethod
    def handed_off(span: Span | None, order_id: str) -> None:
        if span is not None:
            span.set_attribute("orderId", order_id)
            span.set_attribute("orders.outcome", "handed_off")

    @staticmethod
    def dead_lettered(span: Span | None, stage: str, error: BaseException) -> None:
        if span is not None:
            span.set_attribute("orders.outcome", f"dead_lettered ({stage})")
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{stage}: {error}"[:200]))

    @staticmethod
    def end(spans: Sequence[Span | None]) -> None:
        """The records are handed off (or dead-lettered): their spans end."""
        for span in spans:
            if span is not None:
                span.end()
