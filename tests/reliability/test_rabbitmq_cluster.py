"""Celery on a three-node RabbitMQ cluster (quorum queue): retries, failover, and scenarios Q1 and Q2.

The cluster is the session's (tests/harness/rabbit_fixtures.py), one namespace per node on the test
network; the workers and the bridge run on the host and reach the nodes through the bridge address,
with every node in CELERY_BROKER_URL. All of it is in one file so one xdist worker starts the cluster.

- Q1: the node leading the quorum queue is SIGKILLed under load (a crash: no leadership hand-over, no
  goodbye to clients), then restarted. ``rabbitmqctl stop_app`` would be the gentle case: it hands
  leadership over and closes client connections first.
- Q2: that node is partitioned silently (its bridge port down: packets vanish), then healed. With
  ``pause_minority`` it pauses itself once it sees it is alone; clients connected to it hear nothing
  and must notice by heartbeat or timeout.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime

import pytest
import redis

from orders.core.dead_letter import HEADER_ATTEMPTS, HEADER_FAILED_AT, HEADER_TIMESTAMP
from orders.core.queue_depth import depth_reader
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of
from tests.harness.netns import TestNetwork
from tests.reliability.accounting import read_to_end
from tests.reliability.probes import counted_latencies, settled
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes("apache")]
POOLS = ["solo", pytest.param("prefork", marks=pytest.mark.long)]  # both pools in the long profile
# Long enough for every side to notice: net_ticktime 6 s (up to 7.5 s), two missed 5 s heartbeats.
PARTITION_SECONDS = 15.0
# Orders finished after a fault before it counts as "moving again" (not the ones already in hand).
MOVING = 20
DEDUPE_TTL = 86400  # the workers' default DEDUPE_TTL_SECONDS: when an order was counted, from its marker


def cluster_scenario(
    key: str, pipeline: Pipeline, profile: Profile, report: ScenarioRows, cluster: RabbitCluster, seed: int
) -> Scenario:
    pipeline.use_rabbitmq_cluster(cluster)
    return Scenario(key, pipeline, profile, report, seed=seed)


def queue_counts(cluster: RabbitCluster) -> dict[str, tuple[int, int]]:
    """Every queue's (ready, unacknowledged) messages, as RabbitMQ counts them."""
    rows = json.loads(
        cluster.nodes[0].ctl(
            "list_queues", "name", "messages_ready", "messages_unacknowledged", "--formatter", "json"
        )
    )
    return {row["name"]: (row["messages_ready"], row["messages_unacknowledged"]) for row in rows}


def latencies(s: Scenario) -> list[float]:
    """Produce-to-counted seconds of every counted order of the run (tests/reliability/probes.py)."""
    records = read_to_end(s.bootstrap, s.pipeline.orders_topic)
    produced_at = {(m.key() or b"").decode(): m.timestamp()[1] for m in records}
    return counted_latencies(redis.Redis.from_url(s.redis_url), produced_at, DEDUPE_TTL)


def describe(values: list[float]) -> str:
    return f"worst order latency {max(values):.1f}s (median {statistics.median(values):.2f}s)"


@pytest.mark.parametrize("pool", POOLS)
def test_retries_wait_their_countdown_in_rabbitmq_not_in_the_worker(
    pipeline: Pipeline, profile: Profile, rabbitmq_cluster: RabbitCluster, pool: str
) -> None:
    """Celery's native delayed delivery on RabbitMQ 3.10.8: a retry's countdown is spent in RabbitMQ's
    delay queues (replicated quorum queues), so a worker holds no retry while it waits, and each retry
    runs after its countdown (2, 4, 8 s: 14 s in all for an order that uses every retry)."""
    count = 40
    pipeline.use_rabbitmq_cluster(rabbitmq_cluster)
    s = Scenario("retries", pipeline, profile, ScenarioRows([]), seed=11,
                 FAILURE_RATE="0.5", PERMANENT_FAILURE_RATE="0", RETRY_BACKOFF_BASE="2")  # fmt: skip
    worker = s.worker(pool=pool)
    s.bridge()
    produced = s.produced(s.produce(count), count)
    dead = s.expected_dlq(list(produced))
    assert dead, "the seed should send some orders through every retry"

    # RabbitMQ's figures for quorum queues lag by up to its 5 s statistics interval: read until they show
    # the retries (the last ones wait 8 s), then look at what the worker holds at that moment.
    readings: list[dict[str, tuple[int, int]]] = []
    wait_for(lambda: _delayed(readings, rabbitmq_cluster) > 0, 20, "retries counted in the delay queues", 1)
    delayed, held = _delayed(readings[-1:], None), readings[-1][pipeline.env["CELERY_QUEUE"]][1]
    assert held <= 4, readings[-1]  # at most its prefetch of new orders, none of the waiting retries
    figures = s.settle(produced, timeout=90)
    figures.assert_exact()

    spans = []
    for letter in s.read_dlq():
        headers = headers_of(letter)
        assert headers[HEADER_ATTEMPTS] == "4"
        failed_at = datetime.fromisoformat(headers[HEADER_FAILED_AT]).timestamp()
        spans.append(failed_at - int(headers[HEADER_TIMESTAMP]) / 1000)
    assert min(spans) >= 14 - 0.5, spans  # no retry ran before its countdown
    assert "Direct exchanges are not supported" not in worker.tail(5000)
    took = f"{min(spans):.1f}-{max(spans):.1f}s"
    print(f"{pool}: {len(spans)} orders through 3 retries took {took} (14 s of countdowns); "
          f"{delayed} retries waiting in RabbitMQ, {held} messages held by the worker")  # fmt: skip


