"""Scenario 14: on the three-broker cluster, the leader of a busy partition is partitioned silently
from the other two brokers and from the bridge (which runs in a node of its own), while the producer
and the workers still reach it; healed later.

The cut-off broker keeps believing it leads; it cannot replicate, so with acks=all and
min.insync.replicas=2 it can acknowledge nothing, while the majority fences it and elects new leaders.
What must hold: nothing acknowledged is lost or written twice, every order counted once or
dead-lettered; the clients leave the silent broker for the new leaders within their timeouts.
Measured: how soon orders of that partition flowed again after the cut and after the heal, and the
worst wait of an order in flight across it.
"""

from __future__ import annotations

import time

import pytest

from orders.stack.supervisor import wait_for
from tests.checker.fixtures import CheckerRun
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.netns import Node
from tests.reliability.cluster.run import KAFKA_FAULTS, Fault, finish
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.pools(short="prefork")
CUT_SECONDS = 20.0
PARTITION = 0


def test_a_partition_leader_cut_off_from_its_peers_and_the_bridge(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p = cluster_pipeline
    cluster, network, topic = p.cluster, p.network, p.orders_topic
    # Produced from before the cut until after the heal: both recoveries are seen.
    rate = profile.cluster_rate
    n = int(rate * (CUT_SECONDS + 8))
    s = Scenario("14", p, profile, reliability_report, seed=1414, **KAFKA_FAULTS)
    s.worker(pool=pool)
    bridge_node: Node = net_node("bridge")
    p.start_bridge(node=bridge_node, **s.env)
    producer = s.produce(n, rate=rate)
    wait_for(lambda: consumed(s.aggregate) >= rate, 60, "orders flowing")

    leader = cluster.leader_of(topic, PARTITION)
    cut_off = network.node_at(leader.host.address)
    peers = [network.node_at(other.host.address) for other in cluster.nodes if other is not leader]
    for other in [*peers, bridge_node]:
        network.cut(cut_off, other)
    cut = checker.history.record(
        "cut", leader.name, f"from its peers and the bridge; leader of {topic}[{PARTITION}]"
    )
    wait_for(lambda: cluster.leader_of(topic, PARTITION) is not leader, 30, "a new leader", interval=0.2)
    elected = checker.history.record("observed", "controller", f"new leader of {topic}[{PARTITION}]")
    time.sleep(max(0.0, CUT_SECONDS - checker.history.since(cut)))
    network.heal_all()
    healed = checker.history.record("restore", leader.name, "every cut restored")
    cluster.wait_healthy(60)
    back = checker.history.record("observed", leader.name, "back in every ISR")

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    notes = (
        f"{pool} pool; {leader.name} cut off for {healed.at - cut.at:.0f}s under {rate}/s; new leader "
        f"elected {elected.at - cut.at:.1f}s after the cut; back in every ISR {back.at - healed.at:.1f}s "
        f"after the heal"
    )
    verdict = finish(s, checker, figures, n, notes, Fault(cut, healed, partitions=(PARTITION,)))
    # The clients left the silent leader for the new one while the cut lasted: they did not wait for
    # the heal (with librdkafka's 60 s socket timeout they did: 31.6 s for a 25 s cut).
    resumed = verdict.timeline.resumed(cut.unix, PARTITION)
    assert resumed is not None and resumed < healed.at - cut.at, (
        f"[{PARTITION}] flowed again only {resumed}s after the cut"
    )
