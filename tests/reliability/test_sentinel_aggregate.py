"""Scenario 22a: the aggregate's Sentinel-managed primary SIGKILLed mid-stream after its replicas fell behind.

Celery's broker is a separate Redis (the session's), so a task's acknowledgement and its aggregate write
live on different primaries: only the aggregate's WAIT (REDIS_WAIT_REPLICAS, 1 by default here) keeps a
task from being acknowledged on a write no replica has. The primary is cut off from its replicas
(packets dropped) for 3 s while it takes writes, then SIGKILLed, and Sentinel promotes a replica, as
the issue's reproduction did (895 of 3,000 orders lost there). Frozen replicas (SIGSTOP) would lag
less than it seems: tests/reliability/ha.py says why.
"""

from __future__ import annotations

import pytest

from orders.stack.redis_sentinel import SentinelSet
from tests.conftest import Pipeline
from tests.harness.netns import TestNetwork
from tests.reliability.ha import LAG_SECONDS, MIN_REPLICAS, VISIBILITY, fail_over_mid_run, sentinel_failover
from tests.reliability.probes import handed_back
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]


@pytest.mark.parametrize("pool", ["solo", pytest.param("prefork", marks=pytest.mark.long)])
def test_aggregate_primary_sigkilled_after_its_replicas_fell_behind(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork, record_ha_timing,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    ha = redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)
    s = Scenario("22a", pipeline, profile, reliability_report, seed=2201, REDIS_URL=ha.url(),
                 CELERY_BROKER_URL=pipeline.env["REDIS_URL"], VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    workers = [s.worker(pool=pool) for _ in range(2 if pool == "solo" else 1)]
    s.bridge()
    n = profile.ha_orders
    producer = s.produce(n, rate=profile.ha_rate)
    promoted, figures = fail_over_mid_run(s, producer, n, sentinel_failover(ha, test_network))
    handed = sum(handed_back(w.tail(1_000_000)) for w in workers)
    s.finish(
        figures,
        f"{pool} pool; primary cut from its replicas for {LAG_SECONDS:.0f}s, then SIGKILLed; a replica "
        f"promoted {promoted:.1f}s after the cut; {handed} orders handed back (a WAIT short)",
    )
