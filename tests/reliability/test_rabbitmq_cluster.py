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
import logging
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from decimal import Decimal

import pytest
import redis

from orders.core.dead_letter import HEADER_ATTEMPTS, HEADER_EXC_MESSAGE, HEADER_FAILED_AT, HEADER_TIMESTAMP
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

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.kafka, pytest.mark.lanes("apache")]
POOLS = ["solo", pytest.param("prefork", marks=pytest.mark.long)]  # both pools in the long profile
# Orders finished after a fault before it counts as "moving again" (not the ones already in hand).
MOVING = 20
DEDUPE_TTL = 86400  # the workers' default DEDUPE_TTL_SECONDS: when an order was counted, from its marker
REJOIN_SECONDS = 60  # a healed node that is still paused after this is restarted (see _rejoined)


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
@pytest.mark.parametrize("native", [False, True])
@pytest.mark.long  # the countdowns on quorum queues; Q1 and Q2 run retries on them in every profile
def test_retries_wait_their_countdown(
    pipeline: Pipeline, profile: Profile, rabbitmq_cluster: RabbitCluster, pool: str, native: bool
) -> None:
    """Each retry runs after its countdown (2, 4, 8 s: 14 s for an order that uses every retry), on a
    quorum queue. By default the worker holds a retry while it waits (unacknowledged in the quorum queue:
    a lost worker's retries come back); with CELERY_NATIVE_DELAYED_DELIVERY it waits in RabbitMQ's delay
    queues and the worker holds none (orders/core/celery_config.py says why that is not the default)."""
    count = 80  # 1 in 16 fails all four attempts: none of 40 did in 1 run of ~13 (7.6% of runs)
    pipeline.use_rabbitmq_cluster(rabbitmq_cluster, CELERY_NATIVE_DELAYED_DELIVERY=str(native).lower())
    s = Scenario("retries", pipeline, profile, ScenarioRows([]), seed=11,
                 FAILURE_RATE="0.5", PERMANENT_FAILURE_RATE="0", RETRY_BACKOFF_BASE="2")  # fmt: skip
    worker = s.worker(pool=pool)
    s.bridge()
    produced = s.produced(s.produce(count), count)
    dead = s.expected_dlq(list(produced))
    assert dead, "the seed should send some orders through every retry"

    # RabbitMQ's figures for quorum queues lag by up to its 5 s statistics interval: read until they show
    # the retries waiting (the last ones wait 8 s).
    readings: list[dict[str, tuple[int, int]]] = []
    queue = pipeline.env["CELERY_QUEUE"]
    waiting = (lambda: _delayed(readings, rabbitmq_cluster)) if native else (
        lambda: _held(readings, rabbitmq_cluster, queue))  # fmt: skip
    wait_for(lambda: waiting() > 0, 20, "retries waiting their countdown", 1)
    delayed, held = _delayed(readings[-1:], None), readings[-1][queue][1]
    figures = s.settle(produced, timeout=90)
    figures.assert_exact()

    spans = []
    for letter in s.read_dlq():
        headers = headers_of(letter)
        assert headers[HEADER_ATTEMPTS] == "4"
        failed_at = datetime.fromisoformat(headers[HEADER_FAILED_AT]).timestamp()
        spans.append(failed_at - int(headers[HEADER_TIMESTAMP]) / 1000)
    assert min(spans) >= 14 - 0.5, spans  # no retry ran before its countdown
    assert "Direct exchanges are not supported" not in worker.tail(5000)  # said per retry, kept quiet
    took = f"{min(spans):.1f}-{max(spans):.1f}s"
    print(f"{pool}, native delayed delivery {native}: {len(spans)} orders through 3 retries took {took} "
          f"(14 s of countdowns); {delayed} waiting in RabbitMQ, {held} held by the worker")  # fmt: skip


def _held(readings: list[dict[str, tuple[int, int]]], cluster: RabbitCluster, queue: str) -> int:
    """Messages of ``queue`` delivered to a worker and not yet acknowledged, in a new reading."""
    readings.append(queue_counts(cluster))
    return readings[-1].get(queue, (0, 0))[1]


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