def _delayed(readings: list[dict[str, tuple[int, int]]], cluster: RabbitCluster | None) -> int:
    """Messages ready in Celery's delay queues, in a new reading (appended) or the last one."""
    if cluster is not None:
        readings.append(queue_counts(cluster))
    return sum(ready for name, (ready, _) in readings[-1].items() if name.startswith("celery_delayed_"))


def test_the_depth_reader_fails_over_to_the_next_node(rabbitmq_cluster: RabbitCluster) -> None:
    """With the first node of CELERY_BROKER_URL down, the depth is read through the next one. It used to
    try the first node only: the bridge then lost its backpressure and /metrics the depth."""
    rabbitmq_cluster.nodes[0].kill()
    with closing(depth_reader(rabbitmq_cluster.url, "no-such-queue", timeout=2)) as reader:
        assert reader.depth() == 0


@pytest.mark.parametrize("pool", POOLS)
def test_quorum_leader_sigkilled_under_load(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    rabbitmq_cluster: RabbitCluster,
) -> None:  # fmt: skip
    s = cluster_scenario("Q1", pipeline, profile, reliability_report, rabbitmq_cluster, seed=2401)
    n = profile.rabbit_orders
    s.worker(pool=pool)
    s.bridge()
    producer = s.produce(n, rate=profile.rabbit_rate)
    aggregate = s.aggregate
    events = []
    for fault in range(1, profile.rabbit_faults + 1):
        wait_for(
            lambda f=fault: settled(aggregate) > f * n // (profile.rabbit_faults + 2), 120, "orders flowing"
        )
        leader = rabbitmq_cluster.leader(pipeline.env["CELERY_QUEUE"])
        leader.kill()
        killed_at = time.monotonic()
        after_fault = _moving(s, rabbitmq_cluster, f"kill {fault}", killed_at)
        leader.restart()
        after_heal = _moving(s, rabbitmq_cluster, f"restart {fault}", time.monotonic())
        new = rabbitmq_cluster.leader(pipeline.env["CELERY_QUEUE"]).name
        down = time.monotonic() - killed_at
        events.append(f"{leader.name} killed, {new} leads; moving {after_fault:.1f}s after the kill, "
                      f"{after_heal:.1f}s after the restart ({down:.0f}s down)")  # fmt: skip
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    s.finish(figures, f"{pool} pool; {'; '.join(events)}; {describe(latencies(s))}")


@pytest.mark.parametrize("pool", POOLS)
def test_quorum_leader_partitioned_under_load(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    rabbitmq_cluster: RabbitCluster, test_network: TestNetwork,
) -> None:  # fmt: skip
    s = cluster_scenario("Q2", pipeline, profile, reliability_report, rabbitmq_cluster, seed=2402)
    n = profile.rabbit_orders
    s.worker(pool=pool)
    s.bridge()
    producer = s.produce(n, rate=profile.rabbit_rate)
    aggregate = s.aggregate
    events = []
    for fault in range(1, profile.rabbit_faults + 1):
        wait_for(
            lambda f=fault: settled(aggregate) > f * n // (profile.rabbit_faults + 2), 120, "orders flowing"
        )
        leader = rabbitmq_cluster.leader(pipeline.env["CELERY_QUEUE"])
        node = test_network.node_at(leader.host.address)
        test_network.isolate(node)
        cut_at = time.monotonic()
        after_fault = _moving(s, rabbitmq_cluster, f"partition {fault}", cut_at)
        paused_after = _paused_within(leader, cut_at + PARTITION_SECONDS)
        time.sleep(max(0.0, cut_at + PARTITION_SECONDS - time.monotonic()))
        test_network.heal(node)
        after_heal = _moving(s, rabbitmq_cluster, f"heal {fault}", time.monotonic())
        wait_for(lambda: rabbitmq_cluster.unhealthy() is None, 90, "the cluster whole again", interval=1)
        assert paused_after is not None, f"{leader.name} kept serving alone (pause_minority)"
        events.append(f"{leader.name} cut off {PARTITION_SECONDS:.0f}s, paused itself after "
                      f"{paused_after:.1f}s; moving {after_fault:.1f}s after the cut, {after_heal:.1f}s "
                      "after the heal")  # fmt: skip
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    s.finish(figures, f"{pool} pool; {'; '.join(events)}; {describe(latencies(s))}")


def _moving(s: Scenario, cluster: RabbitCluster, what: str, since: float) -> float:
    """Seconds from ``since`` until MOVING more orders are counted or dead-lettered (or all are)."""
    aggregate, n = s.aggregate, s.profile.rabbit_orders
    done: Callable[[], bool] = lambda: settled(aggregate) >= n  # noqa: E731
    try:
        return s.recovery.measure(what, since, lambda: settled(aggregate), 120, done, margin=MOVING)
    except TimeoutError as exc:  # what RabbitMQ holds says where the orders stopped
        held = {name: c for name, c in queue_counts(cluster).items() if any(c)}
        raise TimeoutError(f"{exc}; {settled(aggregate)} of {n} settled; RabbitMQ holds {held}") from None


def _paused_within(node: RabbitMQ, deadline: float) -> float | None:
    """Seconds until the cut-off node stopped serving (pause_minority), asked inside its namespace."""
    started = time.monotonic()
    while time.monotonic() < deadline:
        try:
            if "false" in node.ctl("eval", "rabbit:is_running().", timeout=10):
                return time.monotonic() - started
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # the CLI fails while the node is busy pausing: ask again
        time.sleep(0.5)
    return None
