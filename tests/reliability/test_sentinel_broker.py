"""Scenario 22b: Celery's broker on a Sentinel-managed primary, SIGKILLed mid-stream after its replicas fell
behind; the aggregate on a Redis of its own.

The bridge commits Kafka offsets once its pushes are in Celery's queue. Pushes the old primary took
after its replicas fell behind die with it, offsets committed: orders gone (the issue measured 925 of
3,000 with the broker on the aggregate's primary). The hand-off's WAIT (CELERY_BROKER_WAIT_REPLICAS, 1
by default for a Sentinel broker) holds the offsets until a replica has the batch. The workers and the
bridge follow the new primary through the Sentinels (worker/sentinel_transport.py).
"""

from __future__ import annotations

import pytest

from orders.stack.redis_sentinel import SentinelSet
from tests.conftest import Pipeline
from tests.harness.netns import TestNetwork
from tests.reliability.ha import LAG_SECONDS, MIN_REPLICAS, VISIBILITY, fail_over_mid_run, sentinel_failover
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]


@pytest.mark.parametrize("pool", ["prefork", pytest.param("solo", marks=pytest.mark.long)])
def test_broker_primary_sigkilled_after_its_replicas_fell_behind(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork,
) -> None:  # fmt: skip
    ha = redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)
    s = Scenario("22b", pipeline, profile, reliability_report, seed=2202, CELERY_BROKER_URL=ha.url(),
                 VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    workers = [s.worker(pool=pool)]
    bridge = s.bridge()
    n = profile.ha_orders
    producer = s.produce(n, rate=profile.ha_rate)
    promoted, figures = fail_over_mid_run(s, producer, n, sentinel_failover(ha, test_network))
    assert bridge.running() and all(w.running() for w in workers)
    retried = bridge.tail(1_000_000).count("hand-off to Celery failed")
    s.finish(
        figures,
        f"{pool} pool; broker primary cut from its replicas for {LAG_SECONDS:.0f}s, then SIGKILLed; a "
        f"replica promoted {promoted:.1f}s after the cut; {retried} hand-offs retried",
    )
