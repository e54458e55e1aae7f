"""The real pipeline (bridge + `celery -A worker worker`, solo and prefork) with the aggregate on the
session's Redis Cluster (REDIS_URL=redis+cluster://...), Celery's broker on the test's own Redis, as the
README's HA layout has it. One shard (today's layout): every aggregate key in slot 105 ({orders}).

End state checked independently (tests/reliability/accounting.py): the orders topic read back, the DLQ,
every order's dedupe marker on the Cluster; lost 0, counted twice 0, the average exact. Retries and dead
letters are injected (seeded), so the claim path and the retry counters run on the Cluster too.
"""

from __future__ import annotations

import sys

import pytest

from orders.core.aggregate import PREFIX, TOTALS_KEY
from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.accounting import decode_orders, predicted_dead_letters, read_to_end, settle
from worker.faults import FailureInjector

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]
ORDERS = 600
SEED = 2206
FAULTS = {"FAILURE_RATE": "0.1", "PERMANENT_FAILURE_RATE": "0.01", "FAILURE_SEED": str(SEED),
          "MAX_RETRIES": "3", "RETRY_BACKOFF_BASE": "1"}  # fmt: skip


# Prefork on a Cluster runs in the long profile (and scenario 22f's long rows): CI's share for issue 22 is
# 4 minutes, and test_pipeline_shards.py runs the sharded writer on prefork in CI already.
@pytest.mark.parametrize("pool", ["solo", pytest.param("prefork", marks=pytest.mark.long)])
def test_every_order_counted_once_with_the_aggregate_on_a_redis_cluster(
    pipeline: Pipeline, redis_cluster: RedisClusterSet, pool: str
) -> None:
    url = redis_cluster.url()
    broker = pipeline.env["REDIS_URL"]  # the test's own Redis: kombu has no Cluster transport
    pipeline.env.update(REDIS_URL=url, CELERY_BROKER_URL=broker, **FAULTS)
    for _ in range(2 if pool == "solo" else 1):
        pipeline.start_worker(pool=pool)  # ready when /healthz is: the Cluster probe says ok
    pipeline.start_bridge()
    producer = pipeline.start(
        "producer",
        [sys.executable, "-m", "orders.cli", "produce", "--count", str(ORDERS), "--rate", "300",
         "--seed", "22", "--quiet"],
        lambda _s: True,
    )  # fmt: skip
    wait_for(lambda: not producer.running(), 120, "the producer to finish")
    assert f"delivered {ORDERS}, failed 0" in producer.tail(5), producer.tail()
    prices = decode_orders(
        read_to_end(pipeline.broker.bootstrap, pipeline.orders_topic),
        pipeline.env["SCHEMA_REGISTRY_URL"],
        pipeline.orders_topic,
    )
    assert len(prices) == ORDERS
    injector = FailureInjector(0.1, 0.01, SEED)
    expected_dlq = predicted_dead_letters(prices, injector, 3)
    assert expected_dlq, "the seed should dead-letter some orders"

    figures = settle(
        url, prices, expected_dlq, lambda: read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic), 180
    )
    print(f"cluster pipeline, {pool} pool: {figures}")  # the figures for the closing note (pytest -s)
    figures.assert_exact()  # lost 0, counted twice 0, DLQ as predicted, the average exact
    assert figures.succeeded == ORDERS - len(expected_dlq) and figures.dlq == len(expected_dlq)

    # One shard: every key of the aggregate on the primary of slot 105, none anywhere else.
    owner = redis_cluster.node_for_key(TOTALS_KEY)
    assert owner.client().exists(TOTALS_KEY) == 1
    others = [node for node in redis_cluster.primaries() if node is not owner]
    assert all(not list(node.client().scan_iter(match=f"{PREFIX}*", count=1000)) for node in others)
