"""Scenario 3: Apache Kafka stopped and restarted (same data directory and port) during a run.

The bridge, the producer (`orders produce`) and both kinds of DLQ publish (the bridge's for bad
records, the workers' for failed orders) must recover on their own. Tansu keeps no data across
restarts, so this runs on the Apache Kafka lane only.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
from confluent_kafka import Producer

from bridge.dead_letter import HEADER_STAGE
from bridge.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of
from tests.reliability.accounting import read_to_end
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import Collector
from tests.reliability.scenario import Scenario

# Only with --long for now: in one CI run the bridge, whose group session timed out during the outage,
# did not rejoin its group after the restart (docs/reliability.md); it stays out of `make test` until
# that is understood.
pytestmark = [pytest.mark.kafka, pytest.mark.lanes("apache"), pytest.mark.long]


def produce_garbage(
    bootstrap: str, topic: str, stop: threading.Event, sent: list[bytes], failures: list
) -> None:  # type: ignore[type-arg]
    """A bad record every 0.2 s until ``stop``, through the outage (librdkafka retries for 5 min)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    while not stop.is_set():
        key = f"garbage-{len(sent)}".encode()
        producer.produce(topic, b"\x01 not avro", key, on_delivery=lambda e, _m: e and failures.append(e))
        sent.append(key)
        producer.poll(0)
        stop.wait(0.2)
    if producer.flush(120):
        failures.append("bad records not delivered within 120 s")


def test_kafka_stopped_and_restarted_mid_run(
    pipeline: Pipeline, profile: Profile, reliability_report: Collector
) -> None:
    kafka = pipeline.broker.kafka
    assert kafka is not None
    n, rate = profile.kafka_orders, profile.kafka_rate
    # A short DLQ timeout: a worker's dead letter refused during the outage is requeued, not held 30 s;
    # 2% permanent failures: the worker dead-letters orders while Kafka is down.
    s = Scenario("3", pipeline, profile, reliability_report, seed=303, DLQ_DELIVERY_TIMEOUT="2",
                 PERMANENT_FAILURE_RATE="0.02")  # fmt: skip
    bridge = s.bridge()
    aggregate = s.aggregate
    queue = redis.Redis.from_url(s.redis_url)
    # Two thirds at once, handed off before any worker runs: the worker starts once Kafka is down and
    # works through them (dead-lettering some) during the outage, however fast it is. The rest paced,
    # so `orders produce` is sending throughout the outage.
    backlog = 2 * n // 3
    first = s.produce(backlog)
    wait_for(lambda: not first.running() and consumed(aggregate) >= backlog, 120, "the backlog handed off")
    assert f"delivered {backlog}, failed 0" in first.tail(5), first.tail()
    producer = s.produce(n - backlog, rate=rate, seed=304)
    stop, garbage, failures = threading.Event(), [], []
    thread = threading.Thread(
        target=produce_garbage, args=(s.bootstrap, pipeline.orders_topic, stop, garbage, failures)
    )
    thread.start()
    try:
        waiting = queue.llen(pipeline.env["CELERY_QUEUE"])
        assert waiting >= backlog  # all of it, for the worker to settle while Kafka is down
        port = kafka.port
        stopped_at = time.monotonic()
        kafka.stop()
        worker = s.worker()
        running = kafka.start()
        outage = time.monotonic() - stopped_at
        assert (running.port, running.url) == (port, pipeline.broker.bootstrap)  # same port, same data
        s.recovery.measure(
            "broker restart", stopped_at, lambda: consumed(aggregate), 120, s.drained(producer)
        )
        produced = s.produced(producer, n - backlog, foreign=b"garbage-", total=n)
    finally:
        stop.set()
        thread.join(150)
    assert not failures, failures
    figures = s.settle(produced)

    bad = {m.key(): headers_of(m)[HEADER_STAGE] for m in read_to_end(s.bootstrap, pipeline.dlq_topic)}
    assert {key: bad.get(key) for key in garbage} == dict.fromkeys(garbage, "decode")
    assert bridge.running() and worker.running()
    requeued = worker.tail(1_000_000).count("not dead-lettered")
    retried = bridge.tail(1_000_000).count("failed (")
    s.finish(
        figures,
        f"broker down {outage:.0f}s (stop + start) with {waiting} orders queued for the worker; "
        f"{len(garbage)} bad records dead-lettered by the bridge; worker dead letters refused by Kafka and "
        f"requeued: {requeued}; bridge retries logged: {retried}",
    )
    assert requeued > 0, "no dead letter was published while Kafka was down: the scenario missed its point"
