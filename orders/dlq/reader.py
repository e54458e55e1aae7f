"""Reading the DLQ topic: every record up to the end seen when reading began, described for people.

Reading never joins a consumer group: partitions are assigned by hand, so a listing terminates and
moves no committed position (a replay commits its own, see :mod:`orders.dlq.replay`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from orders.core import dead_letter as dl
from orders.core.codec import OrderCodec
from orders.core.errors import InvalidOrder, UndecodableRecord
from orders.core.order import order_from_record, price_to_cents
from orders.core.trace_context import carried, trace_id_of

log = logging.getLogger(__name__)

METADATA_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0  # seconds without a record while records below the end are still missing
BATCH_SIZE = 500


class DlqError(Exception):
    """The DLQ topic could not be read to its end, or a replay's position could not be saved."""


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as the tools show it; blanks where the record does not say."""

    order_id: str
    product: str
    price: str
    stage: str
    error_class: str
    error_message: str
    attempts: int | None
    failed_at: datetime | None
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    dlq_partition: int
    dlq_offset: int
    rejection: str | None = None  # why the bridge would dead-letter it again today; None: replayable
    trace_id: str | None = None  # the order's trace, from the letter's traceparent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_at"] = self.failed_at.isoformat() if self.failed_at else None
        data["replayable"] = self.rejection is None
        return data


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a command acts on; an empty filter matches all."""

    stages: frozenset[str] = frozenset()
    error: str = ""  # case-insensitive substring of "<exception class>: <message>"
    order_ids: frozenset[str] = frozenset()
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before

    def matches(self, view: DeadLetterView) -> bool:
        if self.stages and view.stage not in self.stages:
            return False
        if self.order_ids and view.order_id not in self.order_ids:
            return False
        if self.error and self.error.lower() not in f"{view.error_class}: {view.error_message}".lower():
            return False
        if self.since and (view.failed_at is None or view.failed_at < self.since):
            return False
        return not (self.until and (view.failed_at is None or view.failed_at >= self.until))


