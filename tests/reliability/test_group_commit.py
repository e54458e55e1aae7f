"""Scenario 23: group commit on the solo pool (worker/group_commit.py), through each of its windows.

One run, one backlog: first the aggregate Redis refuses every write (NOREPLICAS) while a worker runs, and
every tick it flushes must be handed back (nothing counted, nothing acknowledged, copies marked
redelivered on the broker); then a worker is SIGKILLed at each point of a flush (ORDERS_TEST_KILL_AT:
before the flush, after the writes and WAIT, after the flush settled with the acks not yet sent); a
last worker finishes. The end state, read back independently (orders topic, DLQ, Redis): lost 0,
counted twice 0, average exact. Solo only: prefork never group-commits (test_worker_crash.py kills
prefork workers).
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest
import redis

from orders.stack.processes import worker_argv
from orders.stack.supervisor import Service, free_port, wait_for
from tests.conftest import Pipeline
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]
ORDERS = 400
WINDOWS = ("before_flush", "after_writes", "after_wait")
# The floor on the fast path (a 15 s task limit + the 5 s lease renewal) + 1: killed workers' orders
# come back within ~31 s (the sweep runs every 10 s).
VISIBILITY = "21"


def test_group_commit_hands_back_refused_writes_and_loses_nothing_in_any_window(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, own_redis
) -> None:  # type: ignore[no-untyped-def]
    aggregate_redis = own_redis()
    broker_url = pipeline.env[
        "REDIS_URL"
    ]  # the broker stays on the session Redis: only writes to the aggregate fail
    s = Scenario("23", pipeline, profile, reliability_report, seed=2301, REDIS_URL=f"{aggregate_redis.url}/0",
                 CELERY_BROKER_URL=broker_url, VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    broker = redis.Redis.from_url(broker_url)
    s.bridge()
    producer = s.produce(ORDERS)
    produced = s.produced(producer, ORDERS)
    wait_for(s.drained(producer), 60, "every order handed to the Celery queue")

    refused = _refused_phase(s, redis.Redis(port=aggregate_redis.port), broker)
    killed = [_killed_at(s, point, broker) for point in WINDOWS]
    s.worker()
    figures = s.settle(produced, timeout=150)
    s.finish(figures, f"solo; refused: {refused} messages handed back; killed holding {killed} messages "
                      f"({', '.join(WINDOWS)})")  # fmt: skip


def _refused_phase(s: Scenario, aggregate: redis.Redis, broker: redis.Redis) -> int:
    """The aggregate refuses writes: each flush hands its tick back; nothing is counted or lost."""
    queue = s.pipeline.env["CELERY_QUEUE"]
    aggregate.config_set("min-replicas-to-write", 1)
    worker = _start(s)
    try:
        waiting = lambda: broker.llen(queue) + broker.hlen("unacked")  # noqa: E731
        # Two ticks handed back, or a message gone (acknowledged although its write was refused).
        wait_for(lambda: _redelivered(broker, queue) >= 8 or waiting() < ORDERS, 60, "ticks handed back",
                 interval=0.2)  # fmt: skip
        assert s.aggregate.snapshot().count == 0, "counted while the aggregate refused every write"
        assert waiting() >= ORDERS, (
            f"{ORDERS - waiting()} messages acknowledged while every write was refused"
        )
        handed_back = _redelivered(broker, queue)
    finally:
        worker.kill()
        aggregate.config_set("min-replicas-to-write", 0)
    return handed_back


def _killed_at(s: Scenario, point: str, broker: redis.Redis) -> int:
    """A worker that SIGKILLs itself at ``point`` of its first flush; how many messages it left unacked."""
    worker = _start(s, ORDERS_TEST_KILL_AT=point)
    wait_for(lambda: not worker.running(), 60, f"the worker to kill itself {point}", interval=0.1)
    assert worker.proc is not None and worker.proc.returncode == -signal.SIGKILL, worker.tail()
    assert f"ORDERS_TEST_KILL_AT={point}" in worker.tail(200), worker.tail()
    return int(broker.hlen("unacked"))


def _start(s: Scenario, **env: str) -> Service:
    """A solo worker, not waited for: one that kills itself may be gone before its /healthz answers."""
    argv = worker_argv(f"gc-{uuid.uuid4().hex[:6]}", "--without-mingle", pool="solo")
    return s.pipeline.start(
        "worker", argv, lambda _s: True, **{**s.env, "METRICS_PORT": str(free_port()), **env}
    )


def _redelivered(broker: redis.Redis, queue: str) -> int:
    """Messages on the queue that were handed back (kombu marks a restored message redelivered)."""
    return sum(
        1 for raw in broker.lrange(queue, 0, -1)
        if json.loads(raw)["properties"]["delivery_info"].get("redelivered")
    )  # fmt: skip
