"""Scenario 16: a worker frozen (SIGSTOP) past the visibility timeout while it holds orders: prefetched
ones, retries waiting out their countdown, and one in its failure hook (its DLQ publish made slow: the
worker is cut off from Kafka as it dead-letters). Another worker takes them; then the first wakes up.

What must hold: every order it held is settled by the other worker while it is frozen; after waking,
whatever it runs again is counted once, and an order in its failure hook ends dead-lettered, never
also counted; nothing is lost. Measured: how long the held orders waited (the visibility timeout and
the restore sweep), and the worst wait of an order.
"""

from __future__ import annotations

import json

import pytest
import redis

from orders.core.aggregate import dead_key, seen_key
from orders.core.shards import read_layout
from orders.stack.supervisor import Service, wait_for
from tests.checker.fixtures import CheckerRun
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.netns import Node
from tests.reliability.cluster.run import Fault, finish
from tests.reliability.probes import settled
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.pools(short="prefork")
UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages (the Redis transport)
VISIBILITY = 22  # the shortest allowed (over the 15 s time limit + 5 s lease renewal)
SWEEP = 10  # a worker looks for expired messages this often (RESTORE_SWEEP_SECONDS)
FAULTS = {
    "VISIBILITY_TIMEOUT": str(VISIBILITY), "FAILURE_RATE": "0.1", "PERMANENT_FAILURE_RATE": "0.02",
    "RETRY_BACKOFF_BASE": "3",  # retries wait 3, 6, 12 s: some are always held, waiting
}  # fmt: skip


def holdings(client: redis.Redis) -> dict[str, int]:
    """orderId -> its retry count, of every message delivered and not acknowledged (the task id is the
    orderId)."""
    held = {}
    for raw in client.hvals(UNACKED):
        headers = json.loads(raw)[0]["headers"]
        held[headers["id"]] = int(headers.get("retries") or 0)
    return held


def settled_ids(client: redis.Redis, order_ids: list[str]) -> set[str]:
    """Orders counted, or dead-lettered with the DLQ's acknowledgement."""
    layout = read_layout(client)
    pipe = client.pipeline(transaction=False)
    for order_id in order_ids:
        pipe.exists(seen_key(order_id, layout))
        pipe.hget(dead_key(order_id, layout), "state")
    answers = pipe.execute()
    return {
        order_id
        for order_id, counted, state in zip(order_ids, answers[::2], answers[1::2], strict=True)
        if counted or state == b"published"
    }


def in_failure_hook(worker: Service, since: int) -> bool:
    """The worker logged a dead letter it is publishing, after ``since`` characters of its log."""
    return "dead letter " in worker.log_path.read_text(errors="replace")[since:]


def test_a_worker_frozen_past_the_visibility_timeout_with_retries_and_a_dead_letter_in_hand(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p = cluster_pipeline
    network = p.network
    rate = profile.cluster_rate
    n = int(rate * (VISIBILITY + SWEEP + 10))
    s = Scenario("16", p, profile, reliability_report, seed=1616, **FAULTS)
    client = redis.Redis.from_url(s.redis_url)
    frozen_node: Node = net_node("worker")
    worker = p.start_worker(pool=pool, node=frozen_node, **s.env)
    s.bridge()
    producer = s.produce(n, rate)
    # Alone, it holds every message it took: wait until retries wait in its hands.
    wait_for(lambda: any(holdings(client).values()), 60, "retries held by the worker", interval=0.2)
    for kafka in p.kafka_nodes():
        network.cut(frozen_node, kafka)
    checker.history.record("cut", worker.name, "from every Kafka broker: its dead letters wait")
    log_mark = len(worker.log_path.read_text(errors="replace"))  # a letter logged from now on cannot go out
    # The first letter after the cut waits 5 s for Kafka (the next ones fail at once for 10 s): freeze
    # the worker in that wait, with retries held too.
    hands_full = lambda: in_failure_hook(worker, log_mark) and any(holdings(client).values())  # noqa: E731
    wait_for(hands_full, 60, "a dead letter and retries in the worker's hands", interval=0.02)

    worker.pause()
    frozen = checker.history.record("pause", worker.name, "SIGSTOP in its failure hook")
    held = holdings(client)
    assert _retries(held), "no retry held at the freeze: the scenario missed its point"
    for kafka in p.kafka_nodes():
        network.restore(frozen_node, kafka)
    other = s.worker(pool=pool)
    checker.history.record(
        "start", other.name, f"the frozen one holds {len(held)} ({_retries(held)} retries)"
    )
    wait_for(lambda: settled_ids(client, list(held)) == set(held), VISIBILITY + 3 * SWEEP + 30,
             "the frozen worker's orders settled by the other", interval=0.5)  # fmt: skip
    taken = checker.history.record("observed", other.name, "settled every order the frozen worker held")
    worker.resume()
    woke = checker.history.record("resume", worker.name, "SIGCONT")

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert worker.running() and other.running()
    notes = (
        f"{pool} pool; frozen {woke.at - frozen.at:.0f}s holding {len(held)} orders "
        f"({_retries(held)} retries waiting, 1 in its failure hook); the other worker settled them all "
        f"{taken.at - frozen.at:.1f}s "
        f"after the freeze (visibility timeout {VISIBILITY}s + sweep every {SWEEP}s)"
    )
    verdict = finish(s, checker, figures, n, notes, Fault(frozen, woke))
    checker.history.record("observed", "checker", f"dead letters sent twice: {verdict.dead_twice}")
    assert settled(s.aggregate) >= len(produced)


def _retries(held: dict[str, int]) -> int:
    return sum(1 for retries in held.values() if retries)