def header_map(headers: Iterable[tuple[str, str | bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as UTF-8 strings (the dead-letter convention); the last of a repeated name wins."""
    return {name: _text(value) for name, value in headers or []}


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time, naive ones taken as UTC; None if absent or malformed."""
    try:
        parsed = datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(text: str | None) -> int | None:
    try:
        return int(text or "")
    except ValueError:
        return None


def _price_text(price: Any) -> str:
    """The price as money (float32 rounded to cents, as the bridge does); as-is when not a valid price."""
    try:
        return str(Decimal(price_to_cents(price)).scaleb(-2))
    except InvalidOrder:
        return str(price)


def view_from_headers(
    headers: Mapping[str, str],
    key: bytes | None,
    record: Mapping[str, Any] | None,
    dlq_partition: int,
    dlq_offset: int,
    rejection: str | None = None,
) -> DeadLetterView:
    """Describe a dead letter from its headers, its key and its value decoded (None if it does not)."""
    order_id = record.get("orderId") if record else None
    if not isinstance(order_id, str) or not order_id:
        order_id = key.decode("utf-8", "replace") if key is not None else ""
    return DeadLetterView(
        order_id=order_id,
        product=str(record.get("product", "")) if record else "",
        price=_price_text(record.get("price")) if record else "",
        stage=headers.get(dl.HEADER_STAGE, ""),
        error_class=headers.get(dl.HEADER_EXC_CLASS, ""),
        error_message=headers.get(dl.HEADER_EXC_MESSAGE, ""),
        attempts=_int(headers.get(dl.HEADER_ATTEMPTS)),
        failed_at=parse_time(headers.get(dl.HEADER_FAILED_AT)),
        original_topic=headers.get(dl.HEADER_TOPIC, ""),
        original_partition=_int(headers.get(dl.HEADER_PARTITION)),
        original_offset=_int(headers.get(dl.HEADER_OFFSET)),
        dlq_partition=dlq_partition,
        dlq_offset=dlq_offset,
        rejection=rejection,
        trace_id=trace_id_of(carried(headers)),
    )


def decode_for_replay(codec: OrderCodec, value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The decoded record (None if it does not decode) and why the bridge would reject it now, if it would.

    Raises :class:`RegistryUnavailable` when the registry cannot answer: that says nothing about the record.
    """
    try:
        record = codec.decode(value)
    except UndecodableRecord as exc:
        return None, f"decode: {exc}"
    try:
        order_from_record(record)
    except InvalidOrder as exc:
        return record, f"validate: {exc}"
    return record, None


def view_of(message: Message, codec: OrderCodec) -> DeadLetterView:
    record, rejection = decode_for_replay(codec, message.value())
    raw = message.headers()
    headers = header_map(raw.items() if isinstance(raw, dict) else raw)
    return view_from_headers(
        headers, message.key(), record, message.partition() or 0, message.offset() or 0, rejection
    )


# -- reading the topic up to its end ----------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Where reading one DLQ partition starts, and the broker's high watermark when it began."""

    partition: int
    start: int
    end: int


def plan_spans(consumer: Consumer, topic: str, from_committed: bool) -> list[Span]:
    """Per partition, where to start (the low watermark, or the group's committed offset if later)."""
    metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise DlqError(f"topic {topic} is not readable: {metadata.error if metadata else 'unknown'}")
    partitions = sorted(metadata.partitions)
    committed: dict[int, int] = {}
    if from_committed:
        asked = [TopicPartition(topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(asked, timeout=METADATA_TIMEOUT)}
    spans = []
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), METADATA_TIMEOUT)
        spans.append(Span(partition, max(low, committed.get(partition, -1)), high))
    return spans


def read_batches(consumer: Consumer, topic: str, spans: Sequence[Span]) -> Iterator[list[Message]]:
    """Assign the spans and yield their records in batches until every partition reached its end.

    A partition's end is fixed when its first fetch response arrives: the greater of the span's high
    watermark and the one that response reports (Tansu's ListOffsets answers the last batch's base
    offset + 1; its fetch responses the true end). Records arriving later (say, a replayed order that
    failed again) wait for the next run, so a replay never chases its own tail.
    Raises :class:`DlqError` when no record arrives for :data:`IDLE_TIMEOUT` seconds before the end.
    """
    starts = {s.partition: s.start for s in spans}
    floors = {s.partition: s.end for s in spans}
    ends: dict[int, int] = {}
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    pending, last_record = set(starts), time.monotonic()
    while pending:
        messages = consumer.consume(BATCH_SIZE, timeout=0.2)
        _fix_ends(consumer, topic, pending - ends.keys(), floors, ends)
        batch = [m for m in messages if _is_record(m, ends)]
        for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
            if tp.partition in ends and max(tp.offset, starts[tp.partition]) >= ends[tp.partition]:
                pending.discard(tp.partition)
        if batch:
            last_record = time.monotonic()
            yield batch
        elif time.monotonic() - last_record > IDLE_TIMEOUT:
            raise DlqError(f"{topic}: nothing read for {IDLE_TIMEOUT:.0f}s; partitions {pending} unfinished")


def _fix_ends(
    consumer: Consumer, topic: str, partitions: Iterable[int], floors: Mapping[int, int], ends: dict[int, int]
) -> None:
    for partition in partitions:
        marks = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if marks is not None and marks[1] >= 0:  # a fetch response has told the high watermark
            ends[partition] = max(marks[1], floors[partition])


def _is_record(message: Message, ends: Mapping[int, int]) -> bool:
    error = message.error()
    if error is not None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error on %s[%s]: %s", message.topic(), message.partition(), error)
        return False
    end = ends.get(message.partition() or 0)
    return end is None or (message.offset() or 0) < end  # no end yet: from the very first fetch
