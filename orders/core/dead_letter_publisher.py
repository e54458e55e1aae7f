"""Producing dead letters, in bounded time, and knowing which ones the DLQ topic acknowledged.

Every letter ends with an outcome before :meth:`DeadLetterPublisher.deliver` returns: the producer's
``message.timeout.ms`` is the delivery timeout and the flush waits a little longer, so a letter
reported as undelivered is never delivered later behind the caller's back, and only those are sent
again. A letter over the size limit (the producer's ``message.max.bytes`` or the broker's) goes again
without the original value, so an oversized record can never stall a partition.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace

from orders.core.dead_letter import DeadLetter
from orders.core.kafka import create_producer
from orders.core.settings import Settings
from orders.core.trace_context import trace_id_of

log = logging.getLogger(__name__)

# librdkafka's default message.max.bytes; a producer refuses bigger records before sending them.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# Room for the record's own framing (length, attributes, offsets, header counts) below that limit.
FRAMING_BYTES = 1024
FLUSH_MARGIN = 2.0
# The broker's refusal and librdkafka's own check before sending share this code.
TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE}


class DeadLetterNotDelivered(Exception):
    """The DLQ topic did not acknowledge these letters; their orders must not be acknowledged either."""

    def __init__(self, message: str, undelivered: Sequence[DeadLetter] = ()) -> None:
        super().__init__(message)
        self.undelivered = list(undelivered)


@dataclass
class _Outcome:
    letter: DeadLetter
    error: KafkaError | None = None
    done: bool = False


class DeadLetterPublisher:
    """Produces dead letters to one topic; :meth:`deliver` returns once every one is acknowledged."""

    def __init__(self, producer: Producer, topic: str, timeout: float, max_bytes: int) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._max_bytes = max_bytes

    def deliver(self, letters: Sequence[DeadLetter]) -> None:
        """Publish ``letters`` and wait; raises :class:`DeadLetterNotDelivered` naming those not acked."""
        for letter in letters:
            log.error(
                "dead letter %s[%s]@%s stage=%s after %d attempt(s): %s: %s%s",
                letter.origin["topic"], letter.origin["partition"], letter.origin["offset"],
                letter.stage, letter.attempts, letter.error_class, letter.error_message[:500],
                _trace_note(letter),
            )  # fmt: skip
        first = self._send([self._fitted(letter) for letter in letters])
        # Over the broker's limit (or ours, misjudged): once more without the original value.
        again = self._send([o.letter.without_value() for o in first if self._too_large(o)])
        failed = [o for o in [*first, *again] if not self._acked(o) and not self._too_large(o)]
        if failed:
            reason = failed[0].error or f"no acknowledgement within {self._timeout:g}s"
            raise DeadLetterNotDelivered(
                f"DLQ topic {self._topic} did not acknowledge {len(failed)} of {len(letters)}: {reason}",
                [o.letter for o in failed],
            )

    def _fitted(self, letter: DeadLetter) -> DeadLetter:
        if letter.size() <= self._max_bytes:
            return letter
        log.warning(
            "dead letter for %s[%s]@%s is %d bytes, over the %d-byte limit: sent without its value",
            letter.origin["topic"], letter.origin["partition"], letter.origin["offset"], letter.size(),
            self._max_bytes,
        )  # fmt: skip
        return letter.without_value()

    def _send(self, letters: Sequence[DeadLetter]) -> list[_Outcome]:
        outcomes = [_Outcome(letter) for letter in letters]
        for outcome in outcomes:
            self._produce(outcome)
        if outcomes:
            self._producer.flush(self._timeout + FLUSH_MARGIN)
        return outcomes

    def _produce(self, outcome: _Outcome) -> None:
        letter = outcome.letter

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            outcome.error, outcome.done = err, True

        try:
            self._producer.produce(self._topic, letter.value, letter.key, headers=letter.headers(),
                                   on_delivery=delivered)  # fmt: skip
        except KafkaException as exc:  # refused before sending: too large, unknown topic, ...
            outcome.error, outcome.done = exc.args[0], True
        except BufferError:  # the local queue is full: this one waits for the next round
            outcome.error, outcome.done = KafkaError(KafkaError._QUEUE_FULL), True

    @staticmethod
    def _acked(outcome: _Outcome) -> bool:
        return outcome.done and outcome.error is None

    @staticmethod
    def _too_large(outcome: _Outcome) -> bool:
        return outcome.error is not None and outcome.error.code() in TOO_LARGE and bool(outcome.letter.value)


def _trace_note(letter: DeadLetter) -> str:
    """`` [trace <id>]`` for a letter that carries a trace context (traced or passed through)."""
    if trace.get_current_span().get_span_context().is_valid:
        return ""  # the line is written inside a span: the log format shows its trace id already
    trace_id = trace_id_of(letter.trace_headers)
    return f" [trace {trace_id}]" if trace_id else ""


def create_dead_letter_publisher(settings: Settings, timeout: float) -> DeadLetterPublisher:
    """A publisher whose producer gives up on a letter after ``timeout`` seconds (then it is retried)."""
    producer = create_producer(settings, **{"message.timeout.ms": int(timeout * 1000)})
    limit = int(settings.kafka_options.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    return DeadLetterPublisher(producer, settings.dlq_topic, timeout, limit - FRAMING_BYTES)
