"""Scenario 7: sustained load for a configurable time; memory of bridge, worker and Redis bounded, lag flat.

Resident memory comes from /proc/<pid>/status (VmRSS). The backlog is the consumer group's lag on
the orders topic plus the Celery queue's length: if the pipeline fell behind, it would grow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from tests.conftest import Pipeline
from tests.harness import services
from tests.reliability.probes import consumer_lag, rss_kib
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]

MIB = 1024
PROCESS_GROWTH_KIB = 48 * MIB  # a Python process may settle in after warm-up, but not keep growing
REDIS_BYTES_PER_ORDER = 1024  # each counted order leaves a dedupe marker for DEDUPE_TTL_SECONDS


@dataclass
class Sample:
    at: float
    bridge: int
    worker: int
    redis: int
    backlog: int


def third(samples: list[Sample], which: int) -> list[Sample]:
    size = max(1, len(samples) // 3)
    return samples[which * size : (which + 1) * size] if which < 2 else samples[-size:]


def mean(values: list[int]) -> float:
    return sum(values) / len(values)


def test_soak_memory_bounded_and_lag_flat(
    pipeline: Pipeline,
    profile: Profile,
    reliability_report: ScenarioRows,
    own_redis: Callable[..., services.Running],
) -> None:
    server = own_redis("--appendonly", "yes", "--appendfsync", "everysec")  # as docker-compose runs it
    client = redis.Redis(port=server.port)
    s = Scenario("7", pipeline, profile, reliability_report, seed=707, REDIS_URL=f"{server.url}/0")
    worker, bridge = s.worker(), s.bridge()
    n, rate = profile.soak_seconds * profile.soak_rate, profile.soak_rate
    memory_before = int(client.info("memory")["used_memory"])
    producer = s.produce(n, rate=rate)
    queue, group = pipeline.env["CELERY_QUEUE"], pipeline.env["CONSUMER_GROUP"]
    interval = max(2.0, profile.soak_seconds / 60)
    samples: list[Sample] = []
    started = time.monotonic()
    while producer.running() and time.monotonic() - started < profile.soak_seconds * 2:
        lag = consumer_lag(s.bootstrap, pipeline.orders_topic, group)
        pids = (bridge.pid, worker.pid, server.service.pid)
        samples.append(Sample(time.monotonic() - started, *map(rss_kib, pids), lag + int(client.llen(queue))))
        time.sleep(interval)  # the sampling period
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert bridge.running() and worker.running()

    warm = third(samples, 0)[-1]  # after a third of the run: imports done, buffers and pools filled
    peak = {name: max(getattr(x, name) for x in samples) for name in ("bridge", "worker", "redis")}
    per_order = (int(client.info("memory")["used_memory"]) - memory_before) / n
    backlog_first, backlog_last = (
        mean([x.backlog for x in third(samples, 0)]),
        mean([x.backlog for x in third(samples, 2)]),
    )
    rss = "; ".join(f"{name} {getattr(samples[0], name) // MIB}→{peak[name] // MIB} MiB" for name in peak)
    s.finish(
        figures,
        f"{profile.soak_seconds}s at {rate}/s, {len(samples)} samples; RSS start→peak: {rss}; Redis "
        f"{per_order:.0f} B/order (dedupe markers); backlog (lag + queue) mean {backlog_first:.0f} in the "
        f"first third, {backlog_last:.0f} in the last, max {max(x.backlog for x in samples)}",
    )
    assert peak["bridge"] - warm.bridge <= PROCESS_GROWTH_KIB, samples
    assert peak["worker"] - warm.worker <= PROCESS_GROWTH_KIB, samples
    assert peak["redis"] - warm.redis <= PROCESS_GROWTH_KIB + n * REDIS_BYTES_PER_ORDER // 1024, samples
    assert per_order <= REDIS_BYTES_PER_ORDER
    # Not growing: the last third's backlog is no bigger than the first's, give or take the 5 s
    # between librdkafka's offset commits (the lag is measured on committed offsets).
    assert backlog_last <= backlog_first + 5 * rate, samples
    assert max(x.backlog for x in samples) <= 20 * rate, samples
