"""Scenario 8: poison records (oversized, a decode bomb) ahead of good orders; none may stall a partition.

- a ~999 KB record that does not decode, and a ~999 KB order that fails validation (its orderId is
  the size): each letter with its headers is over librdkafka's 1,000,000-byte producer limit, so it
  goes without the original value, and headers say so and give the size;
- a decode bomb: a writer schema whose array items are ``null`` (zero bytes each), and a 20-byte
  body claiming 2^62 of them, which fastavro would skip one by one for decades;
- a small undecodable record in the same batch, whose letter must be written once, not once per
  retry of the batch's DLQ publish.
Then 100 good orders: all counted, all poison dead-lettered once with its stage and reason.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from orders.core.codec import HEADER, MAGIC_BYTE, OrderCodec
from orders.core.dead_letter import (
    HEADER_EXC_MESSAGE,
    HEADER_OFFSET,
    HEADER_ORIGINAL_SIZE,
    HEADER_STAGE,
    HEADER_VALUE_DROPPED,
)
from orders.core.order import Order
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of
from tests.reliability.accounting import Accounting, account, read_to_end
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.kafka
BIG = 999_000
GOOD = 100
BOMB_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "com.kafka.orders",
    "fields": [
        {"name": "orderId", "type": "string"},
        {"name": "filler", "type": {"type": "array", "items": "null"}},
    ],
}


def zigzag_varint(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def bomb(schema_id: int) -> bytes:
    """orderId "x", then one array block claiming 2^62 null items, then the end of the array."""
    body = zigzag_varint(1) + b"x" + zigzag_varint(2**62) + zigzag_varint(0)
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def produce_big(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Records up to the broker's limit (1,048,588 bytes): above librdkafka's default of 1,000,000."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_048_576, "acks": "all"})
    errors: list[object] = []
    for key, value in records:
        producer.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(60) == 0 and not errors, errors


def test_poison_records_are_dead_lettered_and_good_orders_flow(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows
) -> None:
    s = Scenario(
        "8", pipeline, profile, reliability_report, seed=808, FAILURE_RATE="0", PERMANENT_FAILURE_RATE="0"
    )
    worker, bridge = s.worker(), s.bridge()
    registry = SchemaRegistryClient({"url": s.registry_url})
    codec = OrderCodec(registry, pipeline.orders_topic)
    bomb_id = registry.register_schema(
        f"{pipeline.orders_topic}-bomb", Schema(json.dumps(BOMB_SCHEMA), "AVRO")
    )
    huge_id = Order("h" * BIG, "Camera", 1000)  # orderId over 256 characters: fails validation
    poison = [
        (b"poison-undecodable", b"\x07" + os.urandom(BIG)),
        (b"poison-invalid", codec.encode(huge_id)),
        (b"poison-bomb", bomb(bomb_id)),
        (b"poison-small", b"not avro at all"),
    ]
    good = [Order(f"good-{pipeline.orders_topic}-{i}", "Camera", 1000 + i) for i in range(GOOD)]
    produce_big(
        s.bootstrap, pipeline.orders_topic, poison + [(o.order_id.encode(), codec.encode(o)) for o in good]
    )

    aggregate = s.aggregate
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and aggregate.snapshot().count < GOOD:
        time.sleep(0.5)
    letters = read_to_end(s.bootstrap, pipeline.dlq_topic)
    produced = {o.order_id: Decimal(o.price_cents).scaleb(-2) for o in good}
    orders = account(produced, letters, redis.Redis.from_url(s.redis_url), aggregate.snapshot(), set())
    problems = orders.problems + audit_poison(letters)
    assert bridge.running() and worker.running()
    figures = Accounting(
        produced=len(poison) + GOOD, succeeded=orders.succeeded, dlq=len(letters), lost=orders.lost,
        counted_twice=orders.counted_twice, problems=problems, lost_ids=orders.lost_ids,
    )  # fmt: skip
    s.finish(
        figures, "999 KB undecodable and invalid records sent without their value; a 2^62-item decode bomb"
    )


def audit_poison(letters: list) -> list[str]:  # type: ignore[type-arg]
    """Each poison record dead-lettered once, at its stage, for its reason; the big ones without value."""
    by_key: dict[bytes, list] = {}  # type: ignore[type-arg]
    for letter in letters:
        by_key.setdefault(letter.key() or b"", []).append(letter)
    expected = {
        b"poison-undecodable": ("decode", "magic byte", True),
        b"poison-invalid": ("validate", "orderId is 999000 characters", True),
        b"poison-bomb": ("decode", "zero bytes", False),
        b"poison-small": ("decode", "magic byte|too short", False),
    }
    problems = []
    for key, (stage, reason, dropped) in expected.items():
        found = by_key.get(key, [])
        if len(found) != 1:
            problems.append(f"{key.decode()}: {len(found)} dead letters, expected 1")
            continue
        headers = headers_of(found[0])
        got = (headers.get(HEADER_STAGE), headers.get(HEADER_EXC_MESSAGE, "")[:120])
        if got[0] != stage or not any(r in got[1] for r in reason.split("|")):
            problems.append(
                f"{key.decode()}: expected {stage} /{reason}/, got {got} at {headers.get(HEADER_OFFSET)}"
            )
        if dropped and (
            headers.get(HEADER_VALUE_DROPPED) != "true" or headers.get(HEADER_ORIGINAL_SIZE) is None
        ):
            problems.append(f"{key.decode()}: oversized letter does not say its value was dropped: {headers}")
    return problems
