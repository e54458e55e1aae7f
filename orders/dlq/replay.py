"""DLQ replay: re-publish dead letters, value and key unchanged, to the orders topic, and remember how far.

The position lives in a consumer group of its own and is committed per batch, only after the orders
topic acknowledged every record re-published below it: a crash re-publishes at most the unacknowledged
tail (the aggregate's dedupe counts an order once), and a finished replay is not repeated.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from orders.core.codec import OrderCodec
from orders.core.trace_context import (
    TraceHeaders,
    as_kafka_headers,
    carried,
    headers_for,
    link_to,
    trace_id_of,
)
from orders.core.tracing import OFF, Tracing
from orders.dlq.reader import DeadLetterFilter, DeadLetterView, DlqError, view_of

REPLAYED_FROM = "__orders.replayed.from"  # "<dlq topic>/<partition>/<offset>" of the dead letter
REPLAYED_AT = "__orders.replayed.at"  # ISO 8601 UTC
Outcome = Literal["replayed", "skipped", "unreplayable", "failed"]
Position = tuple[int, int]  # (DLQ partition, offset)


@dataclass
class ReplayTally:
    matched: int = 0
    replayed: int = 0  # acknowledged by the orders topic (with --dry-run: would be re-published)
    skipped: int = 0  # excluded by the filter: left for a later replay
    unreplayable: int = 0  # the bridge would reject it again: passed over, never re-published
    failed: int = 0  # re-published but not acknowledged
    held: dict[int, int] = field(default_factory=dict)  # partition -> offset the position stops at
    last_error: str = ""
    would_replay: list[DeadLetterView] = field(default_factory=list)


def decide(view: DeadLetterView, flt: DeadLetterFilter) -> Outcome:
    """Excluded by the filter: skipped; would be rejected again: unreplayable; else replayed."""
    if not flt.matches(view):
        return "skipped"
    return "unreplayable" if view.rejection else "replayed"


def next_positions(
    views: Sequence[DeadLetterView], outcomes: Sequence[Outcome], held: dict[int, int]
) -> dict[int, int]:
    """Per partition, the offset after the last record decided, in order; a skipped or failed record
    holds its partition there for the rest of the run (recorded in ``held``)."""
    positions: dict[int, int] = {}
    for view, outcome in zip(views, outcomes, strict=True):
        if view.dlq_partition in held:
            continue
        if outcome in ("skipped", "failed"):
            held[view.dlq_partition] = view.dlq_offset
        else:
            positions[view.dlq_partition] = view.dlq_offset + 1
    return positions


class Replay:
    """Re-publishes dead letters to the orders topic; ``producer=None`` is a dry run."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer | None,
        codec: OrderCodec,
        topics: tuple[str, str],  # (DLQ topic, orders topic)
        flt: DeadLetterFilter,
        delivery_timeout: float,
        release_claims: Callable[[list[str]], None] = lambda _ids: None,
        tracing: Tracing = OFF,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._codec = codec
        self._dlq_topic, self._orders_topic = topics
        self._filter = flt
        self._timeout = delivery_timeout
        # A dead-lettered order is claimed in Redis, so that no copy of it is ever counted; replaying
        # it is the operator's word that it may be counted now (orders/core/aggregate.py).
        self._release_claims = release_claims
        self._tracing = tracing
        self.tally = ReplayTally()

    def run(self, batches: Iterable[list[Message]], progress: Callable[[int], None]) -> ReplayTally:
        """Replay batch by batch; stops after a batch in which a delivery failed.

        Raises :class:`DlqError` if a position could not be committed and :class:`RegistryUnavailable`
        if the registry cannot tell whether a record decodes (nothing of that batch is produced).
        """
        for batch in batches:
            self._replay_batch(batch)
            progress(len(batch))
            if self.tally.failed:
                break
        return self.tally

    def _replay_batch(self, batch: Sequence[Message]) -> None:
        views = [view_of(m, self._codec) for m in batch]  # a registry outage aborts before any produce
        outcomes = [decide(v, self._filter) for v in views]
        chosen = [(m, v) for m, v, o in zip(batch, views, outcomes, strict=True) if o == "replayed"]
        if self._producer is None:
            self.tally.would_replay.extend(v for _, v in chosen)
        else:
            self._release_claims([v.order_id for _, v in chosen if v.order_id])
            delivered = self._publish(self._producer, chosen)
            outcomes = [
                "failed" if o == "replayed" and (v.dlq_partition, v.dlq_offset) not in delivered else o
                for v, o in zip(views, outcomes, strict=True)
            ]
        self._count(outcomes)
        positions = next_positions(views, outcomes, self.tally.held)
        if self._producer is not None and positions:
            self._commit(positions)

    def _publish(self, producer: Producer, chosen: Sequence[tuple[Message, DeadLetterView]]) -> set[Position]:
        """Produce each record's key and value unchanged; returns the DLQ positions acknowledged."""
        delivered: set[Position] = set()
        replayed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        for message, view in chosen:
            position = (view.dlq_partition, view.dlq_offset)
            source = f"{self._dlq_topic}/{view.dlq_partition}/{view.dlq_offset}"
            headers: list[tuple[str, str | bytes | None]] = [
                (REPLAYED_FROM, source),
                (REPLAYED_AT, replayed_at),
            ]
            with self._traced_send(message, view, source) as trace_headers:
                producer.produce(
                    self._orders_topic, message.value(), message.key(),
                    headers=headers + as_kafka_headers(trace_headers),
                    on_delivery=functools.partial(self._delivered, delivered, position),
                )  # fmt: skip
        if producer.flush(self._timeout) and not self.tally.last_error:
            self.tally.last_error = f"no acknowledgement within {self._timeout:.0f}s"
        return delivered

    @contextlib.contextmanager
    def _traced_send(
        self, message: Message, view: DeadLetterView, source: str
    ) -> Iterator[TraceHeaders | None]:
        """Traced, each re-published order starts a new trace whose PRODUCER span links to the trace it
        was dead-lettered in (the letter's traceparent): from the replayed order back to its failure.
        Untraced, the letter's context passes on unchanged and the order continues its old trace."""
        letter = carried(message.headers())
        if not self._tracing.enabled:
            yield letter
            return
        with self._tracing.tracer.start_as_current_span(
            f"send {self._orders_topic}",
            context=Context(),  # a root: the replay is a new trace, linked, not a child of the failure
            kind=SpanKind.PRODUCER,
            links=link_to(letter, **{"orders.link": "dead-lettered trace"}),
            attributes={
                "messaging.system": "kafka", "messaging.operation.type": "send",
                "messaging.destination.name": self._orders_topic, "orderId": view.order_id,
                "orders.replayed.from": source,
                # Zipkin keeps no links (its exporter drops them): the linked trace's id as a tag too.
                **({"orders.link.trace_id": linked} if (linked := trace_id_of(letter)) else {}),
            },
        ) as span:  # fmt: skip
            yield headers_for(span)

    def _delivered(self, delivered: set[Position], at: Position, err: KafkaError | None, _: Message) -> None:
        if err is None:
            delivered.add(at)
        else:
            self.tally.last_error = str(err)

    def _count(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            setattr(self.tally, outcome, getattr(self.tally, outcome) + 1)
        self.tally.matched += sum(o != "skipped" for o in outcomes)

    def _commit(self, positions: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self._dlq_topic, p, o) for p, o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise DlqError(f"replayed, but the position {positions} was not saved: {exc}") from exc
