"""A Redis Cluster for the tests and the bench: three primaries with a replica each, failing over in seconds.

Made as users make one: six ``cluster-enabled`` nodes, then ``redis-cli --cluster create ...
--cluster-replicas 1 --cluster-yes``. Ready when every node says ``cluster_state:ok`` with all 16384
slots covered, and every replica's link is up.

Tuning for tests: ``cluster-node-timeout`` 1 s (default 15 s) is how long a silent primary has before
its replica starts an election; ``cluster-replica-validity-factor 0`` lets a replica that lost its link
long ago still be promoted (scenario 22f cuts a replica from its primary before it kills the primary);
``cluster-allow-reads-when-down no`` keeps the default: a node serves nothing while a slot is uncovered.

Which node a test finds where changes with every failover: ask :meth:`RedisClusterSet.node_for_key`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from orders.stack.redis_ha import (
    FAST_SYNC,
    LOOPBACK,
    Host,
    RedisNode,
    answer_or_none,
    auth_lines,
    redis_cli_binary,
    start_together,
    wait_until,
)

SLOTS = 16384


def cluster_lines(host: Host, node_timeout_ms: int, password: str | None) -> list[str]:
    return [
        *auth_lines(password),
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {node_timeout_ms}",
        f"cluster-port {host.port(16379)}",
        f"cluster-announce-ip {host.address}",
        "cluster-replica-validity-factor 0",
        "cluster-allow-reads-when-down no",
        *FAST_SYNC,
    ]


def cluster_info(node: RedisNode) -> dict[str, str]:
    return dict(node.client().execute_command("CLUSTER INFO"))


def cluster_nodes(node: RedisNode) -> dict[str, dict[str, str]]:
    """CLUSTER NODES as redis-py parses it: "ip:port" -> node_id, flags, master_id, connected..."""
    return dict(node.client().execute_command("CLUSTER NODES"))


class RedisClusterSet:
    """Six nodes; ``redis-cli`` decides which three start as primaries."""

    def __init__(
        self,
        log_dir: Path,
        hosts: Sequence[Host] = (LOOPBACK,) * 6,
        *,
        tag: str = "redis-cluster",
        password: str | None = None,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.log_dir, self.password = log_dir, password
        self.nodes = [
            RedisNode(
                f"{tag}-{i}", host, log_dir, cluster_lines(host, node_timeout_ms, password), password=password
            )
            for i, host in enumerate(hosts)
        ]
        self.startup_seconds = 0.0
        self.min_replicas = (0, 10)

    def start(self, timeout: float = 30) -> RedisClusterSet:
        started = time.monotonic()
        start_together(self.nodes)
        self._create(timeout)
        self.wait_healthy(timeout)
        self.startup_seconds = time.monotonic() - started
        return self

    def _create(self, timeout: float) -> None:
        addresses = [f"{node.host.address}:{node.port}" for node in self.nodes]
        argv = [
            redis_cli_binary(),
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]
        env = {**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})}  # not on argv
        with open(self.log_dir / "redis-cluster-create.log", "ab") as log:
            subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=True)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def url(self) -> str:
        """The ``redis+cluster://`` URL of these nodes, every one a seed (README: Redis URLs)."""
        userinfo = f":{quote(self.password, safe='')}@" if self.password else ""
        seeds = ",".join(f"{node.host.address}:{node.port}" for node in self.nodes)
        return f"redis+cluster://{userinfo}{seeds}"

    def client(self, **options: Any) -> RedisCluster:
        """redis-py's cluster client on these nodes."""
        startup = [ClusterNode(*node.address) for node in self.nodes]
        return RedisCluster(startup_nodes=startup, password=self.password, socket_timeout=2.0, **options)

    # -- topology ------------------------------------------------------------------------------

    def node_at(self, address: tuple[str, int]) -> RedisNode:
        return next(node for node in self.nodes if node.address == address)

    def slot_map(self, node: RedisNode) -> dict[tuple[int, int], tuple[str, int]]:
        """``node``'s view: slot range -> the primary serving it."""
        # CLUSTER SLOTS: [first, last, [ip, port, id], replicas...] per range
        answer = node.client().execute_command("CLUSTER SLOTS")
        return {(int(r[0]), int(r[1])): (str(r[2][0]), int(r[2][1])) for r in answer}

    def node_for_slot(self, slot: int) -> RedisNode:
        """The primary serving ``slot``, as the first node that answers sees it."""
        for node in self.nodes:
            view = answer_or_none(partial(self.slot_map, node))
            if view is not None:
                return self.node_at(next(a for (lo, hi), a in view.items() if lo <= slot <= hi))
        raise LookupError("no cluster node answers")

    def node_for_key(self, key: str) -> RedisNode:
        return self.node_for_slot(key_slot(key.encode()))

    def replica_of(self, primary: RedisNode) -> RedisNode:
        """``primary``'s replica, from its own CLUSTER NODES."""
        nodes = cluster_nodes(primary)
        mine = next(entry["node_id"] for entry in nodes.values() if "myself" in entry["flags"])
        address = next(a for a, entry in nodes.items() if entry["master_id"] == mine)
        host, port = address.rsplit(":", 1)
        return self.node_at((host, int(port.split("@")[0])))

    def primaries(self) -> list[RedisNode]:
        return [node for node in self.nodes if answer_or_none(node.role) == "master"]

    def wait_for_promotion(self, dead: RedisNode, timeout: float = 30) -> None:
        """Until no node that answers routes a slot to ``dead``, and each says ``cluster_state:ok``."""

        def promoted() -> str | None:
            for node in self.nodes:
                if node is dead or not node.running():
                    continue
                slots, info = (
                    answer_or_none(partial(self.slot_map, node)),
                    answer_or_none(partial(cluster_info, node)),
                )
                if slots is None or info is None:
                    continue  # frozen or cut off: it cannot route anything now
                if dead.address in slots.values() or info["cluster_state"] != "ok":
                    return f"{node} still routes to {dead} or is {info['cluster_state']}"
            return None

        wait_until(promoted, timeout, f"a replica of {dead} to be promoted")

    # -- health and reset between tests --------------------------------------------------------

    def healthy(self) -> str | None:
        """None when every node is up with all slots covered and each primary has its replica in sync."""
        for node in self.nodes:
            info = answer_or_none(partial(cluster_info, node))
            if info is None:
                return f"{node} does not answer"
            state = (info["cluster_state"], int(info["cluster_slots_ok"]), int(info["cluster_known_nodes"]))
            if state != ("ok", SLOTS, len(self.nodes)):
                return f"{node}: state, slots ok, known nodes = {state}"
            flags = [entry["flags"] for entry in cluster_nodes(node).values()]
            if any("fail" in f or "handshake" in f or "noaddr" in f for f in flags):
                return f"{node} sees {flags}"
        primaries = self.primaries()
        if len(primaries) != len(self.nodes) // 2:
            return f"{len(primaries)} primaries: {primaries}"
        for node in self.nodes:
            if node not in primaries and node.info("replication").get("master_link_status") != "up":
                return f"{node}'s link to its primary is down"
        return None

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_until(self.healthy, timeout, "the Redis Cluster to be healthy")

    def set_min_replicas(self, count: int, max_lag: int) -> None:
        """``min-replicas-to-write`` / ``-max-lag`` on every node, in its config file too (a replica may
        be promoted, a killed primary restarted)."""
        self.min_replicas = (count, max_lag)
        for node in self.nodes:
            node.set_line("min-replicas-to-write", str(count))
            node.set_line("min-replicas-max-lag", str(max_lag))
            if node.running() and answer_or_none(node.role) is not None:
                node.client().config_set("min-replicas-to-write", count)
                node.client().config_set("min-replicas-max-lag", max_lag)

    def restore(self, timeout: float = 30) -> None:
        """Resume paused nodes, restart dead ones (a former primary rejoins as a replica), wait until
        healthy, ``min-replicas-to-write`` back to 0, empty every primary. Network faults are the test
        network's to heal (first)."""
        for node in self.nodes:
            node.resume()
        self.set_min_replicas(0, 10)
        for node in self.nodes:
            if not node.running():
                node.start()
        self.wait_healthy(timeout)
        for primary in self.primaries():
            primary.client().flushall()
            primary.client().wait(1, 5000)
