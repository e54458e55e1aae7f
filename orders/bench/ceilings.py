"""The no-op ceilings of `orders bench`: how fast Celery drains tasks that do nothing, and at what CPU cost.

Four configurations: the project's own (its Celery settings and Redis transport), the same settings on
kombu's stock Redis transport, and a plain default Celery app (orders/bench/plain.py) with task
events off and on. Each drains the same pre-filled no-op messages with the same number of solo workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Literal

from bridge.handoff import create_sender
from orders.bench import plain
from orders.bench.cost import CostWindow, RunCost
from orders.bench.rig import STOCK, BenchError, Rig, Run
from orders.core.order import NOOP_TASK
from orders.core.queue_depth import QueueDepthReader, depth_reader
from orders.core.settings import Settings

Ceiling = Literal["project", "stock", "plain", "plain_events"]
POLL_SECONDS = 0.005
PREFILL_BATCH = 500


@dataclass(frozen=True)
class Measured:
    """One run's figure (orders or tasks per second), its cost, and any other figures it gives."""

    rate: float
    cost: RunCost | None = None
    figures: dict[str, float] = field(default_factory=dict)


def patience(n: int) -> float:
    """Seconds a run may take before it counts as stalled (generous: 100 orders/s plus start-up)."""
    return 120.0 + n / 100


def measure_ceiling(rig: Rig, n: int, workers: int, kind: Ceiling = "project") -> Measured:
    """Drain rate of ``n`` no-op tasks by ``workers`` solo workers, first to last completion.

    The queue is filled under a staging key while the workers start, then renamed into place in one
    step, so no worker drains alone while another is still booting. CPU: the workers and Redis, from
    the rename to the last acknowledgement.
    """
    run = rig.new_run(f"ceiling-{kind}")
    try:
        client = run.server()
        queue = plain.QUEUE if kind.startswith("plain") else run.queue
        staging = f"{run.queue}-staging"
        prefill_noops(run.settings, staging, n)
        if kind.startswith("plain"):
            rig.start_plain_workers(run, workers, events=kind == "plain_events")
        else:
            rig.start_workers(run, workers, {STOCK: "true" if kind == "stock" else "false"})
        rig.wait_ready(run)
        pids = {"workers": [w.pid for w in run.workers], "redis": rig.service_pids(run.lane).get("redis", [])}
        window = CostWindow(pids, client)
        window.start()
        with closing(depth_reader(run.settings.broker_url, queue)) as reader:
            client.rename(staging, queue)
            rate = _time_drain(reader, run, n)
        return Measured(rate, window.stop(n))
    finally:
        rig.end_run(run)


def prefill_noops(settings: Settings, queue: str, n: int) -> None:
    """``n`` no-op task messages in ``queue``, published in pipelined batches with one producer."""
    app = create_sender(settings)
    with app.producer_or_acquire() as producer:
        for start in range(0, n, PREFILL_BATCH):
            with producer.batch(PREFILL_BATCH):
                for _ in range(min(PREFILL_BATCH, n - start)):
                    app.send_task(NOOP_TASK, queue=queue, producer=producer, retry=False)
    with closing(depth_reader(settings.broker_url, queue)) as reader:
        if (depth := reader.depth()) != n:
            raise BenchError(f"pre-filled {depth} no-op tasks, expected {n}")


def _time_drain(reader: QueueDepthReader, run: Run, n: int) -> float:
    """Completed = n - waiting - unacknowledged (read together), timed from the rename.

    The plain app acknowledges on receipt (early acks), so up to its prefetch (4 per worker) count
    as done a moment before they run: 8 of n, under 0.1% of a 20,000-task run.
    """

    def completed() -> int:
        figures = reader.figures()
        return n - figures.waiting - (figures.unacknowledged or 0)

    return rate_until(
        n, completed, time.perf_counter(), run, lambda done: f"the no-op queue did not drain: {n - done} left"
    )


def rate_until(
    n: int, count: Callable[[], int], since: float, run: Run, stuck: Callable[[int], str]
) -> float:
    """Per second for ``count()`` to reach ``n``, polled every POLL_SECONDS: from the first poll that saw
    some of it to the one that saw all (from ``since`` if all of it came between two polls), so the
    start-up before the first item is not timed. Raises BenchError(``stuck(count)``) past patience(n).
    """
    first: tuple[float, int] | None = None
    deadline = since + patience(n)
    while (done := count()) < n:
        now = time.perf_counter()
        if first is None and done > 0:
            first = (now, done)
        if now > deadline:
            raise BenchError(stuck(done))
        run.check_alive()
        time.sleep(POLL_SECONDS)
    now = time.perf_counter()
    if first is None:
        return n / (now - since)
    started, done_before = first
    return (n - done_before) / (now - started)
