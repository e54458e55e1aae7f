"""The registry's schemas live apart from the aggregate, so starting the figures afresh never breaks
decoding; `orders reset` clears the aggregate and its counters, and only those, after a confirmation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.control import CONTROL_KEY, get_failure_rate, set_failure_rate
from orders.core.order import Order
from orders.core.settings import Settings
from orders.stack.stack import Stack, StackOptions, new_stack, start_services
from worker.aggregate import AggregateWriter

FREE_PORTS = StackOptions(kafka_port=0, redis_port=0, registry_port=0)


@pytest.fixture
def stack() -> Iterator[Stack]:
    """`orders up`'s services (Tansu, redis-server, the registry) as it lays them out."""
    running = new_stack(Settings.from_env({}, env_file=None), FREE_PORTS)
    try:
        start_services(running)
        yield running
    finally:
        running.stop()


def orders_cli(stack: Stack, *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    return subprocess.run([sys.executable, "-m", "orders.cli", *args], input=answer, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_reset_clears_the_aggregate_only_and_a_flushdb_keeps_the_schemas(stack: Stack) -> None:
    settings = Settings.from_env(stack.env, env_file=None)
    registry = SchemaRegistryClient(
        {"url": settings.schema_registry_url, "basic.auth.user.info": stack.secrets.registry_auth}
    )
    framed = OrderCodec(registry, settings.orders_topic).encode(Order("r-1", "Camera", 12_34))
    client = redis.Redis.from_url(settings.redis_url)
    writer = AggregateWriter(client, 3600)
    for n in range(5):
        writer.record_order(f"r-{n}", "Camera", 10_00 + n)
    writer.claim_dead_letter("r-dead", "PermanentError", "injected")  # a {orders}:dead:* claim
    Aggregate(client).count_events({"consumed": 5, "dlq": 1})
    set_failure_rate(client, 0.25)
    client.rpush(settings.celery_queue, "a queued task")  # the Celery queue, in the same database here

    declined = orders_cli(stack, "reset", answer="n\n")
    assert declined.returncode == 1 and "5 orders counted" in declined.stdout, declined
    assert Aggregate(client).snapshot().count == 5

    done = orders_cli(stack, "reset", answer="y\n")
    assert done.returncode == 0, done
    assert not [k for k in client.scan_iter(match="{orders}:*") if k.decode() != CONTROL_KEY]
    snap = Aggregate(client).snapshot()
    assert (snap.count, snap.average, sum(snap.counters.values())) == (0, None, 0)
    assert get_failure_rate(client) == 0.25 and client.llen(settings.celery_queue) == 1
    assert orders_cli(stack, "reset", "--yes").stdout.startswith("cleared the aggregate: 0 keys")

    # What an operator would do without `orders reset`: the registry's schemas are elsewhere.
    client.flushdb()
    fresh = SchemaRegistryClient(
        {"url": settings.schema_registry_url, "basic.auth.user.info": stack.secrets.registry_auth}
    )
    assert OrderCodec(fresh, settings.orders_topic).decode(framed)["orderId"] == "r-1"


@pytest.mark.parametrize("where", ["the aggregate's database", "a database holding the aggregate"])
def test_the_registry_refuses_to_keep_schemas_with_the_aggregate(stack: Stack, where: str) -> None:
    aggregate_url = stack.env["REDIS_URL"]
    state_url = aggregate_url
    if where != "the aggregate's database":
        state_url = aggregate_url.rsplit("/", 1)[0] + "/5"
        AggregateWriter(redis.Redis.from_url(state_url), 3600).record_order("x-1", "Camera", 1_00)
    env = {**os.environ, "REDIS_URL": aggregate_url, "REGISTRY_REDIS_URL": state_url}
    refused = subprocess.run([sys.executable, "-m", "orders.cli", "registry", "--port", "0"], env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert refused.returncode == 1, refused
    assert "REGISTRY_REDIS_URL" in refused.stderr
