"""Scenario 13: on the three-broker cluster, the leader of a busy partition of `orders` is SIGKILLed
while orders flow, and restarted later.

What must hold: no order acknowledged to `orders produce` (acks=all, idempotent) is lost or doubled on
the topic; every order is counted once or dead-lettered; the producer, the bridge (consumer and DLQ
producer) and the workers' DLQ producers follow the new leader on their own. Measured: how soon orders
of that partition flowed again after the kill, how soon the restarted broker was back in every ISR,
and the worst wait of an order in flight across the fault (the checker's timeline).
"""

from __future__ import annotations

import time

import pytest

from orders.stack.supervisor import wait_for
from tests.checker.fixtures import CheckerRun
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.reliability.cluster.run import KAFKA_FAULTS, Fault, finish
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.pools(short="solo")
DOWN_SECONDS = 8.0  # the broker stays dead this long: past its session timeout, writes move on without it
PARTITION = 0


def test_leader_of_a_busy_partition_sigkilled_then_restarted(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    checker: CheckerRun,
) -> None:  # fmt: skip
    cluster, topic = cluster_pipeline.cluster, cluster_pipeline.orders_topic
    n, rate = profile.cluster_orders, profile.cluster_rate
    s = Scenario("13", cluster_pipeline, profile, reliability_report, seed=1313, **KAFKA_FAULTS)
    s.worker(pool=pool)
    s.bridge()
    producer = s.produce(n, rate=rate)
    wait_for(lambda: consumed(s.aggregate) >= rate, 60, "orders flowing")

    leader = cluster.leader_of(topic, PARTITION)
    leader.kill()
    killed = checker.history.record("kill", leader.name, f"SIGKILL, the leader of {topic}[{PARTITION}]")
    wait_for(lambda: cluster.leader_of(topic, PARTITION) is not leader, 30, "a new leader", interval=0.1)
    elected = checker.history.record("observed", "controller", f"new leader of {topic}[{PARTITION}]")
    time.sleep(max(0.0, DOWN_SECONDS - checker.history.since(killed)))
    leader.start()
    restarted = checker.history.record("restart", leader.name)
    cluster.wait_healthy(60)
    back = checker.history.record("observed", leader.name, "back in every ISR")

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    notes = (
        f"{pool} pool; {leader.name} (leader of [{PARTITION}]) SIGKILLed under {rate}/s, restarted after "
        f"{restarted.at - killed.at:.0f}s; new leader elected in {elected.at - killed.at:.1f}s; "
        f"back in every ISR {back.at - restarted.at:.1f}s after the restart"
    )
    verdict = finish(s, checker, figures, n, notes, Fault(killed, partitions=(PARTITION,)))
    assert verdict.timeline.resumed(killed.unix, PARTITION) is not None, (
        "no order of [0] counted after the kill"
    )
