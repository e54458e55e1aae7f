"""Scenarios 17a and 17b: a worker in a node of its own is cut off silently, while it holds orders,
(a) from Redis (the aggregate and Celery's broker: the worker's side of the link), past the visibility
timeout, so another worker takes its orders; (b) from every Kafka broker, while it dead-letters orders.

What must hold: nothing lost, nothing counted twice, no order both counted and dead-lettered; after
the heal the cut-off worker works again by itself. Measured: how soon its orders were settled
elsewhere (a), how soon dead letters flowed again after the heal (b), how soon it worked again, and
the worst wait of an order.
"""

from __future__ import annotations

import re

import pytest
import redis

from orders.stack.supervisor import Service, wait_for
from tests.checker.fixtures import CheckerRun
from tests.checker.history import log_time
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.netns import Node
from tests.reliability.cluster.run import Fault, finish
from tests.reliability.cluster.test_worker_pause import VISIBILITY, holdings, settled_ids
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

SWEEP = 10
FAULTS = {"VISIBILITY_TIMEOUT": str(VISIBILITY), "FAILURE_RATE": "0.1", "PERMANENT_FAILURE_RATE": "0.02",
          "RETRY_BACKOFF_BASE": "2"}  # fmt: skip
KAFKA_CUT_SECONDS = 12.0
SUCCEEDED = re.compile(r"^\[(\S+ \S+): INFO/\S+\] Task orders.process_order\[[^\]]+\] succeeded")


def worked_since(worker: Service, since: float) -> bool:
    """The worker logged a task that succeeded at or after ``since`` (Unix time)."""
    mark = log_time(since)
    return any((m := SUCCEEDED.match(line)) and m.group(1) >= mark for line in worker.tail(400).splitlines())


@pytest.mark.pools(short="solo")
def test_a_worker_cut_off_from_redis_past_the_visibility_timeout(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p = cluster_pipeline
    network, rate = p.network, profile.cluster_rate
    n = int(rate * (VISIBILITY + SWEEP + 10))
    s = Scenario("17a", p, profile, reliability_report, seed=1717, **FAULTS)
    client = redis.Redis.from_url(s.redis_url)
    node: Node = net_node("worker")
    worker = p.start_worker(pool=pool, node=node, **s.env)
    s.bridge()
    producer = s.produce(n, rate)
    wait_for(lambda: any(holdings(client).values()), 60, "retries held by the worker", interval=0.2)
    network.cut(node, p.redis_node)
    cut = checker.history.record("cut", worker.name, "from Redis")
    held = holdings(client)  # all its own: it is alone so far, and cut off it acknowledges nothing more
    other = s.worker(pool=pool)
    checker.history.record("start", other.name, f"the cut-off worker holds {len(held)} orders")
    wait_for(lambda: settled_ids(client, list(held)) == set(held), VISIBILITY + 3 * SWEEP + 30,
             "its orders settled by the other worker", interval=0.5)  # fmt: skip
    taken = checker.history.record("observed", other.name, "settled every order the cut-off worker held")
    network.restore(node, p.redis_node)
    healed = checker.history.record("restore", worker.name, "reaches Redis again")
    wait_for(lambda: worked_since(worker, healed.unix), 120, "the worker working again")
    back = checker.history.record("observed", worker.name, "a task succeeded")

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert worker.running() and other.running()
    notes = (
        f"{pool} pool; cut off from Redis for {healed.at - cut.at:.0f}s holding {len(held)} orders; the "
        f"other worker settled them {taken.at - cut.at:.1f}s after the cut; the cut-off worker worked again "
        f"{back.at - healed.at:.1f}s after the heal"
    )
    finish(s, checker, figures, n, notes, Fault(cut, healed))


@pytest.mark.pools(short="prefork")
def test_a_worker_cut_off_from_kafka_while_it_dead_letters(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p = cluster_pipeline
    network, rate = p.network, profile.cluster_rate
    n = int(rate * (KAFKA_CUT_SECONDS + 10))
    s = Scenario(
        "17b", p, profile, reliability_report, seed=1718, **{**FAULTS, "PERMANENT_FAILURE_RATE": "0.05"}
    )
    node: Node = net_node("worker")
    worker = p.start_worker(pool=pool, node=node, **s.env)
    s.bridge()
    producer = s.produce(n, rate)
    wait_for(lambda: "dead letter " in worker.tail(200), 60, "dead letters going out")
    for kafka in p.kafka_nodes():
        network.cut(node, kafka)
    cut = checker.history.record("cut", worker.name, "from every Kafka broker")
    wait_for(lambda: checker.history.since(cut) >= KAFKA_CUT_SECONDS, 60, "the cut to last", interval=0.5)
    for kafka in p.kafka_nodes():
        network.restore(node, kafka)
    healed = checker.history.record("restore", worker.name, "reaches Kafka again")

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    requeued = worker.tail(1_000_000).count("not dead-lettered")
    notes = f"{pool} pool; cut off from Kafka for {healed.at - cut.at:.0f}s; {requeued} dead letters requeued"
    finish(s, checker, figures, n, notes, Fault(cut, healed, dead=True))
    assert requeued > 0, "no dead letter met the cut: the scenario missed its point"
