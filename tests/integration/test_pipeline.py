"""The order pipeline end to end on real services: Kafka (both lanes), registry, Redis, Celery workers."""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal

import pytest
import redis
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.dead_letter import (
    HEADER_ATTEMPTS,
    HEADER_EXC_CLASS,
    HEADER_EXC_MESSAGE,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_STAGE,
    HEADER_TOPIC,
)  # fmt: skip
from orders.core.order import Order
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of, produce_raw, read_topic
from worker.faults import FailureInjector

pytestmark = pytest.mark.kafka


@pytest.fixture
def pipeline(pipeline: Pipeline, celery_broker: str, request: pytest.FixtureRequest) -> Pipeline:
    """Each scenario on Redis and, with Apache Kafka, on RabbitMQ as Celery's broker."""
    if celery_broker == "rabbitmq":
        pipeline.use_rabbitmq(request.getfixturevalue("rabbitmq"))
    return pipeline


def snapshot(pipeline: Pipeline):  # type: ignore[no-untyped-def]
    return Aggregate(redis.Redis.from_url(pipeline.env["REDIS_URL"])).snapshot()


def produce_cli(pipeline: Pipeline, count: int, seed: int, **env: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orders.cli", "produce", "--count", str(count), "--rate", "0",
         "--seed", str(seed), "--quiet"],
        env={**os.environ, **pipeline.env, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"delivered {count}, failed 0" in result.stdout


def produced_orders(pipeline: Pipeline, count: int) -> dict[str, Decimal]:
    """Read the orders topic back: orderId -> price, as the pipeline should see them."""
    settings = pipeline.settings()
    codec = OrderCodec(SchemaRegistryClient({"url": settings.schema_registry_url}), settings.orders_topic)
    messages = read_topic(pipeline.broker.bootstrap, pipeline.orders_topic, count)
    assert len(messages) == count
    prices = {}
    for message in messages:
        record = codec.decode(message.value())
        prices[record["orderId"]] = Decimal(round(record["price"] * 100)).scaleb(-2)
    return prices


def codec_for(pipeline: Pipeline) -> OrderCodec:
    settings = pipeline.settings()
    return OrderCodec(SchemaRegistryClient({"url": settings.schema_registry_url}), settings.orders_topic)


def test_2000_orders_average_exactly(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_bridge()
    produce_cli(pipeline, 2000, seed=7)

    wait_for(lambda: snapshot(pipeline).count >= 2000, 120, "2,000 orders aggregated")
    prices = produced_orders(pipeline, 2000)
    snap = snapshot(pipeline)
    exact_mean = sum(prices.values()) / len(prices)
    assert snap.count == 2000
    assert snap.sum == sum(prices.values())
    assert snap.average.quantize(Decimal("0.01")) == exact_mean.quantize(Decimal("0.01"))
    assert snap.counters["dlq"] == 0
    assert read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 1, timeout=3) == []


def test_transient_failures_end_succeeded_or_dead_lettered(pipeline: Pipeline) -> None:
    # 0.5: about 1 order in 16 fails all four attempts, so 400 random orderIds always give some dead letters
    # (at 0.3 a run with none happens about once in 25).
    rate, seed, retries = 0.5, 11, 3
    pipeline.start_worker(FAILURE_RATE=str(rate), FAILURE_SEED=str(seed), RETRY_BACKOFF_BASE="1")
    pipeline.start_bridge()
    produce_cli(pipeline, 400, seed=3)
    prices = produced_orders(pipeline, 400)

    # The injector is a pure function of (seed, orderId, attempt): the outcome of every order is known.
    injector = FailureInjector(rate, 0.0, seed)
    expected_dlq = {oid for oid in prices if all(_fails(injector, oid, a) for a in range(retries + 1))}
    expected_retries = sum(_failed_attempts(injector, oid, retries) for oid in prices)
    assert expected_dlq, "the seed should send some orders to the DLQ"

    wait_for(
        lambda: snapshot(pipeline).count + snapshot(pipeline).counters["dlq"] >= 400,
        120,
        "all orders settled",
    )
    letters = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, len(expected_dlq))
    snap = snapshot(pipeline)
    dead = {m.key().decode() for m in letters}
    assert dead == expected_dlq
    assert snap.count == 400 - len(expected_dlq)
    assert snap.sum == sum(p for oid, p in prices.items() if oid not in dead)
    assert snap.counters["retry_attempts"] == expected_retries

    originals = {m.key(): m for m in read_topic(pipeline.broker.bootstrap, pipeline.orders_topic, 400)}
    for letter in letters:
        headers = headers_of(letter)
        assert headers[HEADER_STAGE] == "process"
        assert headers[HEADER_ATTEMPTS] == str(retries + 1)
        assert headers[HEADER_EXC_CLASS] == "orders.core.errors.TransientError"
        assert "injected transient failure" in headers[HEADER_EXC_MESSAGE]
        assert headers[HEADER_TOPIC] == pipeline.orders_topic
        assert headers[HEADER_GROUP] == pipeline.env["CONSUMER_GROUP"]
        assert datetime.fromisoformat(headers[HEADER_FAILED_AT]).tzinfo is not None
        original = originals[letter.key()]
        assert headers[HEADER_PARTITION] == str(original.partition())
        assert headers[HEADER_OFFSET] == str(original.offset())
        assert letter.value() == original.value()  # unchanged bytes: a replay is a plain re-publish
        assert codec_for(pipeline).decode(letter.value())["orderId"] == letter.key().decode()


