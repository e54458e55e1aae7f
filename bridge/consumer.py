"""The bridge loop: poll -> decode -> hand off -> store offsets; backpressure; clean shutdown.

Guarantees: a partition's offset is stored (and so committed) only after every record of the batch
below it was accepted by the Celery broker or acknowledged by the DLQ topic; batches are handled
whole between two polls, so a rebalance never sees a half-done batch and commits only finished work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from kombu.exceptions import BatchPublishError, OperationalError
from opentelemetry.trace import Span

from bridge import metrics
from bridge.backpressure import DepthEstimate
from bridge.counters import CounterBuffer
from bridge.group_watch import GroupWatch
from bridge.handoff import Handoff
from bridge.settings import BridgeSettings
from bridge.tracing import RecordSpans
from orders.core.aggregate import Event, dead_letter_event
from orders.core.codec import OrderCodec
from orders.core.dead_letter import DeadLetter, origin_of
from orders.core.dead_letter_publisher import DeadLetterNotDelivered, DeadLetterPublisher
from orders.core.errors import InvalidOrder, RegistryUnavailable, UndecodableRecord
from orders.core.order import MAX_ID_LENGTH, OrderPayload, RecordOrigin, order_from_record
from orders.core.queue_depth import QueueDepthReader, QueueDepthUnavailable
from orders.core.trace_context import TraceHeaders
from orders.core.tracing import OFF, Tracing

log = logging.getLogger(__name__)
T = TypeVar("T")
HandOff = tuple[OrderPayload, RecordOrigin]
# kombu raises BatchPublishError (not an OperationalError) when Redis drops a batched hand-off.
BROKER_ERRORS = (OperationalError, BatchPublishError, redis.RedisError, OSError)
DLQ_ERRORS = (DeadLetterNotDelivered, KafkaException, BufferError)
MAX_BACKOFF = 30.0
# A hand-off is retried at least this often: each try is one bounded round trip to the broker, and the
# bridge follows a failed-over broker within one interval of its return.
HANDOFF_MAX_BACKOFF = 2.0
# Builds a consumer whose librdkafka statistics go to the given callback.
ConsumerFactory = Callable[[Callable[[str], None]], Consumer]


class Stopping(Exception):
    """Shutdown was asked for while a batch waited on a retry; the batch is left uncommitted."""


class Bridge:
    def __init__(
        self,
        settings: BridgeSettings,
        new_consumer: ConsumerFactory,
        codec: OrderCodec,
        handoff: Handoff,
        depth: QueueDepthReader,
        dead_letters: DeadLetterPublisher,
        count_events: Callable[[Mapping[Event, int]], None],
        tracing: Tracing = OFF,
    ) -> None:
        self._settings = settings
        self._spans = RecordSpans(tracing, settings.consumer_group)
        self._new_consumer = new_consumer
        self._watch = GroupWatch(settings.bridge_rejoin_timeout)
        self._consumer = new_consumer(self._watch.observe)
        self._codec = codec
        self._handoff = handoff
        self._dead_letters = dead_letters
        self._counts = CounterBuffer(count_events)
        self._queue = DepthEstimate(depth, settings.max_queue_depth)
        self._stop = threading.Event()
        self._paused = False
        # Ready once the current consumer has joined its group (an assignment, even an empty one).
        self._joined = False
        # The hand-off the loop retries until Celery's broker takes it, with the error (for /healthz).
        self._waiting_for: str | None = None

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return (safe from a signal handler)."""
        self._stop.set()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """What /healthz answers: ready once in the consumer group and while Celery's broker takes the
        hand-offs; paused, and what it waits for, as details."""
        waiting = self._waiting_for
        ready = self._joined and not self._stop.is_set() and waiting is None
        return ready, {"paused": self._paused, **({"waiting_for": waiting} if waiting else {})}

    def run(self) -> None:
        self._subscribe()
        try:
            while not self._stop.is_set():
                self._replace_consumer_if_stalled()
                room = min(self._room_in_queue(), self._settings.bridge_batch_size)
                messages = self._next_batch(room) if room else self._idle()
                if messages:
                    self._process(messages)
                self._counts.flush(force=not messages)  # idle: nothing to batch them with
        except Stopping:
            log.info("stopping with a batch not handed off; it stays uncommitted and is read again")
        finally:
            self._close()

    def _next_batch(self, room: int) -> list[Message]:
        """Wait for the first record only, then take whatever else has already arrived.

        Waiting for a full batch would hold a lone record back for the whole poll timeout at low
        rates; under load the local queue is full anyway and batches stay large.
        """
        first = self._consumer.consume(1, timeout=0.5)
        if not first or room == 1:
            return first
        return first + self._consumer.consume(room - 1, timeout=0)

    def _idle(self) -> list[Message]:
        """While paused, keep polling so the group membership and callbacks stay alive."""
        message = self._consumer.poll(0.2)
        return [message] if message is not None else []  # fetched before the pause: still ours

    # -- one batch ---------------------------------------------------------------------------

    def _process(self, messages: Sequence[Message]) -> None:
        records = [m for m in messages if not self._is_error(m)]
        hand_offs: list[HandOff] = []
        trace_headers: list[TraceHeaders | None] = []
        letters: list[DeadLetter] = []
        spans = []
        for message in records:
            span, headers = self._spans.begin(message)
            spans.append(span)
            outcome = self._classify(message, span, headers)
            if isinstance(outcome, DeadLetter):
                letters.append(outcome)
            else:
                hand_offs.append(outcome)
                trace_headers.append(headers)
        if hand_offs:
            # Untraced and without incoming contexts, no headers at all: the hand-off costs what it did.
            carried = trace_headers if any(trace_headers) else None
            self._until_done(
                lambda: self._handoff.hand_off(hand_offs, carried), "hand-off to Celery", BROKER_ERRORS,
                HANDOFF_MAX_BACKOFF, unready=True,
            )  # fmt: skip
            self._queue.pushed(len(hand_offs))
            metrics.HANDED_OFF.inc(len(hand_offs))
        if letters:
            self._publish_dead_letters(letters)
            for letter in letters:
                metrics.DEAD_LETTERS.labels(letter.stage).inc()
                self._counts.add(dead_letter_event(letter.stage), 1)
        self._spans.end(spans)
        if log.isEnabledFor(logging.DEBUG):  # what a bridge handed off, and when (LOG_LEVEL=DEBUG)
            log.debug("handed off %d, dead-lettered %d: %s", len(hand_offs), len(letters), _spans(records))
        self._store_offsets(records)
        self._counts.add("consumed", len(records))
        self._counts.add("dlq", len(letters))
        metrics.CONSUMED.inc(len(records))

    def _classify(
        self, message: Message, span: Span | None, headers: TraceHeaders | None
    ) -> HandOff | DeadLetter:
        origin = origin_of(message, self._settings.consumer_group)
        record = None
        try:
            record = self._until_done(
                lambda: self._codec.decode(message.value()), "decode", (RegistryUnavailable,)
            )
            payload = order_from_record(record).to_payload()
            RecordSpans.handed_off(span, payload["orderId"])
            return payload, origin
        except (UndecodableRecord, InvalidOrder) as exc:
            RecordSpans.dead_lettered(span, exc.stage, exc)
            order_id = record.get("orderId") if isinstance(record, dict) else None
            # An orderId too long to be valid keeps the record's own key: keyed by a huge id, the
            # dead letter (key + the original value) could outgrow the topic's size limit and
            # never be accepted, stalling the partition.
            key = (
                order_id.encode("utf-8", "replace")
                if isinstance(order_id, str) and order_id and len(order_id) <= MAX_ID_LENGTH
                else message.key()
            )
            return DeadLetter.for_exception(
                exc, key=key, value=message.value() or b"", origin=origin, stage=exc.stage,
                attempts=1, component=__name__, trace_headers=headers,
            )  # fmt: skip

    def _publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Until the DLQ acknowledged every letter; a retry sends only the letters not acknowledged."""
        pending = list(letters)

        def deliver_pending() -> None:
            nonlocal pending
            try:
                self._dead_letters.deliver(pending)
            except DeadLetterNotDelivered as exc:
                pending = exc.undelivered
                raise

        self._until_done(deliver_pending, "DLQ publish", DLQ_ERRORS)

    def _store_offsets(self, records: Sequence[Message]) -> None:
        """Store, per partition, the offset after the last record handled (the batch is in order)."""
        next_offsets: dict[tuple[str, int], int] = {}
        for m in records:
            next_offsets[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        if not next_offsets:
            return
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
            )
        except KafkaException as exc:
            # The partitions moved to another bridge while we worked; it re-reads them (deduped).
            log.warning("could not store offsets %s: %s", next_offsets, exc)

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error on %s[%s]: %s", message.topic(), message.partition(), error)
        return True

    def _until_done(
        self,
        action: Callable[[], T],
        what: str,
        retry_on: tuple[type[BaseException], ...],
        max_backoff: float = MAX_BACKOFF,
        unready: bool = False,
    ) -> T:
        """Run ``action`` until it succeeds, backing off on ``retry_on`` errors; never skip a record.

        ``unready``: meanwhile /healthz answers 503, saying what the bridge waits for (the hand-off: a
        broker the bridge cannot reach; a registry outage is the decode's own, logged, retry).
        """
        delay = 0.5
        while True:
            try:
                result = action()
                if unready:
                    self._waiting_for = None
                return result
            except retry_on as exc:
                if self._stop.is_set():
                    raise Stopping from exc
                if unready:
                    self._waiting_for = f"{what}: {exc}"
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, max_backoff)

    # -- backpressure and rebalances ------------------------------------------------------------

    def _room_in_queue(self) -> int:
        """How many more orders the Celery queue may take; pauses at the bound, resumes below half."""
        bound = self._settings.max_queue_depth
        try:
            depth = self._queue.current(paused=self._paused)
        except QueueDepthUnavailable as exc:
            log.warning("cannot read the Celery queue depth: %s", exc)
            return 0 if self._paused else self._settings.bridge_batch_size
        if depth >= bound or (self._paused and depth > bound // 2):
            self._pause(depth)
            return 0
        if self._paused:
            self._resume(depth)
        return bound - depth

    def _pause(self, depth: int) -> None:
        # Re-pausing each time also covers partitions assigned since the pause began.
        self._consumer.pause(self._consumer.assignment())
        if not self._paused:
            log.info("pausing: Celery queue holds %d (bound %d)", depth, self._settings.max_queue_depth)
            self._paused = True
            metrics.PAUSED.set(1)

    def _resume(self, depth: int) -> None:
        self._consumer.resume(self._consumer.assignment())
        self._paused = False
        metrics.PAUSED.set(0)
        log.info("resuming: Celery queue down to %d", depth)

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self._settings.orders_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _replace_consumer_if_stalled(self) -> None:
        """A consumer stuck out of its group is closed aside and a new one joins (group_watch.py).

        Records the old one held but had not committed are read again by whoever gets their
        partitions (at least once; the aggregate counts an order once).
        """
        reason = self._watch.stalled()
        if reason is None:
            return
        log.error("%s; replacing the Kafka consumer", reason)
        metrics.CONSUMER_REPLACED.inc()
        stuck = self._consumer
        # close() waits for the group to wind down, which may be what is stuck: not on this thread.
        threading.Thread(
            target=_close_quietly, args=(stuck,), name="close-stalled-consumer", daemon=True
        ).start()
        self._watch = GroupWatch(self._settings.bridge_rejoin_timeout)
        self._consumer = self._new_consumer(self._watch.observe)
        self._paused = False  # a new consumer fetches from what it is assigned; backpressure re-checks
        self._joined = False
        metrics.PAUSED.set(0)
        self._subscribe()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _describe(partitions))
        self._joined = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked: %s; committing what is handed off", _describe(partitions))
        self._commit(consumer)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave these partitions away without us (we missed our session: frozen, cut off).

        Their new owner already reads on from the last commit, so nothing is committed for them (the
        group would refuse it). What this bridge handed off since that commit is read again there,
        and counted once.
        """
        log.warning(
            "partitions lost: %s (out of the group past the session timeout); not committing for them",
            _describe(partitions),
        )

    def _commit(self, consumer: Consumer | None = None) -> None:
        try:
            (consumer or self._consumer).commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed: %s", exc)

    def _close(self) -> None:
        self._commit()
        self._counts.flush(force=True)
        self._consumer.close()
        log.info("bridge stopped; offsets committed")


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("closing the replaced consumer: %s", exc)


def _spans(records: Sequence[Message]) -> str:
    """``topic[partition]@first-last`` for each partition of a batch (records are in order per partition)."""
    spans: dict[tuple[str, int], list[int]] = {}
    for m in records:
        span = spans.setdefault((m.topic() or "", m.partition() or 0), [m.offset() or 0, 0])
        span[1] = m.offset() or 0
    return ", ".join(f"{t}[{p}]@{first}-{last}" for (t, p), (first, last) in spans.items())


def _describe(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none"
