"""Scenario 22f: a primary of the sharded aggregate on Redis Cluster SIGKILLed mid-stream after its replica
fell behind.

Three shards (AGGREGATE_SHARDS=3) whose tags sit on the Cluster's three primaries; Celery's broker is the
session's own Redis (kombu has no Cluster transport), so a task's acknowledgement and its aggregate write
live on different servers and only the aggregate's WAIT (REDIS_WAIT_REPLICAS, 1 by default on a Cluster)
keeps a task from being acknowledged on a write no replica has. The primary owning shard 1 (not the home
shard: the bridge's counters stay up) is cut from its replica for 3 s while it takes writes, then
SIGKILLed, and the Cluster promotes the replica, which lacks those writes.

The "before" run (not in CI): ``ORDERS_22F_WAIT_REPLICAS=0 pytest tests/reliability/test_cluster_aggregate.py
-k solo`` runs the same scenario without the WAIT; the orders it loses are in the failure's figures.
"""

from __future__ import annotations

import os

import pytest

from orders.core.shards import Layout
from orders.stack.redis_cluster import RedisClusterSet
from tests.conftest import Pipeline
from tests.harness.netns import TestNetwork
from tests.reliability.ha import LAG_SECONDS, MIN_REPLICAS, VISIBILITY, cluster_failover, fail_over_mid_run
from tests.reliability.probes import handed_back
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]
SHARDS = 3
# Only for the "before" run by hand (module docstring); unset, the worker's default applies.
BEFORE = os.environ.get("ORDERS_22F_WAIT_REPLICAS")
WAIT_OVERRIDE = {} if BEFORE is None else {"REDIS_WAIT_REPLICAS": BEFORE}


def shard_owners(cluster: RedisClusterSet, layout: Layout) -> list[str]:
    """The primary serving each shard's keys, shard 0 first."""
    return [str(cluster.node_for_key(shard.totals)) for shard in layout.all()]


@pytest.mark.parametrize("pool", ["solo", pytest.param("prefork", marks=pytest.mark.long)])
def test_sharded_aggregate_primary_sigkilled_after_its_replica_fell_behind(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    redis_cluster: RedisClusterSet, test_network: TestNetwork, record_ha_timing,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    cluster = redis_cluster
    layout = Layout(SHARDS)
    owners = shard_owners(cluster, layout)
    assert len(set(owners)) == SHARDS, f"the shards' tags should land on {SHARDS} primaries: {owners}"
    cluster.set_min_replicas(*MIN_REPLICAS)
    s = Scenario("22f", pipeline, profile, reliability_report, seed=2206, REDIS_URL=cluster.url(),
                 CELERY_BROKER_URL=pipeline.env["REDIS_URL"], VISIBILITY_TIMEOUT=VISIBILITY,
                 AGGREGATE_SHARDS=str(SHARDS), **WAIT_OVERRIDE)  # fmt: skip
    workers = [s.worker(pool=pool) for _ in range(2 if pool == "solo" else 1)]
    s.bridge()
    n = profile.ha_orders
    producer = s.produce(n, rate=profile.ha_rate)
    victim = layout.keys(1).totals
    promoted, figures = fail_over_mid_run(s, producer, n, cluster_failover(cluster, test_network, victim))
    record_ha_timing("22f cluster promotion after the cut", promoted)
    handed = sum(handed_back(w.tail(1_000_000)) for w in workers)
    s.finish(
        figures,
        f"{pool} pool; 3 shards on 3 primaries; shard 1's primary cut from its replica for "
        f"{LAG_SECONDS:.0f}s, then SIGKILLed; its replica promoted {promoted:.1f}s after the cut; "
        f"{handed} orders handed back (a WAIT short)",
    )
