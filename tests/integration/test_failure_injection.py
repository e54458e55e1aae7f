"""Failure injection is a demo feature: a worker started without it ignores every rate and the override.

Tansu lane only: what is tested is the worker's choice, which no broker changes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from orders.core.aggregate import Aggregate
from orders.core.control import set_failure_rate
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]


def produce(pipeline: Pipeline, count: int, seed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orders.cli", "produce", "--count", str(count), "--rate", "0",
         "--seed", str(seed), "--quiet"],
        env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_override_has_no_effect_on_a_worker_without_injection(pipeline: Pipeline) -> None:
    client = redis.Redis.from_url(pipeline.env["REDIS_URL"])
    aggregate = Aggregate(client)
    # Everything asks for failures: the worker's own rates and the dashboard's override in Redis.
    set_failure_rate(client, 1.0)
    rates = {"FAILURE_RATE": "1", "PERMANENT_FAILURE_RATE": "1", "MAX_RETRIES": "0"}
    worker = pipeline.start_worker(FAILURE_INJECTION="false", **rates)
    pipeline.start_bridge()
    assert "failure injection off" in worker.tail(200)

    produce(pipeline, 40, seed=21)
    wait_for(lambda: aggregate.snapshot().count >= 40, 60, "40 orders counted")
    snap = aggregate.snapshot()
    assert (snap.count, snap.counters["retry_attempts"], snap.counters["dlq"]) == (40, 0, 0)

    # The same override does reach a worker started with injection on: every order now fails for good.
    worker.stop()
    pipeline.start_worker(FAILURE_INJECTION="true", **{**rates, "PERMANENT_FAILURE_RATE": "0"})
    produce(pipeline, 10, seed=22)
    wait_for(lambda: aggregate.snapshot().counters["dlq"] >= 10, 60, "10 orders dead-lettered")
    assert aggregate.snapshot().count == 40
