"""Scenario 22e: a silent partition from the primary that never heals, while Sentinel promotes a replica.

The primary's node is cut off from everyone (its bridge port down: packets vanish, nothing is refused or
reset), its Sentinel with it. The pipeline runs on one shared primary (aggregate and Celery's queue).
Every worker and bridge must notice within its bounds (orders/core/redis_client.py: a reply within
3 s; kombu drops a blocking fetch 2 s overdue), ask the other Sentinels, and go on with the promoted
replica, not wait for TCP's own timeout (~15 min). Meanwhile their /healthz says 503 and what they wait
for. The bound asserted, from the partition until each process is counting and healthy again:
FOLLOW_BOUND (Sentinel's promotion, ~4 s with down-after 1 s, plus one timed-out command, a reconnect
and Celery's first reconnect interval).
"""

from __future__ import annotations

import time

import pytest

from orders.core.aggregate import Aggregate
from orders.stack.redis_sentinel import SentinelSet
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.netns import TestNetwork
from tests.reliability.accounting import count_or_zero
from tests.reliability.ha import MIN_REPLICAS, VISIBILITY, HealthWatch
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]
FOLLOW_BOUND = 20.0


@pytest.mark.parametrize("pool", ["solo", pytest.param("prefork", marks=pytest.mark.long)])
def test_silent_partition_from_the_primary_that_never_heals(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork, record_ha_timing,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    ha = redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)
    s = Scenario("22e", pipeline, profile, reliability_report, seed=2205, REDIS_URL=ha.url(0),
                 CELERY_BROKER_URL=ha.url(1), VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    worker, bridge = s.worker(pool=pool), s.bridge()
    n = profile.ha_orders
    producer = s.produce(n, rate=profile.ha_rate)
    wait_for(lambda: count_or_zero(s.aggregate) > n // 4, 60, "orders flowing")

    with HealthWatch({"worker": worker, "bridge": bridge}) as health:
        old = ha.primary()
        isolated_at = time.monotonic()
        test_network.isolate(test_network.node_at(old.host.address))
        new = ha.wait_for_failover(old, timeout=30)
        promoted = time.monotonic() - isolated_at
        on_new = Aggregate(new.client())
        at_promotion = on_new.snapshot().count
        wait_for(lambda: count_or_zero(on_new) > at_promotion, FOLLOW_BOUND, "counting on the new primary")
        counting = time.monotonic() - isolated_at
        since = health.since_start(isolated_at)
        wait_for(lambda: all(health.healthy_again_at(p, since + 1) for p in ("worker", "bridge")),
                 FOLLOW_BOUND, "both healthy again")  # fmt: skip
    healthy = {p: health.healthy_again_at(p, since + 1) - since for p in ("worker", "bridge")}  # type: ignore[operator]
    record_ha_timing("22e: counting on the new primary after a silent partition", counting)
    for process, seconds in healthy.items():
        record_ha_timing(f"22e: {process} /healthz 200 again after the partition", seconds)
    said = {p: health.unhealthy(p) for p in ("worker", "bridge")}
    assert all(said.values()), f"/healthz never said 503 while the primary was away: {said}"
    assert all("waiting for" in str(body) for p in said for _, body in said[p][:1]), said
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert worker.running() and bridge.running()
    s.finish(
        figures,
        f"{pool} pool; primary's node isolated for good; promoted {promoted:.1f}s after; counting on the new "
        f"primary {counting:.1f}s after; /healthz 200 again: worker {healthy['worker']:.1f}s, bridge "
        f"{healthy['bridge']:.1f}s (503 meanwhile, naming what it waited for)",
        recovery=max(counting, *healthy.values()),
    )
