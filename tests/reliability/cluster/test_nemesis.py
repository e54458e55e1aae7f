"""Scenario 18, the nemesis: orders at a steady rate while seeded random faults come and go, Jepsen-style.

The lane: the three-broker Kafka cluster, the aggregate and Celery's broker on the Sentinel-managed
Redis (three data nodes, each beside a Sentinel), two workers (one solo, one prefork) and two bridges,
each worker and bridge in a node of its own. Faults (tests/reliability/nemesis/schedule.py): SIGKILL
then restart, or SIGSTOP then SIGCONT, of a worker, a bridge, a broker or a Redis node; a node's link
down; a worker or a bridge cut from one broker or one Redis node. At most two at once, never two in one
group, so the brokers and the Redis nodes keep a majority and one worker and one bridge are untouched.
18r, long profile only: the same with Celery's broker on the three-node RabbitMQ cluster (a quorum
queue), whose nodes join the faults.

What must hold once the run drains, by the independent checker (tests/checker/): nothing lost, nothing
counted twice, nothing counted that was never produced, nothing both dead-lettered and counted, the
average exact. The history (seed, every fault with its times) and a write-up of the run are saved under
test-artifacts/checker/<test>/ (nemesis.md), with the logs when it fails. NEMESIS_SEED replays a run.
"""

from __future__ import annotations

import os

import pytest

from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.redis_sentinel import SentinelSet
from tests.checker.fixtures import CheckerRun
from tests.checker.verdict import Target
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.reliability.ha import MIN_REPLICAS
from tests.reliability.nemesis.actions import (
    Member,
    Nemesis,
    kafka_member,
    pipeline_member,
    rabbit_member,
    redis_member,
)
from tests.reliability.nemesis.run import drive, recovery_by_kind
from tests.reliability.nemesis.schedule import Timing, counts_by_kind, make_schedule
from tests.reliability.nemesis.summary import render
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

SEED = int(os.environ.get("NEMESIS_SEED", "1818"))
# Retries in flight through the faults (1, 2, 4 s), a few orders dead-lettered for good; the shortest
# visibility timeout the workers accept, so a killed or frozen worker's orders come back soon.
FAULTS = {"FAILURE_RATE": "0.05", "PERMANENT_FAILURE_RATE": "0.01", "RETRY_BACKOFF_BASE": "1",
          "VISIBILITY_TIMEOUT": "22"}  # fmt: skip
PROFILE_TIMEOUTS = {"long": 2400}  # the long run's faults alone last 21 minutes


def cast(p: NetworkPipeline, s: Scenario, ha: SentinelSet, net_node) -> dict[str, Member]:  # type: ignore[no-untyped-def]
    """Everything the nemesis may break, started (workers and bridges in nodes of their own)."""
    members: dict[str, Member] = {}
    for pool in ("solo", "prefork"):
        node = net_node(f"w{pool[0]}")
        worker = p.start_worker(pool=pool, node=node, **s.env)
        members[f"worker-{pool}"] = pipeline_member(f"worker-{pool}", worker, node)
    for i in range(2):
        node = net_node("b")
        members[f"bridge{i}"] = pipeline_member(f"bridge{i}", p.start_bridge(node=node, **s.env), node)
    for i, broker in enumerate(p.cluster.nodes):
        node = p.network.node_at(broker.host.address)
        members[f"kafka{i}"] = kafka_member(f"kafka{i}", p.cluster, broker, node)
    for i, data in enumerate(ha.data):
        members[f"redis{i}"] = redis_member(f"redis{i}", ha, data, p.network.node_at(data.host.address))
    return members


def run_nemesis(
    s: Scenario, ha: SentinelSet, members: dict[str, Member], seconds: float, checker: CheckerRun
) -> None:
    """Produce at the profile's rate while the seeded faults come and go; then the checker's verdict,
    the write-up, the row; lost 0, counted twice 0 and the rest asserted."""
    p: NetworkPipeline = s.pipeline  # type: ignore[assignment]
    timing, rate = Timing(seconds), s.profile.nemesis_rate
    n = int(rate * seconds)
    schedule = make_schedule(SEED, sorted(members), timing)
    checker.history.seed = SEED
    # on failure the checker copies the pipeline's and the brokers' logs; the Redis nodes' and Sentinels' too
    checker.keep_logs(*(node.service.log_path for node in [*ha.data, *ha.sentinels]))
    producer = s.produce(n, rate)
    injected = drive(Nemesis(members, p.network, checker.history), schedule)
    produced = s.produced(producer, n)
    primary = ha.primary()  # the checker reads Redis directly, not through the product's Sentinel client
    redis_url = f"redis://:{ha.password}@{primary.host.address}:{primary.port}/1"
    target = Target(
        p.broker.bootstrap, p.orders_topic, p.dlq_topic, s.registry_url, redis_url, acknowledged=n
    )
    verdict = checker.check(target, settle=120)
    checker.directory.mkdir(parents=True, exist_ok=True)
    (checker.directory / "nemesis.md").write_text(render(SEED, timing, rate, injected, verdict))
    figures = s.settle(produced)
    recovery = recovery_by_kind(injected, verdict.timeline)
    notes = (
        f"seed {SEED}; {len(injected)} faults in {seconds:.0f}s at {rate}/s, both pools, 2 bridges; "
        + ", ".join(f"{k} {v}" for k, v in counts_by_kind(schedule).items())
        + "; longest from a heal to orders flowing: "
        + ", ".join(f"{k} {a:.1f}s" for k, (a, _) in recovery.items())
    )
    if verdict.problems():
        notes = f"CHECKER: {'; '.join(verdict.problems())[:200]}; {notes}"
    s.finish(figures, f"{notes}; {verdict.summary()}", max((a for a, _ in recovery.values()), default=None))
    verdict.assert_clean()
    assert len(injected) == len(schedule)


def test_nemesis_seeded_random_faults_under_steady_load(
    cluster_pipeline: NetworkPipeline, redis_sentinel_cluster: SentinelSet, profile: Profile,
    reliability_report: ScenarioRows, checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    ha = redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)  # as the shipped configuration (docker-compose.ha.yml)
    s = Scenario("18", cluster_pipeline, profile, reliability_report, seed=SEED, REDIS_URL=ha.url(1),
                 CELERY_BROKER_URL=ha.url(2), **FAULTS)  # fmt: skip
    run_nemesis(s, ha, cast(cluster_pipeline, s, ha, net_node), profile.nemesis_seconds, checker)


@pytest.mark.long
def test_nemesis_with_celery_on_the_rabbitmq_cluster(
    cluster_pipeline: NetworkPipeline, redis_sentinel_cluster: SentinelSet, rabbitmq_cluster: RabbitCluster,
    profile: Profile, reliability_report: ScenarioRows, checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p, ha = cluster_pipeline, redis_sentinel_cluster
    ha.set_min_replicas(*MIN_REPLICAS)
    p.use_rabbitmq_cluster(rabbitmq_cluster)
    s = Scenario("18r", p, profile, reliability_report, seed=SEED, REDIS_URL=ha.url(1), **FAULTS)
    members = cast(p, s, ha, net_node)
    for i, rabbit in enumerate(rabbitmq_cluster.nodes):
        checker.keep_logs(rabbit.log_dir / f"{rabbit.name}.log")  # its Service's log (stdout)
        members[f"rabbit{i}"] = rabbit_member(f"rabbit{i}", rabbit, p.network.node_at(rabbit.host.address))
    run_nemesis(s, ha, members, profile.nemesis_rabbit_seconds, checker)