def _fails(injector: FailureInjector, order_id: str, attempt: int) -> bool:
    return injector._draw(order_id, attempt, "transient") < injector.transient_rate


def _failed_attempts(injector: FailureInjector, order_id: str, retries: int) -> int:
    """Retries scheduled for one order: failures before its first success, at most ``retries``."""
    for attempt in range(retries + 1):
        if not _fails(injector, order_id, attempt):
            return attempt
    return retries


def test_permanent_failures_are_not_retried(pipeline: Pipeline) -> None:
    pipeline.start_worker(PERMANENT_FAILURE_RATE="1", RETRY_BACKOFF_BASE="1")
    pipeline.start_bridge()
    produce_cli(pipeline, 20, seed=5)
    letters = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 20)
    assert len(letters) == 20
    assert {headers_of(m)[HEADER_ATTEMPTS] for m in letters} == {"1"}
    assert {headers_of(m)[HEADER_EXC_CLASS] for m in letters} == {"orders.core.errors.PermanentError"}
    wait_for(lambda: snapshot(pipeline).counters["dlq"] == 20, 30, "DLQ counted")
    assert snapshot(pipeline).counters["retry_attempts"] == 0
    assert snapshot(pipeline).count == 0


def test_same_order_twice_is_counted_once(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_bridge()
    codec = codec_for(pipeline)
    twice = codec.encode(Order("dup-1", "Laptop", 123456))
    sentinel = codec.encode(Order("after-dup", "Mouse", 1999))
    # One key, so one partition: the sentinel is handed off, and processed, after both copies.
    produce_raw(
        pipeline.broker.bootstrap,
        pipeline.orders_topic,
        [(b"k", twice), (b"k", twice), (b"k", sentinel)],
    )
    wait_for(lambda: snapshot(pipeline).count >= 2, 60, "the sentinel counted")
    snap = snapshot(pipeline)
    assert snap.counters["consumed"] == 3
    assert snap.count == 2
    assert snap.sum == Decimal("1234.56") + Decimal("19.99")


@pytest.mark.celery_brokers("redis")  # the bridge's own dead letters: no Celery broker involved
def test_bad_records_are_dead_lettered_and_good_ones_processed(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    bridge = pipeline.start_bridge()
    settings = pipeline.settings()
    codec = codec_for(pipeline)
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    unresolvable_id = registry.register_schema(
        f"other-{pipeline.orders_topic}",
        Schema('{"type":"record","name":"Order","namespace":"com.kafka.orders",'
               '"fields":[{"name":"orderId","type":"long"}]}', "AVRO"),
    )  # fmt: skip
    newer_id = registry.register_schema(
        f"{pipeline.orders_topic}-value",
        Schema('{"type":"record","name":"Order","namespace":"com.kafka.orders","fields":['
               '{"name":"orderId","type":"string"},{"name":"product","type":"string"},'
               '{"name":"price","type":"float"},{"name":"coupon","type":"string","default":""}]}', "AVRO"),
    )  # fmt: skip
    good = [codec.encode(Order(f"good-{i}", "Camera", 10000 + i)) for i in range(3)]
    records = [
        (b"garbage", b"\x13\x37 not avro at all"),
        (b"unknown-id", struct.pack(">bI", 0, 987654) + b"\x02x\x02y\x00\x00\x80?"),
        (b"unresolvable", struct.pack(">bI", 0, unresolvable_id) + b"\x02"),
        (b"nan", codec.encode(Order("nan-1", "Tablet", 100)).replace(*_price_bytes(1.0, math.nan))),
        (
            b"negative",
            codec.encode(Order("neg-1", "Tablet", 100)).replace(*_price_bytes(1.0, -5.0)),
        ),
        (b"newer", struct.pack(">bI", 0, newer_id) + b"\x0anewer\x0cRouter\x00\x00\x48\x42\x06abc"),
    ]
    interleaved = [(b"g0", good[0]), *records[:3], (b"g1", good[1]), *records[3:], (b"g2", good[2])]
    produce_raw(settings.kafka_bootstrap_servers, settings.orders_topic, interleaved)

    letters = read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic, 5)
    by_key = {m.key(): headers_of(m) for m in letters}
    assert by_key.keys() == {b"garbage", b"unknown-id", b"unresolvable", b"nan-1", b"neg-1"}
    assert by_key[b"garbage"][HEADER_STAGE] == "decode"
    assert "magic byte" in by_key[b"garbage"][HEADER_EXC_MESSAGE]
    assert "unknown schema id 987654" in by_key[b"unknown-id"][HEADER_EXC_MESSAGE]
    assert by_key[b"unresolvable"][HEADER_STAGE] == "decode"
    assert by_key[b"nan-1"][HEADER_STAGE] == "validate"
    assert "finite" in by_key[b"nan-1"][HEADER_EXC_MESSAGE]
    assert "positive" in by_key[b"neg-1"][HEADER_EXC_MESSAGE]
    assert {m.value() for m in letters} >= {records[0][1], records[1][1]}

    wait_for(lambda: snapshot(pipeline).count >= 4, 60, "good and newer-schema orders counted")
    snap = snapshot(pipeline)
    assert snap.count == 4  # three good ones and the record written with the newer schema
    assert snap.sum == Decimal("100.00") + Decimal("100.01") + Decimal("100.02") + Decimal("50.00")
    assert bridge.running()


def _price_bytes(old: float, new: float) -> tuple[bytes, bytes]:
    """Avro floats are 4 little-endian bytes: swap one price for another in an encoded record."""
    return struct.pack("<f", old), struct.pack("<f", new)


def test_backpressure_bounds_the_celery_queue(pipeline: Pipeline) -> None:
    bound = 50
    bridge = pipeline.start_bridge(MAX_QUEUE_DEPTH=str(bound), BRIDGE_BATCH_SIZE="20")
    produce_cli(pipeline, 400, seed=9)
    wait_for(lambda: "pausing" in bridge.tail(400), 60, "the bridge to pause")
    depths = []
    for _ in range(30):  # sample while the bridge keeps polling, paused
        depths.append(pipeline.celery_queue_depth())
        time.sleep(0.1)
    assert max(depths) <= bound
    assert bridge.running()

    pipeline.start_worker()
    wait_for(lambda: snapshot(pipeline).count >= 400, 120, "the queue to drain")
    assert snapshot(pipeline).count == 400
    assert "resuming" in bridge.tail(2000)


def test_sigterm_mid_burst_loses_nothing_and_counts_nothing_twice(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    bridge = pipeline.start_bridge(BRIDGE_BATCH_SIZE="50")
    produce_cli(pipeline, 3000, seed=13)
    wait_for(lambda: snapshot(pipeline).counters["consumed"] > 0, 60, "the bridge to start consuming")
    bridge.signal(signal.SIGTERM)
    assert bridge.proc is not None
    assert bridge.proc.wait(20) == 0
    assert "offsets committed" in bridge.tail(50)

    pipeline.start_bridge()
    wait_for(lambda: snapshot(pipeline).count >= 3000, 120, "every order after the restart")
    prices = produced_orders(pipeline, 3000)
    snap = snapshot(pipeline)
    assert snap.count == 3000
    assert snap.sum == sum(prices.values())


@pytest.mark.celery_brokers(
    "rabbitmq"
)  # on Redis they return after the visibility timeout (reliability suite)
def test_a_killed_workers_orders_come_back_at_once_and_count_once(pipeline: Pipeline) -> None:
    """RabbitMQ requeues a closed connection's unacknowledged messages: a SIGKILLed worker's orders,
    retries waiting for their countdown among them, go to the next worker, each counted once."""
    seed = 21
    worker = pipeline.start_worker(FAILURE_RATE="0.2", FAILURE_SEED=str(seed), RETRY_BACKOFF_BASE="1")
    pipeline.start_bridge()
    produce_cli(pipeline, 2000, seed=17)
    wait_for(lambda: snapshot(pipeline).count >= 300, 60, "the worker to be busy")
    worker.kill()
    killed_at = snapshot(pipeline).count
    pipeline.start_worker(FAILURE_RATE="0.2", FAILURE_SEED=str(seed), RETRY_BACKOFF_BASE="1")
    prices = produced_orders(pipeline, 2000)
    injector = FailureInjector(0.2, 0.0, seed)
    dead = {oid for oid in prices if all(_fails(injector, oid, a) for a in range(4))}
    wait_for(
        lambda: snapshot(pipeline).count >= 2000 - len(dead), 120, "every order that does not fail for good"
    )
    snap = snapshot(pipeline)
    assert killed_at < 2000
    assert snap.count == 2000 - len(dead)  # none lost, none counted twice
    assert snap.sum == sum(p for oid, p in prices.items() if oid not in dead)


@pytest.mark.celery_brokers("redis")  # retries wait on RabbitMQ too: the transient-failure scenario
def test_retries_back_off_exponentially(pipeline: Pipeline) -> None:
    """Base 1 s: the retries wait 1, 2 and 4 s, so a hopeless order reaches the DLQ after >= 7 s."""
    worker = pipeline.start_worker(FAILURE_RATE="1", RETRY_BACKOFF_BASE="1")
    pipeline.start_bridge()
    produce_raw(
        pipeline.broker.bootstrap,
        pipeline.orders_topic,
        [(b"slow", codec_for(pipeline).encode(Order("slow-1", "Printer", 5000)))],
    )

    [letter] = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 1)
    headers = headers_of(letter)
    produced_ms = int(headers["__orders.errors.original.timestamp"])
    failed_ms = datetime.fromisoformat(headers[HEADER_FAILED_AT]).timestamp() * 1000
    assert failed_ms - produced_ms >= 7000
    assert headers[HEADER_ATTEMPTS] == "4"
    log = worker.tail(400)
    assert [f"Retry in {s}s" in log for s in (1, 2, 4)] == [True, True, True]


def test_order_is_requeued_when_the_dlq_is_unreachable(pipeline: Pipeline) -> None:
    from orders.stack.supervisor import free_port

    pipeline.start_bridge()
    dead_kafka = f"127.0.0.1:{free_port()}"
    broken = pipeline.start_worker(
        PERMANENT_FAILURE_RATE="1", KAFKA_BOOTSTRAP_SERVERS=dead_kafka, DLQ_DELIVERY_TIMEOUT="1"
    )
    produce_raw(
        pipeline.broker.bootstrap,
        pipeline.orders_topic,
        [(b"p", codec_for(pipeline).encode(Order("poison-1", "Mouse", 700)))],
    )
    wait_for(
        lambda: broken.tail(400).count("not dead-lettered") >= 2, 60, "the order to be requeued and retried"
    )
    assert snapshot(pipeline).counters["dlq"] == 0
    broken.stop()

    pipeline.start_worker(PERMANENT_FAILURE_RATE="1")
    letters = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 1)
    assert [m.key() for m in letters] == [b"poison-1"]
    wait_for(lambda: snapshot(pipeline).counters["dlq"] >= 1, 30, "the DLQ counted")