@pytest.mark.long  # ~22 s: the short profile's RabbitMQ budget goes to Q1 and Q2
def test_an_order_past_the_delivery_limit_is_dead_lettered_not_dropped(
    pipeline: Pipeline, profile: Profile, rabbitmq_cluster: RabbitCluster
) -> None:
    """At CELERY_DELIVERY_LIMIT (2 here) RabbitMQ dead-letters the message to ``<queue>.parked``; a worker
    takes it from there and dead-letters the order to the DLQ topic instead of running it again. While
    the aggregate's Redis is away it cannot (the claim needs Redis) and requeues it; once Redis is
    back the order is in the DLQ, never lost."""
    from orders.core.order import Order
    from orders.stack.supervisor import free_port
    from tests.harness.kafka_io import produce_raw
    from tests.integration.test_pipeline import codec_for
    from tests.reliability.accounting import settle

    pipeline.use_rabbitmq_cluster(rabbitmq_cluster, CELERY_DELIVERY_LIMIT="2")
    pipeline.start_bridge()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # the aggregate's Redis is away: hand-backs
    broken = pipeline.start_worker(REDIS_URL=unreachable)
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic,
                [(b"o", codec_for(pipeline).encode(Order("limit-1", "Mouse", 700)))])  # fmt: skip
    wait_for(lambda: "CELERY_DELIVERY_LIMIT (2)" in broken.tail(400), 60, "the order to pass its limit")
    handed_back = broken.tail(400).count("handing it back")
    broken.stop()
    pipeline.start_worker()
    figures = settle(
        pipeline.env["REDIS_URL"], {"limit-1": Decimal("7.00")}, {"limit-1"},
        lambda: read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic), 60,
    )  # fmt: skip
    assert (figures.lost, figures.dlq, figures.succeeded) == (0, 1, 0), figures
    (letter,) = read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic)
    assert "CELERY_DELIVERY_LIMIT (2)" in headers_of(letter)[HEADER_EXC_MESSAGE]
    assert handed_back == 3, broken.tail(60)  # delivered 3 times: the first and 2 more, then parked


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
        with ThreadPoolExecutor(1) as asking:  # the CLI's answers, while the orders are watched
            paused = asking.submit(_paused_within, leader, cut_at, cut_at + profile.rabbit_partition)
            after_fault = _moving(s, rabbitmq_cluster, f"partition {fault}", cut_at)
            paused_after = paused.result()
        time.sleep(max(0.0, cut_at + profile.rabbit_partition - time.monotonic()))
        test_network.heal(node)
        after_heal = _moving(s, rabbitmq_cluster, f"heal {fault}", time.monotonic())
        rejoined = _rejoined(rabbitmq_cluster, leader)
        assert paused_after is not None, f"{leader.name} kept serving alone (pause_minority)"
        events.append(f"{leader.name} cut off {profile.rabbit_partition:.0f}s, paused itself after "
                      f"{paused_after:.1f}s; moving {after_fault:.1f}s after the cut, {after_heal:.1f}s "
                      f"after the heal; {rejoined}")  # fmt: skip
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


def _rejoined(cluster: RabbitCluster, node: RabbitMQ) -> str:
    """How the cut-off node came back after the heal. It should resume by itself (pause_minority); on
    3.10.8 it sometimes stays paused (2 of ~13 partitions here, after earlier faults to the cluster):
    then it is restarted, as an operator would, and the row says so. Orders are audited either way."""
    healed_at = time.monotonic()
    try:
        wait_for(lambda: cluster.unhealthy() is None, REJOIN_SECONDS, "the cluster whole again", interval=1)
        return f"it rejoined {time.monotonic() - healed_at:.0f}s after the heal"
    except TimeoutError:
        view = _view(node)
    log.warning("%s still paused %ss after the heal (%s); restarting it", node.name, REJOIN_SECONDS, view)
    node.restart()
    wait_for(lambda: cluster.unhealthy() is None, 60, "the cluster whole again", interval=1)
    return f"it stayed paused {REJOIN_SECONDS}s after the heal and was restarted"


def _view(node: RabbitMQ) -> str:
    """What the node says of the cluster, asked inside its namespace (for a failure's message)."""
    try:
        return node.ctl("cluster_status", "--formatter", "json", timeout=20)[:2000]
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"no answer ({exc!r:.300})"


def _paused_within(node: RabbitMQ, cut_at: float, deadline: float) -> float | None:
    """Seconds from the cut until the cut-off node stopped serving (pause_minority), asked inside its
    namespace (None if it still served at ``deadline``)."""
    while time.monotonic() < deadline:
        try:
            if "false" in node.ctl("eval", "rabbit:is_running().", timeout=10):
                return time.monotonic() - cut_at
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # the CLI fails while the node is busy pausing: ask again
        time.sleep(0.5)
    return None
