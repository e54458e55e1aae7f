"""The pipeline end to end with the aggregate in 3 logical shards (AGGREGATE_SHARDS=3) on one redis-server:
a real bridge, real workers on both pools, injected retries and dead letters; the end state read back
independently (orders topic, DLQ, each order's marker in its shard): lost 0, counted twice 0, exact."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from orders.core.aggregate import Aggregate
from orders.core.shards import LAYOUT_KEY, Layout, read_layout
from orders.stack.processes import worker_argv
from tests.conftest import Pipeline
from tests.reliability.accounting import decode_orders, predicted_dead_letters, read_to_end, settle
from worker.faults import FailureInjector

pytestmark = [pytest.mark.kafka, pytest.mark.kafka_lanes("apache")]
ORDERS = 600
SEED = 2204
FAULTS = {"FAILURE_RATE": "0.15", "PERMANENT_FAILURE_RATE": "0.02", "FAILURE_SEED": str(SEED),
          "MAX_RETRIES": "2", "RETRY_BACKOFF_BASE": "1", "AGGREGATE_SHARDS": "3"}  # fmt: skip


def produce(pipeline: Pipeline, count: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orders.cli", "produce", "--count", str(count), "--rate", "0",
         "--seed", str(SEED), "--quiet"],
        env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and f"delivered {count}, failed 0" in result.stdout, result.stderr


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_three_shards_count_every_order_once_on_both_pools(pipeline: Pipeline, pool: str) -> None:
    client = redis.Redis.from_url(pipeline.env["REDIS_URL"])
    pipeline.start_worker(pool=pool, **FAULTS)  # a fresh aggregate: the worker lays it out for 3
    assert read_layout(client) == Layout(3)
    pipeline.start_bridge(**FAULTS)
    produce(pipeline, ORDERS)
    produced = decode_orders(
        read_to_end(pipeline.broker.bootstrap, pipeline.orders_topic),
        pipeline.env["SCHEMA_REGISTRY_URL"],
        pipeline.orders_topic,
    )
    assert len(produced) == ORDERS
    injector = FailureInjector(float(FAULTS["FAILURE_RATE"]), float(FAULTS["PERMANENT_FAILURE_RATE"]), SEED)
    expected_dlq = predicted_dead_letters(produced, injector, int(FAULTS["MAX_RETRIES"]))
    assert expected_dlq, "the seed dead-letters some orders: the claims' shards are exercised"

    figures = settle(
        pipeline.env["REDIS_URL"], produced, expected_dlq,
        lambda: read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic), timeout=180,
    )  # fmt: skip
    figures.assert_exact()
    assert figures.succeeded == ORDERS - len(expected_dlq)

    layout = Layout(3)
    per_shard = [int(client.hget(keys.totals, "count") or 0) for keys in layout.all()]
    expected = [
        sum(1 for i in produced if layout.shard_of(i) == k and i not in expected_dlq) for k in range(3)
    ]
    assert per_shard == expected  # each order counted in its own shard
    snapshot = Aggregate(client).snapshot()
    assert snapshot.last100_size == 100
    assert snapshot.counters["consumed"] == ORDERS and snapshot.counters["dlq"] == len(expected_dlq)
    assert sum(p.count for p in snapshot.products.values()) == snapshot.count


def test_a_worker_configured_for_another_layout_refuses_to_start(pipeline: Pipeline) -> None:
    client = redis.Redis.from_url(pipeline.env["REDIS_URL"])
    client.set(LAYOUT_KEY, 3)
    result = subprocess.run(
        worker_argv("refused", "--without-mingle"),
        env={**os.environ, **pipeline.env, "AGGREGATE_SHARDS": "2"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "the aggregate has 3 shard(s) but AGGREGATE_SHARDS=2" in result.stderr
    assert "orders reshard 2" in result.stderr
