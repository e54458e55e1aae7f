"""Scenario 7: sustained load for a configurable time; every process's memory bounded, lag flat.

Every process of the stack is sampled: bridge, worker, Redis, Flower and the web dashboard. Resident
memory comes from /proc/<pid>/status (VmRSS). Flower keeps up to --max_tasks tasks in memory (~6 KB
each); with its default of 100,000 it grew without bound here, so it runs with a small bound and must
stay flat once it holds that many. The backlog is the consumer group's lag on the orders topic plus
the Celery queue's length: if the pipeline fell behind, it would grow.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from orders.stack.processes import flower_argv
from orders.stack.supervisor import Service, free_port, port_open
from tests.conftest import Pipeline
from tests.harness import services
from tests.reliability.probes import consumer_lag, rss_kib
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]

MIB = 1024
PROCESS_GROWTH_KIB = 48 * MIB  # a Python process may settle in after warm-up, but not keep growing
# Flower holds at most SOAK_FLOWER_TASKS tasks, reached before the warm-up point of the long profile:
# from there on it must stay flat. Unbounded, it gained ~6 KB a task (~40 MB over the long soak's rest).
SOAK_FLOWER_TASKS = 1000
FLOWER_GROWTH_KIB = 16 * MIB
REDIS_BYTES_PER_ORDER = 1024  # each counted order leaves a dedupe marker for DEDUPE_TTL_SECONDS
PROCESSES = ("bridge", "worker", "redis", "flower", "dashboard")


@dataclass
class Sample:
    at: float
    rss: dict[str, int] = field(default_factory=dict)  # KiB per process
    backlog: int = 0


def third(samples: list[Sample], which: int) -> list[Sample]:
    size = max(1, len(samples) // 3)
    return samples[which * size : (which + 1) * size] if which < 2 else samples[-size:]


def mean(values: list[int]) -> float:
    return sum(values) / len(values)


def start_monitoring(s: Scenario) -> tuple[Service, Service]:
    """Flower (bounded as `orders up` bounds it, smaller) and the dashboard, on this scenario's Redis."""
    flower_port, dashboard_port = free_port(), free_port()
    flower = s.pipeline.start(
        "flower", flower_argv(flower_port, SOAK_FLOWER_TASKS), lambda _s: port_open(flower_port), **s.env
    )
    dashboard_argv = [sys.executable, "-m", "orders.cli", "dashboard", "--host", "127.0.0.1",
                      "--port", str(dashboard_port)]  # fmt: skip
    dashboard = s.pipeline.start("dashboard", dashboard_argv, lambda _s: port_open(dashboard_port), **s.env)
    return flower, dashboard


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
    flower, dashboard = start_monitoring(s)
    pids = dict(
        zip(PROCESSES, (bridge.pid, worker.pid, server.service.pid, flower.pid, dashboard.pid), strict=True)
    )
    n, rate = profile.soak_seconds * profile.soak_rate, profile.soak_rate
    memory_before = int(client.info("memory")["used_memory"])
    producer = s.produce(n, rate=rate)
    queue, group = pipeline.env["CELERY_QUEUE"], pipeline.env["CONSUMER_GROUP"]
    interval = max(2.0, profile.soak_seconds / 60)
    samples: list[Sample] = []
    started = time.monotonic()
    while producer.running() and time.monotonic() - started < profile.soak_seconds * 2:
        lag = consumer_lag(s.bootstrap, pipeline.orders_topic, group)
        rss = {name: rss_kib(pid) for name, pid in pids.items()}
        samples.append(Sample(time.monotonic() - started, rss, lag + int(client.llen(queue))))
        time.sleep(interval)  # the sampling period
    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert all(p.running() for p in (bridge, worker, flower, dashboard))

    warm = third(samples, 0)[-1]  # after a third of the run: imports done, buffers and pools filled
    peak = {name: max(x.rss[name] for x in samples) for name in PROCESSES}
    per_order = (int(client.info("memory")["used_memory"]) - memory_before) / n
    backlog_first, backlog_last = (
        mean([x.backlog for x in third(samples, 0)]),
        mean([x.backlog for x in third(samples, 2)]),
    )
    rss = "; ".join(f"{name} {samples[0].rss[name] // MIB}→{peak[name] // MIB} MiB" for name in PROCESSES)
    s.finish(
        figures,
        f"{profile.soak_seconds}s at {rate}/s, {len(samples)} samples; RSS start→peak: {rss}; Redis "
        f"{per_order:.0f} B/order (dedupe markers); backlog (lag + queue) mean {backlog_first:.0f} in the "
        f"first third, {backlog_last:.0f} in the last, max {max(x.backlog for x in samples)}",
    )
    for name in ("bridge", "worker", "dashboard"):
        assert peak[name] - warm.rss[name] <= PROCESS_GROWTH_KIB, (name, samples)
    assert peak["flower"] - warm.rss["flower"] <= FLOWER_GROWTH_KIB, samples
    assert peak["redis"] - warm.rss["redis"] <= PROCESS_GROWTH_KIB + n * REDIS_BYTES_PER_ORDER // 1024, (
        samples
    )
    assert per_order <= REDIS_BYTES_PER_ORDER
    # Not growing: the last third's backlog is no bigger than the first's, give or take the 5 s
    # between librdkafka's offset commits (the lag is measured on committed offsets).
    assert backlog_last <= backlog_first + 5 * rate, samples
    assert max(x.backlog for x in samples) <= 20 * rate, samples
