"""`orders dlq list` and `orders dlq replay` on real services: dead letters back to succeeded orders."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.order import Order
from orders.dlq.replay import REPLAYED_FROM
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of, produce_raw

pytestmark = pytest.mark.kafka


def snapshot(pipeline: Pipeline):  # type: ignore[no-untyped-def]
    return Aggregate(redis.Redis.from_url(pipeline.env["REDIS_URL"])).snapshot()


def orders_cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orders.cli", *args],
        env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def replay(pipeline: Pipeline, *args: str) -> str:
    result = orders_cli(pipeline, "dlq", "replay", "--quiet", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def dlq_list(pipeline: Pipeline, *args: str) -> list[dict]:
    result = orders_cli(pipeline, "dlq", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def codec_for(pipeline: Pipeline) -> OrderCodec:
    settings = pipeline.settings()
    return OrderCodec(SchemaRegistryClient({"url": settings.schema_registry_url}), settings.orders_topic)


def read_all(pipeline: Pipeline, topic: str) -> list[Message]:
    """Every record on a topic, read to each partition's end (no group join; Tansu's ListOffsets
    under-reports the end, its fetch responses do not)."""
    consumer = Consumer(
        {"bootstrap.servers": pipeline.broker.bootstrap, "group.id": "reader", "enable.partition.eof": True}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Message] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 20
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partition within 20 s"
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is None:
                    records.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
    finally:
        consumer.close()
    return records


def committed_offsets(pipeline: Pipeline, group: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": pipeline.broker.bootstrap, "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(pipeline.dlq_topic, 0)], timeout=10)]
    finally:
        consumer.close()


def test_replay_turns_dead_letters_into_succeeded_orders_once(pipeline: Pipeline) -> None:
    failing = pipeline.start_worker(PERMANENT_FAILURE_RATE="1")
    pipeline.start_bridge()
    produced = orders_cli(pipeline, "produce", "--count", "30", "--rate", "0", "--seed", "21", "--quiet")
    assert "delivered 30, failed 0" in produced.stdout, produced.stderr
    wait_for(lambda: snapshot(pipeline).counters["dlq"] == 30, 25, "30 orders dead-lettered")
    codec = codec_for(pipeline)
    originals = [codec.decode(m.value()) for m in read_all(pipeline, pipeline.orders_topic)]
    prices = {r["orderId"]: Decimal(round(r["price"] * 100)).scaleb(-2) for r in originals}
    assert len(prices) == 30

    rows = dlq_list(pipeline)
    assert {row["order_id"]: Decimal(row["price"]) for row in rows} == prices
    assert {(row["stage"], row["error_class"], row["attempts"], row["replayable"]) for row in rows} == {
        ("process", "orders.core.errors.PermanentError", 1, True)
    }
    assert {row["original_topic"] for row in rows} == {pipeline.orders_topic}
    assert all(row["failed_at"] for row in rows)

    failing.stop()
    pipeline.start_worker()  # failure rates 0
    group = f"{pipeline.env['CONSUMER_GROUP']}-dlq-replay"
    dry = replay(pipeline, "--dry-run")
    assert "matched 30, would replay 30, skipped 0, unreplayable 0, failed 0" in dry
    assert len(read_all(pipeline, pipeline.orders_topic)) == 30  # produced nothing
    assert committed_offsets(pipeline, group) == [-1001]  # committed nothing

    assert "matched 30, replayed 30, skipped 0, unreplayable 0, failed 0" in replay(pipeline)
    wait_for(lambda: snapshot(pipeline).count == 30, 25, "replayed orders counted")
    snap = snapshot(pipeline)
    assert snap.sum == sum(prices.values())
    assert (snap.counters["succeeded"], snap.counters["dlq"]) == (30, 30)
    assert committed_offsets(pipeline, group) == [30]
    replayed = read_all(pipeline, pipeline.orders_topic)
    sources = {headers_of(m).get(REPLAYED_FROM) for m in replayed} - {None}
    assert sources == {f"{pipeline.dlq_topic}/0/{offset}" for offset in range(30)}

    assert "matched 0, replayed 0" in replay(pipeline)  # the position is kept: nothing twice
    assert len(read_all(pipeline, pipeline.orders_topic)) == 60


def test_bad_records_are_never_replayed_and_filters_hold_the_position(pipeline: Pipeline) -> None:
    failing = pipeline.start_worker(PERMANENT_FAILURE_RATE="1")
    pipeline.start_bridge()
    codec = codec_for(pipeline)
    one, nan = struct.pack("<f", 1.0), struct.pack("<f", math.nan)  # Avro floats: 4 little-endian bytes
    invalid = codec.encode(Order("nan-1", "Tablet", 100)).replace(one, nan)
    bad = [(b"garbage", b"\x13\x37"), (b"n", invalid)]
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic, bad)
    # The bad records go first, so they sit at DLQ offsets 0 and 1.
    wait_for(lambda: len(read_all(pipeline, pipeline.dlq_topic)) == 2, 25, "bad records dead-lettered", 0.2)
    goods = [Order(f"good-{i}", "Camera", 10000 + i) for i in range(3)]
    records = [(o.order_id.encode(), codec.encode(o)) for o in goods]
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic, records)
    wait_for(lambda: len(read_all(pipeline, pipeline.dlq_topic)) == 5, 25, "good orders dead-lettered", 0.2)

    by_id = {row["order_id"]: row for row in dlq_list(pipeline)}
    assert by_id.keys() == {"garbage", "nan-1", "good-0", "good-1", "good-2"}
    assert (by_id["garbage"]["stage"], by_id["garbage"]["product"], by_id["garbage"]["replayable"]) == (
        "decode", "", False
    )  # fmt: skip
    assert (by_id["nan-1"]["stage"], by_id["nan-1"]["price"], by_id["nan-1"]["replayable"]) == (
        "validate", "nan", False
    )  # fmt: skip
    latest = dlq_list(pipeline, "--stage", "process", "--limit", "2")  # the two most recent process failures
    assert [row["dlq_offset"] for row in latest] == [3, 4]
    assert {row["order_id"] for row in latest} < {"good-0", "good-1", "good-2"}

    failing.stop()
    worker = pipeline.start_worker()
    # A filter replays what it matches but does not move the position past what it excluded.
    one = replay(pipeline, "--order-id", "good-1")
    assert "matched 1, replayed 1, skipped 4, unreplayable 0, failed 0" in one
    assert "held at partition 0 offset 0" in one
    wait_for(lambda: snapshot(pipeline).count == 1, 25, "good-1 counted")

    # Unfiltered: the bad records are passed over, every good one re-published (good-1 a second time).
    assert "matched 5, replayed 3, skipped 0, unreplayable 2, failed 0" in replay(pipeline)
    wait_for(lambda: "already counted" in worker.tail(400), 25, "good-1's second copy seen as a duplicate")
    wait_for(lambda: snapshot(pipeline).count == 3, 25, "every good order counted")
    wait_for(
        lambda: snapshot(pipeline).counters["consumed"] == 9, 25, "the bridge to read every replayed record"
    )
    snap = snapshot(pipeline)
    assert (snap.count, snap.sum) == (3, Decimal("300.03"))
    assert len(read_all(pipeline, pipeline.orders_topic)) == 5 + 1 + 3  # the bad bytes were never re-sent
    assert len(read_all(pipeline, pipeline.dlq_topic)) == 5  # so no new dead letters

    assert "matched 0, replayed 0, skipped 0, unreplayable 0, failed 0" in replay(pipeline)
