"""The redis-py internals the aggregate's Cluster client relies on (orders/core/redis_cluster.py): which
node owns a key, re-reading the slot map, and the nodes' connection options. On a real Redis Cluster of
six loopback nodes, started once for this module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from orders.core.redis_bounds import Bounds
from orders.core.redis_cluster import cluster_client, primary_for, refresh_slot_map
from orders.core.redis_url import ClusterUrl
from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.redis_ha import LOOPBACK
from tests.contract.contract import Contract

HOME = "{orders}:totals"  # slot 105, the one-shard aggregate's

R1 = Contract(
    "R1", "redis", "RedisCluster.get_node_from_key(key) answering with the primary of the key's slot from "
    "the cached slot map (nodes_manager.slots_cache), and get_redis_connection(node) being that node's own "
    "redis.Redis", "orders/core/redis_cluster.py (primary_for, redis_client.node_for)",
    "sending an aggregate script and its WAIT to the primary that took the write: a WAIT in a Cluster "
    "pipeline goes to the client's default node instead, and proves nothing about the write",
    "redis/cluster.py: RedisCluster.get_node_from_key, get_redis_connection, NodesManager.slots_cache",
)  # fmt: skip
R2 = Contract(
    "R2", "redis", "RedisCluster.nodes_manager.initialize() re-reading CLUSTER SLOTS at once, replacing "
    "the cached slot map", "orders/core/redis_cluster.py (refresh_slot_map, redis_client.refresh_routes)",
    "finding a promoted replica after a MOVED or a lost primary before the redelivered order is tried "
    "again; without it node_for keeps naming the dead node until redis-py's own refresh runs",
    "redis/cluster.py: NodesManager.initialize, NodesManager.reset",
)  # fmt: skip
R3 = Contract(
    "R3", "redis", "RedisCluster passing connection_pool_class through to NodesManager, which builds every "
    "node's pool with it and the other connection kwargs (health_check_interval is dropped by "
    "cleanup_kwargs), and giving node clients a retry of 0", "orders/core/redis_cluster.py (cluster_client)",
    "every wait on a Cluster node bounded as on one server (health checks on idle connections; a node's "
    "connection error reaching the caller, who refreshes the routes and hands the order back)",
    "redis/cluster.py: RedisCluster.__init__, cleanup_kwargs, REDIS_ALLOWED_KEYS, "
    "NodesManager.create_redis_node",
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    nodes = RedisClusterSet(Path(tmp_path_factory.mktemp("redis-cluster")), (LOOPBACK,) * 6, tag="contract")
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture
def client(cluster: RedisClusterSet) -> Iterator[RedisCluster]:
    seeds = tuple(node.address for node in cluster.nodes[:2])
    made = cluster_client(ClusterUrl(seeds), Bounds(health_check_interval=7))
    yield made
    made.close()


def _port(client: redis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs["port"])


def test_r1_the_primary_of_a_keys_slot_and_its_own_client(
    cluster: RedisClusterSet, client: RedisCluster
) -> None:
    with R1.holds():
        owner = cluster.node_for_key(HOME)
        node = client.get_node_from_key(HOME)
        assert node is client.nodes_manager.slots_cache[key_slot(HOME.encode())][0]
        assert (node.host, node.port) == owner.address, (
            "get_node_from_key did not answer with the slot's primary"
        )
        plain = client.get_redis_connection(node)
        assert type(plain) is redis.Redis and _port(plain) == owner.port
        # The point of it: a pipelined WAIT on that client reaches the node that took the write.
        other = next(n for n in client.get_primaries() if (n.host, n.port) != owner.address)
        client.set_default_node(other)  # as redis-py does after a failover: a random primary
        owner.client().config_resetstat()
        pipe = primary_for(client, HOME).pipeline(transaction=False)
        pipe.set(HOME, 1).wait(1, 2000)
        assert pipe.execute() == [True, 1]
        assert owner.info("commandstats")["cmdstat_wait"]["calls"] == 1


def test_r2_initialize_rereads_the_slot_map(cluster: RedisClusterSet, client: RedisCluster) -> None:
    with R2.holds():
        slot = key_slot(HOME.encode())
        owner = client.get_node_from_key(HOME)
        wrong = next(n for n in client.get_primaries() if n.name != owner.name)
        client.nodes_manager.slots_cache[slot] = [wrong]  # a stale map, as after a promotion
        refresh_slot_map(client, force=True)
        assert client.get_node_from_key(HOME).name == owner.name, "initialize() kept the stale slot map"


def test_r3_nodes_get_the_bounds_and_no_retry_of_their_own(client: RedisCluster) -> None:
    with R3.holds():
        for node in client.get_nodes():
            plain = client.get_redis_connection(node)
            kwargs = plain.connection_pool.connection_kwargs
            assert kwargs.get("health_check_interval") == 7, f"health_check_interval: {kwargs}"
            assert kwargs.get("socket_timeout") == Bounds().socket_timeout
            assert kwargs.get("socket_keepalive") is True
            assert plain.get_retry() is not None and plain.get_retry().get_retries() == 0
            connection = plain.connection_pool.get_connection()
            try:
                assert connection.health_check_interval == 7
            finally:
                plain.connection_pool.release(connection)
