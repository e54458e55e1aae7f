"""Three shards of the aggregate on the session's Redis Cluster, one per primary, when the primary owning
shard 1 (not the home shard) is SIGKILLed: /healthz names the shard it waits for, and the readers
(stats, the dashboard, /metrics) follow the promoted replica instead of asking the dead node for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from orders.core.aggregate import Aggregate
from orders.core.redis_client import connect
from orders.core.redis_health import RedisReachability
from orders.core.redis_url import parse_redis_url
from orders.core.shards import Layout, ensure_layout
from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.supervisor import wait_for
from worker.aggregate import AggregateWriter

Timing = Callable[[str, float], None]
SHARDS = 3
# The promotion (~2-3 s), a probe interval and its bounds: as tests/integration/test_redis_cluster_client.py
HEALTHY_AGAIN_BOUND = 15.0


def laid_out(cluster: RedisClusterSet) -> tuple[RedisCluster, Layout]:
    """A Cluster client and a fresh 3-shard aggregate with one order counted in every shard."""
    client = connect(cluster.url())
    assert isinstance(client, RedisCluster)
    layout = ensure_layout(client, SHARDS)
    owners = {cluster.node_for_key(shard.totals).address for shard in layout.all()}
    assert len(owners) == SHARDS, f"the {SHARDS} shards should sit on {SHARDS} primaries: {owners}"
    writer = AggregateWriter(client, dedupe_ttl_seconds=3600, layout=layout)
    ids = iter(f"order-{n}" for n in range(1000))
    for shard in range(SHARDS):
        order_id = next(i for i in ids if layout.shard_of(i) == shard)
        assert writer.record_order(order_id, "widget", 100 * (shard + 1))
    return client, layout


def read_count(aggregate: Aggregate) -> int | None:
    try:
        return aggregate.snapshot().count
    except (redis.RedisError, RedisClusterException):
        return None


def test_healthz_names_the_unreachable_owner_of_shard_1_until_its_replica_is_promoted(
    redis_cluster: RedisClusterSet, record_ha_timing: Timing
) -> None:
    _, layout = laid_out(redis_cluster)
    check = RedisReachability({"aggregate": parse_redis_url(redis_cluster.url())}, interval=0.0)
    assert check() == (True, {"redis": {"aggregate": "ok"}})
    owner = redis_cluster.node_for_key(layout.keys(1).totals)
    assert owner is not redis_cluster.node_for_key(layout.home.totals)

    owner.kill()
    killed = time.monotonic()
    ready, details = check()  # before the Cluster agrees it failed: only shard 1's owner is down
    state = details["redis"]["aggregate"]
    assert not ready, details
    assert f"the Cluster node owning shard(s) 1 at {owner.host.address}:{owner.port}" in state, state
    assert redis_cluster.password not in state
    wait_for(lambda: check()[0], HEALTHY_AGAIN_BOUND, "/healthz's Cluster probe to say ok again")
    again = time.monotonic() - killed
    record_ha_timing("cluster /healthz ok again after SIGKILL of shard 1's primary", again)
    redis_cluster.wait_for_promotion(owner)
    assert check()[0]


def test_the_readers_follow_a_promotion_of_shard_1s_primary(redis_cluster: RedisClusterSet) -> None:
    client, layout = laid_out(redis_cluster)
    aggregate = Aggregate(client)
    assert read_count(aggregate) == SHARDS
    owner = redis_cluster.node_for_key(layout.keys(1).totals)

    owner.kill()
    redis_cluster.wait_for_promotion(owner)
    # The promoted replica has shard 1's order (no write was in flight): every order is read again.
    wait_for(lambda: read_count(aggregate) == SHARDS, 10, "the snapshot to read the promoted replica")
