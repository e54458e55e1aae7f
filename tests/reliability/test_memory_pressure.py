"""Scenario 12: the aggregate's Redis reaches its maxmemory (noeviction) under load, then gets room.

Under noeviction a full Redis refuses writes with OOM instead of evicting dedupe markers (which
would count orders twice). Orders must be handed back, not dead-lettered, and all counted once the
memory is there again. (tests/integration/test_aggregate.py measures what a remembered order costs.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from orders.stack.services import Running
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.probes import handed_back
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]
ORDERS = 3000
ROOM = 500_000  # bytes above what an idle aggregate uses: room for part of the orders


def test_a_full_redis_hands_orders_back_and_loses_none(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    own_redis: Callable[..., Running],
) -> None:  # fmt: skip
    server = own_redis("--maxmemory-policy", "noeviction")
    client = redis.Redis(port=server.port)
    # Only the aggregate's Redis is full: the Celery broker stays on the session's (a full broker stops
    # hand-offs and fetches alike, which the bridge and the transport wait out).
    env = {"REDIS_URL": f"{server.url}/0", "CELERY_BROKER_URL": pipeline.env["REDIS_URL"],
           "FAILURE_RATE": "0", "PERMANENT_FAILURE_RATE": "0"}  # fmt: skip
    s = Scenario("12", pipeline, profile, reliability_report, seed=1212, **env)
    worker = s.worker(pool=pool)
    s.bridge()
    s.aggregate.snapshot()
    start = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", start + ROOM)
    producer = s.produce(ORDERS, rate=0)
    wait_for(lambda: handed_back(worker.tail(2000)) > 0, 120, "the worker to meet the memory limit")
    full_at = time.monotonic()
    stalled = s.aggregate.snapshot().count
    assert 0 < stalled < ORDERS
    time.sleep(3)
    client.config_set("maxmemory", 0)  # memory freed
    produced = s.produced(producer, ORDERS)
    s.recovery.measure("memory freed", full_at, lambda: s.aggregate.snapshot().count, 120,
                       lambda: s.aggregate.snapshot().count >= ORDERS)  # fmt: skip
    figures = s.settle(produced)
    s.finish(figures, f"{pool} pool; maxmemory reached at {stalled:,} orders, all counted once it had room")
