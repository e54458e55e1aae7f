"""Scenario 11: the aggregate's Redis fails over mid-run and answers READONLY (then LOADING) for a while.

A second redis-server replicates the aggregate's; writes are paused, the replica is promoted and the
old primary made its replica (as Sentinel would), so the workers' Redis answers READONLY; later it is
promoted back. None of that is an order's fault: nothing may be dead-lettered for it, nothing lost.
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
ORDERS = 1500
READONLY_SECONDS = 8.0


def synced(replica: redis.Redis, primary: redis.Redis) -> bool:
    info = replica.info("replication")
    return (
        info.get("master_link_status") == "up"
        and not replica.info("persistence").get("loading")
        and (info.get("master_repl_offset") == primary.info("replication").get("master_repl_offset"))
    )


def fail_over(primary: redis.Redis, standby: redis.Redis, standby_port: int, primary_port: int) -> None:
    """Promote the standby and make the primary its replica, with no write lost in between."""
    standby.replicaof("127.0.0.1", primary_port)
    wait_for(lambda: synced(standby, primary), 30, "the standby to catch up")
    primary.client_pause(5000, all=False)  # writes wait while the roles change
    wait_for(lambda: synced(standby, primary), 5, "the last writes to reach the standby")
    standby.replicaof("NO", "ONE")
    primary.replicaof("127.0.0.1", standby_port)  # from now on it answers READONLY
    primary.client_unpause()


def test_the_aggregate_redis_fails_over_and_nothing_is_dead_lettered_for_it(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    own_redis: Callable[..., Running],
) -> None:  # fmt: skip
    first, second = own_redis(), own_redis()
    s = Scenario("11", pipeline, profile, reliability_report, seed=1111, REDIS_URL=f"{first.url}/0",
                 CELERY_BROKER_URL=pipeline.env["REDIS_URL"])  # fmt: skip
    worker = s.worker(pool=pool)
    s.bridge()
    producer = s.produce(ORDERS, rate=150)
    primary, standby = redis.Redis(port=first.port), redis.Redis(port=second.port)
    wait_for(lambda: s.aggregate.snapshot().count > 100, 60, "orders flowing")
    fail_over(primary, standby, second.port, first.port)
    down_at = time.monotonic()
    time.sleep(READONLY_SECONDS)
    primary.replicaof("NO", "ONE")  # promoted back, with everything the standby had
    produced = s.produced(producer, ORDERS)
    to_count = ORDERS - len(s.expected_dlq(list(produced)))
    s.recovery.measure("promoted back", down_at, lambda: s.aggregate.snapshot().count, 60,
                       lambda: s.aggregate.snapshot().count >= to_count)  # fmt: skip
    figures = s.settle(produced)
    handed = handed_back(worker.tail(1_000_000))
    s.finish(
        figures,
        f"{pool} pool; READONLY/LOADING for {READONLY_SECONDS:.0f}s; {handed} orders handed back",
    )
