"""The dead-letter publisher's bookkeeping, with a fake producer: sizes, retries of the unacked only.

(The real producer path runs against Kafka in tests/reliability/test_poison.py and test_dlq_outage.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from orders.core.dead_letter import HEADER_ORIGINAL_SIZE, HEADER_VALUE_DROPPED, DeadLetter
from orders.core.dead_letter_publisher import DeadLetterNotDelivered, DeadLetterPublisher
from worker.dead_letter import DlqCircuit

ORIGIN = {
    "topic": "orders",
    "partition": 0,
    "offset": 7,
    "timestamp": 0,
    "key": None,
    "value": "",
    "group": "g",
}


def letter(value: bytes = b"v", key: bytes | None = b"k") -> DeadLetter:
    return DeadLetter(key=key, value=value, origin=ORIGIN, stage="decode", error_class="E", error_message="m",  # type: ignore[arg-type]
                      stacktrace="", attempts=1, component="test")  # fmt: skip


class FakeProducer:
    """Acknowledges or fails each produce by a rule; records what was sent."""

    def __init__(self, verdict: Callable[[bytes | None, bytes], KafkaError | None]) -> None:
        self.verdict = verdict
        self.sent: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self._callbacks: list[Callable[[], None]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self.sent.append((key, value, dict(headers)))
        error = self.verdict(key, value)
        self._callbacks.append(lambda: on_delivery(error, None))

    def flush(self, timeout: float) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        return 0


def publisher(producer: FakeProducer, max_bytes: int = 10_000) -> DeadLetterPublisher:
    return DeadLetterPublisher(producer, "dlq", timeout=1.0, max_bytes=max_bytes)  # type: ignore[arg-type]


def test_a_letter_over_the_limit_goes_without_its_value_and_says_so() -> None:
    producer = FakeProducer(lambda _k, _v: None)
    publisher(producer, max_bytes=5_000).deliver([letter(b"x" * 6_000)])
    ((_, value, headers),) = producer.sent
    assert value == b""
    assert headers[HEADER_VALUE_DROPPED] == b"true" and headers[HEADER_ORIGINAL_SIZE] == b"6000"


def test_a_letter_the_broker_finds_too_large_is_sent_again_without_its_value() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer = FakeProducer(lambda _k, v: too_large if v else None)
    publisher(producer).deliver([letter(b"x" * 3_000)])
    assert [len(v) for _k, v, _h in producer.sent] == [3_000, 0]


def test_only_the_letters_not_acknowledged_are_reported_for_a_retry() -> None:
    producer = FakeProducer(lambda k, _v: KafkaError(KafkaError._MSG_TIMED_OUT) if k == b"b" else None)
    letters = [letter(key=b"a"), letter(key=b"b"), letter(key=b"c")]
    with pytest.raises(DeadLetterNotDelivered) as caught:
        publisher(producer).deliver(letters)
    assert [lt.key for lt in caught.value.undelivered] == [b"b"]


def test_a_huge_key_goes_too_when_the_value_is_dropped() -> None:
    dropped = letter(b"x" * 6_000, key=b"k" * 5_000).without_value()
    assert dropped.key is None and dropped.value == b""


def test_the_circuit_fails_fast_after_a_failure_until_the_cool_down_passes() -> None:
    now = [0.0]
    circuit = DlqCircuit(cool_down=10, clock=lambda: now[0])
    circuit.check()
    circuit.failed()
    with pytest.raises(DeadLetterNotDelivered, match="trying again in 10s"):
        circuit.check()
    now[0] = 10.5
    circuit.check()  # the next letter tries again
    circuit.succeeded()
    circuit.check()
