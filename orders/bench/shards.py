"""The bench's sharded aggregate: the same drain at 1 and at 3 logical shards on one Redis Cluster.

The aggregate on a Redis Cluster on loopback (three primaries with a replica each, as
orders/stack/redis_cluster.py makes it), Celery's broker on the rig's own Redis. The ``shards`` phase
drains the same number of orders with AGGREGATE_SHARDS=1 and =3 in turns, each on a fresh, empty
aggregate (every primary flushed between runs, so the workers lay it out again). What it shows is the
split: each primary's CPU (psutil) and its command time (``INFO commandstats``) per order. At one shard
every order's script runs on the primary that owns ``{orders}``; at three, on the primary that owns its
shard's tag, about a third each. On two cores the total rate cannot rise: all six nodes, the workers and
the bridge share them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.crc import key_slot

from orders.bench.cost import SHARD_NODES, command_delta, command_stats
from orders.core.shards import tags
from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.redis_ha import LOOPBACK, RedisNode

RUNS = {"shards_1": 1, "shards_3": 3}  # figure key -> AGGREGATE_SHARDS
PRIMARIES = 3
NODE_COMPONENTS, REPLICAS_COMPONENT = SHARD_NODES[:PRIMARIES], SHARD_NODES[PRIMARIES]


def node_component(index: int) -> str:
    return NODE_COMPONENTS[index]


@dataclass
class ClusterAggregate:
    """A started Cluster and its primaries in slot order (node 0 serves slot 0): the bench starts no
    failover, so which node is primary does not change while it runs."""

    cluster: RedisClusterSet
    primaries: list[RedisNode] = field(default_factory=list)

    @classmethod
    def start(cls, log_dir: Path) -> ClusterAggregate:
        """Started from the calling thread (a child dies with the thread that started it)."""
        cluster = RedisClusterSet(log_dir, (LOOPBACK,) * (2 * PRIMARIES), tag="bench-cluster",
                                  password=secrets.token_hex(12))  # fmt: skip
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        first = _first_slots(cluster)
        return cls(cluster, sorted(cluster.primaries(), key=lambda node: first[node.name]))

    def url(self) -> str:
        return self.cluster.url()

    def stop(self) -> None:
        self.cluster.stop()

    def pids(self) -> dict[str, list[int]]:
        """Cost components: each primary alone, the three replicas together."""
        pids = {node_component(i): [node.service.pid] for i, node in enumerate(self.primaries)}
        replicas = [node for node in self.cluster.nodes if node not in self.primaries]
        pids[REPLICAS_COMPONENT] = [node.service.pid for node in replicas]
        return pids

    def owners(self, shards: int) -> dict[str, int]:
        """Each shard's hash tag -> the index of the primary that owns its slot."""
        return {tag: self.primaries.index(self._owner(tag)) for tag in tags(shards)}

    def _owner(self, tag: str) -> RedisNode:
        return self.cluster.node_for_slot(key_slot(tag.encode()))

    def reset(self) -> None:
        """An empty aggregate for the next run: FLUSHALL on every primary takes the layout key
        (``{orders}:layout``) and the shards' stamps with it, so the next run's workers lay it out
        for their own AGGREGATE_SHARDS; WAIT, so no replica still holds the last run's keys."""
        for primary in self.primaries:
            client = primary.client()
            client.flushall()
            client.wait(1, 5000)

    def window(self) -> NodeWindow:
        return NodeWindow(self.primaries)


def _first_slots(cluster: RedisClusterSet) -> dict[str, int]:
    """Each primary's name -> the first slot it serves (as node 0 sees the map, healthy at start)."""
    first: dict[str, int] = {}
    for (lo, _), address in cluster.slot_map(cluster.nodes[0]).items():
        name = cluster.node_at(address).name
        first[name] = min(first.get(name, lo), lo)
    return first


class NodeWindow:
    """Each primary's ``INFO commandstats`` over a measured window: its command time per order, and its
    share of the aggregate scripts' time (EVALSHA and its kin: the aggregate's writes)."""

    def __init__(self, primaries: list[RedisNode]) -> None:
        self._primaries = primaries
        self._before: list[dict[str, tuple[int, int]]] = []

    def start(self) -> None:
        self._before = [command_stats(node.client()) for node in self._primaries]

    def stop(self, orders: int) -> dict[str, float]:
        deltas = [
            command_delta(before, command_stats(node.client()))
            for before, node in zip(self._before, self._primaries, strict=True)
        ]
        return node_figures(deltas, orders)


def node_figures(deltas: Sequence[Mapping[str, tuple[int, int]]], orders: int) -> dict[str, float]:
    """``node<i>_command_us``: all commands' µs per order on primary i; ``node<i>_script_share``: its
    percentage of the scripts' time over all primaries."""
    scripts = [sum(usec for name, (_, usec) in delta.items() if name.startswith("eval")) for delta in deltas]
    figures = {}
    for i, delta in enumerate(deltas):
        figures[f"node{i}_command_us"] = sum(usec for _, usec in delta.values()) / max(orders, 1)
        figures[f"node{i}_script_share"] = 100.0 * scripts[i] / max(sum(scripts), 1)
    return figures
