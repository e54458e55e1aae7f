"""Scenario 1: the only worker SIGKILLed several times during a run of >= 5,000 orders, retries in flight."""

from __future__ import annotations

import json
import time

import pytest
import redis

from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.probes import settled
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]

UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages (redeliverable)


def held_messages(client: redis.Redis) -> tuple[int, int]:
    """(messages a worker holds unacknowledged, how many of them are retries waiting for their countdown)."""
    held = client.hvals(UNACKED)
    retries = sum(1 for raw in held if json.loads(raw)[0]["headers"].get("retries", 0) > 0)
    return len(held), retries


def test_worker_sigkilled_repeatedly_with_retries_in_flight(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str
) -> None:
    n = profile.worker_kill_orders
    assert n >= 5000
    s = Scenario("1", pipeline, profile, reliability_report, seed=101)
    worker = s.worker(pool=pool)
    s.bridge()
    produced = s.produced(s.produce(n), n)
    aggregate, client = s.aggregate, redis.Redis.from_url(s.redis_url)
    # Kills spread over what is left to do, each with retries held by the worker (waiting their countdown).
    start = settled(aggregate)
    step = (n - start) // (profile.worker_kills + 2)
    held_at_kills = []
    last_kill = 0.0
    for kill in range(1, profile.worker_kills + 1):
        wait_for(
            lambda k=kill: settled(aggregate) >= start + k * step and held_messages(client)[1] > 0,
            180, f"{kill * step} more orders settled and retries held by the worker", interval=0.2,
        )  # fmt: skip
        held_at_kills.append(held_messages(client))
        worker.kill()
        last_kill = time.monotonic()
        worker = s.worker(pool=pool)
        s.recovery.measure(
            f"kill {kill}", last_kill, lambda: settled(aggregate), 120, lambda: settled(aggregate) >= n
        )

    figures = s.settle(produced, timeout=240)
    drained = time.monotonic() - last_kill
    held = sum(h for h, _ in held_at_kills)
    retries = sum(r for _, r in held_at_kills)
    s.finish(
        figures,
        f"{pool} pool; {profile.worker_kills} kills; the killed worker held {held} orders "
        f"({retries} retries waiting); all settled {drained:.0f}s after the last kill; retries scheduled: "
        f"{aggregate.snapshot().counters['retry_attempts']:,}",
    )
