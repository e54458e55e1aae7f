"""The Redis HA launchers: a Sentinel set and a Cluster fail over within a stated bound.

Bounds (the tests fail past them): Sentinel 15 s after a SIGKILL or a silent isolation of the primary,
the Cluster 15 s after a SIGKILL. Expected: ~1 s until a node is deemed down (``down-after-milliseconds``
and ``cluster-node-timeout``), then an election; the measured times are in the session's summary.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.redis_ha import LOOPBACK
from orders.stack.redis_sentinel import SentinelSet
from tests.harness.netns import TestNetwork

FAILOVER_BOUND = 15.0
Timing = Callable[[str, float], None]


def _write_replicated(client: redis.Redis, replicas: int) -> None:
    client.set("{ha}:marker", "kept")
    assert client.wait(replicas, 2000) == replicas


def test_sentinel_fails_over_after_the_primary_is_sigkilled(
    redis_sentinel_cluster: SentinelSet, record_ha_timing: Timing
) -> None:
    ha = redis_sentinel_cluster
    old = ha.primary()
    _write_replicated(old.client(), 2)

    old.kill()
    started = time.monotonic()
    new = ha.wait_for_failover(old, timeout=FAILOVER_BOUND)
    record_ha_timing("sentinel failover after SIGKILL of the primary", time.monotonic() - started)

    assert new is not old and new.role() == "master"
    client = ha.sentinel_client().master_for(ha.service, decode_responses=True)
    assert client.get("{ha}:marker") == "kept"  # through Sentinel, as a pipeline client would find it


def test_sentinel_fails_over_when_the_primary_is_isolated_silently(
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork, record_ha_timing: Timing
) -> None:
    ha = redis_sentinel_cluster
    old = ha.primary()
    node = test_network.node_at(old.host.address)  # its Sentinel is cut off with it

    test_network.isolate(node)
    started = time.monotonic()
    new = ha.wait_for_failover(old, timeout=FAILOVER_BOUND)
    record_ha_timing("sentinel failover after isolating the primary", time.monotonic() - started)

    assert new is not old and new.role() == "master"
    # Silent: the old primary still runs and, inside its node, still believes it is the primary.
    assert old.running()
    role = subprocess.run(
        [*node.prefix, "redis-cli", "-h", old.host.address, "-p", str(old.port), "ROLE"],
        env={**os.environ, "REDISCLI_AUTH": ha.password or ""},
        capture_output=True, text=True, timeout=5, check=True,
    )  # fmt: skip
    assert role.stdout.split()[0] == "master"


def test_min_replicas_refuses_writes_while_a_replica_is_frozen(redis_sentinel_cluster: SentinelSet) -> None:
    ha = redis_sentinel_cluster
    primary, frozen = ha.primary(), ha.replicas()[0]
    ha.set_min_replicas(2, 1)
    primary.client().set("{ha}:before", 1)

    frozen.pause()  # SIGSTOP: its link stays open, only its acknowledgements stop
    deadline = time.monotonic() + 10
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):  # polled, with a bound
        while time.monotonic() < deadline:
            primary.client().set("{ha}:during", 1)
            time.sleep(0.2)
    frozen.resume()


def test_cluster_promotes_the_replica_after_its_primary_is_sigkilled(
    redis_cluster: RedisClusterSet, record_ha_timing: Timing
) -> None:
    key = "{orders}:marker"
    primary = redis_cluster.node_for_key(key)
    replica = redis_cluster.replica_of(primary)
    client = redis_cluster.client(decode_responses=True)
    client.set(key, "kept")
    assert primary.client().wait(1, 2000) == 1

    primary.kill()
    started = time.monotonic()
    redis_cluster.wait_for_promotion(primary, timeout=FAILOVER_BOUND)
    record_ha_timing("cluster promotion after SIGKILL of a primary", time.monotonic() - started)

    assert redis_cluster.node_for_key(key) is replica and replica.role() == "master"
    assert replica.client().get(key) == "kept"


def test_both_sets_start_on_loopback_too(tmp_path: Path) -> None:
    """The bench's placement: everything on 127.0.0.1, free ports, no namespaces, no passwords."""
    sentinels = SentinelSet(tmp_path, (LOOPBACK,) * 3, tag="loopback-sentinel")
    cluster = RedisClusterSet(tmp_path, (LOOPBACK,) * 6, tag="loopback-cluster")
    try:
        # One after the other, from this thread: a child started from a worker thread gets SIGTERM when
        # that thread ends (the supervisor's parent-death signal follows the thread, not the process).
        sentinels.start()
        cluster.start()
        assert sentinels.primary().host.address == "127.0.0.1"
        client = cluster.client(decode_responses=True)
        client.set("loopback", "yes")
        assert client.get("loopback") == "yes"
    finally:
        sentinels.stop()
        cluster.stop()
