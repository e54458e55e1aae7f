"""The aggregate's Cluster client against the session's Redis Cluster on the test network: connect(),
node_for and refresh_routes following a promotion, /healthz while a primary is dead, and where the current
AggregateWriter's WAIT goes; the tools' reads and `orders reset` on a Cluster.

The bound /healthz says "ok" again in after the home slot's primary is SIGKILLed (HEALTHY_AGAIN_BOUND):
the Cluster's promotion (cluster-node-timeout 1 s, then an election: measured times in the "redis ha
timings" summary) plus one probe interval (1 s) and one probe's bounds (1 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import pytest
import redis
from redis.cluster import RedisCluster

from orders.core.aggregate import PREFIX, TOTALS_KEY, Aggregate
from orders.core.control import get_failure_rate, set_failure_rate
from orders.core.redis_client import ReplicasBehind, connect, describe, node_for, refresh_routes, where
from orders.core.redis_health import RedisReachability
from orders.core.redis_url import parse_redis_url
from orders.core.settings import Settings
from orders.reset import reset_aggregate
from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.supervisor import wait_for
from worker.aggregate import AggregateWriter

Timing = Callable[[str, float], None]
HEALTHY_AGAIN_BOUND = 15.0


def _address(client: redis.Redis) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs["host"]), int(kwargs["port"])


def test_connect_finds_every_primary_and_node_for_the_owner_of_the_home_slot(
    redis_cluster: RedisClusterSet,
) -> None:
    url = redis_cluster.url()
    client = connect(url, decode_responses=True)
    assert isinstance(client, RedisCluster)
    assert describe(url) == "Redis Cluster (6 seed nodes)" and redis_cluster.password not in describe(url)
    assert where(client).endswith("(3 primaries)")
    owner = redis_cluster.node_for_key(TOTALS_KEY)
    node = node_for(client, TOTALS_KEY)
    assert _address(node) == owner.address
    node.set(TOTALS_KEY, "x")  # the plain client writes where the Cluster routes the key
    assert client.get(TOTALS_KEY) == "x" and owner.client().get(TOTALS_KEY) == "x"


def test_node_for_follows_a_promotion_after_refresh_routes_and_healthz_says_what_it_waits_for(
    redis_cluster: RedisClusterSet, record_ha_timing: Timing
) -> None:
    url = redis_cluster.url()
    client = connect(url)
    check = RedisReachability({"aggregate": parse_redis_url(url)}, interval=0.0)
    assert check() == (True, {"redis": {"aggregate": "ok"}})
    owner = redis_cluster.node_for_key(TOTALS_KEY)
    replica = redis_cluster.replica_of(owner)

    owner.kill()
    killed = time.monotonic()
    ready, details = check()
    assert not ready
    state = details["redis"]["aggregate"]
    assert (
        state.startswith("waiting for Redis Cluster (6 seed nodes), last at ")
        and redis_cluster.password not in state
    )
    wait_for(lambda: check()[0], HEALTHY_AGAIN_BOUND, "/healthz's Cluster probe to say ok again")
    record_ha_timing("cluster /healthz ok again after SIGKILL of the home primary", time.monotonic() - killed)

    redis_cluster.wait_for_promotion(owner)
    refresh_routes(client)
    assert _address(node_for(client, TOTALS_KEY)) == replica.address
    node_for(client, TOTALS_KEY).incr(PREFIX + "follow")  # writes on the promoted replica


def test_the_aggregates_wait_covers_the_write_whatever_the_default_node(
    redis_cluster: RedisClusterSet,
) -> None:
    client = connect(redis_cluster.url())
    assert isinstance(client, RedisCluster)
    owner = redis_cluster.node_for_key(TOTALS_KEY)
    client.set_default_node(next(n for n in client.get_primaries() if (n.host, n.port) != owner.address))
    writer = AggregateWriter(client, dedupe_ttl_seconds=3600, replicas=1, wait_timeout=0.5)
    writer.record_order("warm-up", "p", 100)  # the script loaded, the replica in sync
    replica = redis_cluster.replica_of(owner)
    replica.pause()  # its link stays up, its acknowledgements stop: no replica can have the next write
    try:
        with pytest.raises(ReplicasBehind):
            writer.record_order("unreplicated", "p", 100)
    finally:
        replica.resume()


def test_the_tools_read_and_reset_the_aggregate_on_a_cluster(redis_cluster: RedisClusterSet) -> None:
    settings = Settings.from_env(
        {"REDIS_URL": redis_cluster.url(), "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}, env_file=None
    )
    writer = AggregateWriter(connect(settings.redis), dedupe_ttl_seconds=3600)
    for n, cents in enumerate((1999, 1, 500)):
        assert writer.record_order(f"tool-{n}", "widget", cents)
    writer.count_events({"consumed": 3})
    with connect(settings.redis) as client:
        snapshot = Aggregate(client).snapshot()  # one MULTI/EXEC on the owner of slot 105
    assert (snapshot.count, snapshot.sum, snapshot.min, snapshot.max) == (
        3,
        Decimal("25.00"),
        Decimal("0.01"),
        Decimal("19.99"),
    )
    assert snapshot.counters["consumed"] == 3
    set_failure_rate(connect(settings.redis), 0.5)  # the dashboard's control, kept by a reset
    assert reset_aggregate(settings) > 0
    with connect(settings.redis) as client:
        assert Aggregate(client).snapshot().count == 0 and get_failure_rate(client) == 0.5
