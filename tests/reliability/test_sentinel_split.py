"""Scenario 22c: the primary is cut off from its replicas but not from its clients, and never rejoins them.

The Sentinels beside the replicas promote one; the old primary goes on taking the pipeline's writes
(the aggregate's and Celery's queue: one shared primary here) until ``min-replicas-max-lag`` (10 s,
as shipped) passes without a replica, then refuses them (NOREPLICAS), and the workers and the bridge
find the new primary through the Sentinels (the one beside the old primary, still reachable and still
naming it, is outvoted). Whatever the old primary took in between is gone with it. That is fine as long
as nothing acknowledged depends on it: a task acknowledged there was acknowledged there too (the
shared primary), so the new one redelivers it, and the bridge's batches waited for a replica before
their offsets were stored. Asserted exactly: no order missing, none counted twice.
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
from tests.reliability.ha import MIN_REPLICAS, VISIBILITY, cut_from_replicas
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]


@pytest.mark.parametrize("pool", ["prefork", pytest.param("solo", marks=pytest.mark.long)])
def test_primary_cut_off_from_its_replicas_loses_nothing_acknowledged(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork,
) -> None:  # fmt: skip
    ha = redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)
    s = Scenario("22c", pipeline, profile, reliability_report, seed=2203, REDIS_URL=ha.url(0),
                 CELERY_BROKER_URL=ha.url(1), VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    workers = [s.worker(pool=pool)]
    bridge = s.bridge()
    n = profile.ha_orders
    producer = s.produce(n, rate=profile.ha_rate)
    aggregate = s.aggregate
    wait_for(lambda: count_or_zero(aggregate) > n // 4, 60, "orders flowing")

    cut_at = time.monotonic()
    old = cut_from_replicas(ha, test_network)
    new = ha.wait_for_failover(old, timeout=30)
    promoted = time.monotonic() - cut_at
    on_new = Aggregate(new.client())  # the test's own client may still read the old primary
    at_promotion = on_new.snapshot().count
    wait_for(lambda: count_or_zero(on_new) > at_promotion, 60, "counting on the new primary")
    moved = time.monotonic() - cut_at
    on_old = Aggregate(old.client()).snapshot().count  # it refuses writes by now; it is still up
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert bridge.running() and all(w.running() for w in workers)
    assert on_old > at_promotion, "the old primary took no writes after the cut: nothing was tested"
    s.finish(
        figures,
        f"{pool} pool; shared primary cut from its replicas, never healed; a replica promoted "
        f"{promoted:.1f}s after the cut; the old primary counted {on_old - at_promotion} orders the new "
        f"one never saw (all redelivered); counting on the new one {moved:.1f}s after the cut",
        recovery=moved,
    )
