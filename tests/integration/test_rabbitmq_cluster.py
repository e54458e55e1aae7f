"""Celery on a three-node RabbitMQ cluster with a quorum queue: retries, failover, the delivery limit.

The cluster is the session's (tests/harness/rabbit_fixtures.py), on the test network; the workers and
the bridge run on the host and reach the nodes through the bridge address.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import datetime

import pytest

from orders.core.dead_letter import HEADER_ATTEMPTS, HEADER_EXC_MESSAGE, HEADER_FAILED_AT, HEADER_TIMESTAMP
from orders.core.queue_depth import depth_reader
from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of, read_topic
from tests.integration.test_pipeline import produce_cli, produced_orders, snapshot
from worker.faults import FailureInjector

pipeline_lane = [pytest.mark.kafka, pytest.mark.kafka_lanes("apache")]
COUNTDOWNS = (2, 4, 8)  # RETRY_BACKOFF_BASE=2, MAX_RETRIES=3: Celery's autoretry backoff


def queue_counts(cluster: RabbitCluster) -> dict[str, tuple[int, int]]:
    """Every queue's (ready, unacknowledged) messages, as RabbitMQ counts them."""
    rows = json.loads(
        cluster.nodes[0].ctl("list_queues", "name", "messages_ready", "messages_unacknowledged",
                             "--formatter", "json")  # fmt: skip
    )
    return {row["name"]: (row["messages_ready"], row["messages_unacknowledged"]) for row in rows}


def _always_fails(injector: FailureInjector, order_id: str) -> bool:
    try:
        injector.check(order_id, 0)
    except Exception:
        return all(_fails(injector, order_id, attempt) for attempt in range(1, 4))
    return False


def _fails(injector: FailureInjector, order_id: str, attempt: int) -> bool:
    try:
        injector.check(order_id, attempt)
    except Exception:
        return True
    return False


@pytest.mark.parametrize("pool", ["solo", "prefork"])
@pipeline_lane[0]
@pipeline_lane[1]
def test_retries_wait_their_countdown_in_rabbitmq_not_in_the_worker(
    pipeline: Pipeline, rabbitmq_cluster: RabbitCluster, pool: str
) -> None:
    """Celery's native delayed delivery on RabbitMQ 3.10.8: a retry's countdown is spent in RabbitMQ's
    delay queues (replicated quorum queues), so a worker holds none while they wait, its prefetch slots
    stay free for new orders, and each retry arrives after its countdown (2, 4, 8 s)."""
    rate, seed, count = 0.5, 11, 60
    pipeline.use_rabbitmq_cluster(rabbitmq_cluster)
    worker = pipeline.start_worker(pool=pool, FAILURE_RATE=str(rate), FAILURE_SEED=str(seed),
                                   RETRY_BACKOFF_BASE="2", MAX_RETRIES="3")  # fmt: skip
    pipeline.start_bridge()
    produce_cli(pipeline, count, seed=5)
    prices = produced_orders(pipeline, count)
    injector = FailureInjector(rate, 0.0, seed)
    dead = {order_id for order_id in prices if _always_fails(injector, order_id)}
    assert dead, "the seed should send some orders through every retry"

    # While retries wait, they sit in Celery's delay queues; the worker holds none of them.
    wait_for(lambda: snapshot(pipeline).counters["retry_attempts"] > 5, 60, "retries scheduled")
    counts = queue_counts(rabbitmq_cluster)
    delayed = sum(ready for name, (ready, _) in counts.items() if name.startswith("celery_delayed_"))
    held = counts[pipeline.env["CELERY_QUEUE"]][1]
    assert delayed > 0, counts
    settled = snapshot(pipeline).count + snapshot(pipeline).counters["dlq"]
    wait_for(lambda: snapshot(pipeline).count + snapshot(pipeline).counters["dlq"] >= count, 90, "all settled")

    letters = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, len(dead))
    assert {m.key().decode() for m in letters} == dead
    spans = []
    for letter in letters:
        headers = headers_of(letter)
        assert headers[HEADER_ATTEMPTS] == "4", headers[HEADER_EXC_MESSAGE]
        failed_at = datetime.fromisoformat(headers[HEADER_FAILED_AT]).timestamp()
        spans.append(failed_at - int(headers[HEADER_TIMESTAMP]) / 1000)  # from the order's own timestamp
    # Every retry waited at least its countdown: no early run (the three add up to 14 s).
    assert min(spans) >= sum(COUNTDOWNS) - 0.5, spans
    assert "Direct exchanges are not supported" not in worker.tail(2000)
    print(f"{pool}: {len(dead)} orders through 3 retries took {min(spans):.1f}-{max(spans):.1f}s "
          f"(countdowns add up to {sum(COUNTDOWNS)}s); {delayed} messages waiting in the delay queues, "
          f"{held} held by the worker when {settled} of {count} had settled")  # fmt: skip


def test_the_depth_reader_fails_over_to_the_next_node(rabbitmq_cluster: RabbitCluster) -> None:
    """With the first node of CELERY_BROKER_URL down, the queue's depth is read through the next one
    (it used to try only the first node, so the bridge lost its backpressure and /metrics its depth)."""
    first = rabbitmq_cluster.nodes[0]
    with closing(depth_reader(rabbitmq_cluster.url, "no-such-queue", timeout=2)) as reader:
        assert reader.depth() == 0
    first.kill()
    started = time.monotonic()
    with closing(depth_reader(rabbitmq_cluster.url, "no-such-queue", timeout=2)) as reader:
        assert reader.depth() == 0
    print(f"depth read through the second node {time.monotonic() - started:.2f}s after the first refused")
