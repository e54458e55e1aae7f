"""One run of each `orders bench` pipeline measurement: drain, live end to end (full speed, paced, with
failures), the bridge alone and the blocking baseline. Each takes a fresh run from the rig."""

from __future__ import annotations

import os
import time
from contextlib import closing

import redis

from orders.bench.baseline import BlockingConsumer
from orders.bench.ceilings import POLL_SECONDS, Measured, patience, rate_until
from orders.bench.cost import CostWindow
from orders.bench.lanes import TANSU, Lane
from orders.bench.probe import Attempt, read_attempts
from orders.bench.producer import ProducerProcess
from orders.bench.rig import STOCK, BenchError, Rig, Run, wait_until
from orders.bench.timeline import Timeline, quantiles_ms
from orders.core.aggregate import Aggregate
from orders.core.celery_config import countdowns
from orders.core.codec import OrderCodec
from orders.core.kafka import create_consumer, create_registry_client
from orders.core.queue_depth import QueueDepthReader, depth_reader
from orders.core.redis_client import AnyRedis
from orders.core.shards import Layout, read_layout
from orders.stack.zipkin import spans_endpoint
from worker.aggregate import AggregateWriter
from worker.faults import FailureInjector

# Order ids of the failure runs and the baseline: the same orders and seed meet the same failures.
FAILURE_PREFIX = "f10"
FAILURE_RATE = 0.1


def _producer(rig: Rig, run: Run, n: int, rate: float, prefix: str) -> ProducerProcess:
    env = {**os.environ, **run.env}
    return ProducerProcess(env, n, rate, prefix, rig.kafka(run.lane).warm_up_topic)


def _pids(rig: Rig, run: Run) -> dict[str, list[int]]:
    return {**rig.service_pids(run.lane), **run.extra_pids, "bridge": [b.pid for b in run.bridges],
            "workers": [w.pid for w in run.workers]}  # fmt: skip


def _settled(client: AnyRedis, layout: Layout) -> int:
    """Orders counted or dead-lettered so far (two HGETs a shard: cheap enough to poll every few ms)."""
    pipe = client.pipeline(transaction=False)
    for shard in layout.all():
        pipe.hget(shard.totals, "count")
        pipe.hget(shard.counters, "dlq")
    return sum(int(v or 0) for v in pipe.execute())


def _wait_settled(run: Run, n: int) -> float:
    """Wait until ``n`` orders settled; the wall-clock time of the last aggregate write."""
    client = run.redis()
    layout = read_layout(client)  # the workers, started by now, laid out a fresh aggregate
    wait_until(lambda: _settled(client, layout) >= n, patience(n), f"{n} orders to settle", run, POLL_SECONDS)
    return max(float(entry["at"]) for entry in Aggregate(client).recent(50))


def measure_drain(
    rig: Rig, n: int, workers: int, lane: Lane = TANSU, stock: bool = False,
    bridge_env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None,
    worker_loglevel: str = "WARNING", shards: int | None = None,
) -> Measured:  # fmt: skip
    """A topic pre-filled with ``n`` orders; workers started, then the bridge; timed from the bridge
    joining its group to the last aggregate write. No producer in the clock or in the cost.

    ``stock``: the workers and the bridge on Celery and kombu as shipped (no fast path). ``shards``: the
    aggregate on the rig's Redis Cluster, laid out for that many shards (orders/bench/shards.py), with
    each primary's command time per order among the figures.
    """
    extra = {STOCK: "true"} if stock else {}
    extra |= {"AGGREGATE_SHARDS": str(shards)} if shards else {}
    run = rig.new_run("shards" if shards else "drain", lane, cluster_aggregate=bool(shards))
    try:
        _producer(rig, run, n, 0.0, "drain").run()
        rig.start_workers(run, workers, {**(worker_env or {}), **extra}, loglevel=worker_loglevel)
        rig.wait_ready(run)
        rig.start_bridge(run, **{**(bridge_env or {}), **extra})
        rig.wait_ready(run, interval=POLL_SECONDS)  # the bridge fetches as soon as it joined
        window = CostWindow(_pids(rig, run), redis.Redis.from_url(rig.settings.redis_url))
        nodes = rig.cluster().window() if shards else None
        window.start()
        if nodes is not None:
            nodes.start()
        started = time.time()
        last_write = _wait_settled(run, n)
        figures = nodes.stop(n) if nodes is not None else {}
        return Measured(n / max(last_write - started, 1e-3), window.stop(n), figures)
    finally:
        rig.end_run(run)


def traced_env(zipkin_url: str, ratio: float) -> dict[str, str]:
    """A bridge and workers exporting to Zipkin, sampling ``ratio`` of new traces (the drain's records
    carry no context, so each starts at the bridge and the workers follow its decision)."""
    return {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": spans_endpoint(zipkin_url),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
    }


def measure_e2e(
    rig: Rig, n: int, workers: int, lane: Lane = TANSU, rate: float = 0.0, failure_rate: float = 0.0,
    seed: int = 0, sentinel_aggregate: bool = False, worker_env: dict[str, str] | None = None,
) -> Measured:  # fmt: skip
    """Workers (probed) and bridge running, then ``n`` orders produced (at ``rate``/s, 0 = flat out).

    Rate = n / (last aggregate write - first send): the producer is inside the clock. With failures,
    the injector is seeded and the product's backoff (2, 4, 8 s) applies. Every order's timing comes
    from the probe (orders/bench/probe.py). ``sentinel_aggregate``: the aggregate on the rig's Sentinel set
    (orders/bench/sentinel.py), the broker apart.
    """
    faults = {"FAILURE_INJECTION": "true", "FAILURE_RATE": str(failure_rate), "FAILURE_SEED": str(seed)}
    faults = faults if failure_rate else {}
    prefix = FAILURE_PREFIX if failure_rate else "e2e"
    run = rig.new_run("fail" if failure_rate else "paced" if rate else "e2e", lane, sentinel_aggregate)
    try:
        rig.start_workers(run, workers, {**faults, **(worker_env or {})}, probe=True)
        rig.start_bridge(run)
        producer = _producer(rig, run, n, rate, prefix)  # warms up while the workers boot
        rig.wait_ready(run)
        window = CostWindow(_pids(rig, run), redis.Redis.from_url(rig.settings.redis_url))
        window.start()
        produced = producer.run()
        last_write = _wait_settled(run, n)
        cost = window.stop(n, {"producer": produced.cpu_seconds})
        run.stop_workers()
        timeline = Timeline.of(read_attempts(run.dir))
        _check_complete(timeline, prefix, n)
        figures = _timing_figures(timeline, produced.started, rate, bool(failure_rate))
        figures["failed_share"] = _failed_share(read_attempts(run.dir))
        return Measured(n / max(last_write - produced.started, 1e-3), cost, figures)
    finally:
        rig.end_run(run)


def _check_complete(timeline: Timeline, prefix: str, n: int) -> None:
    missing = timeline.missing(f"{prefix}-{seq:06d}" for seq in range(1, n + 1))
    if missing:
        raise BenchError(f"the probe saw {len(missing)} of {n} orders not settle, e.g. {missing[:3]}")


def _timing_figures(timeline: Timeline, started: float, rate: float, failures: bool) -> dict[str, float]:
    figures = {"intake": timeline.intake_rate(started)}
    if failures:
        figures["settle_after_intake_s"] = timeline.settling_after_intake()
        figures["result"] = timeline.result_rate(started)
    waits = timeline.latencies_from_schedule(started, rate) if rate else timeline.waits_from_record()
    figures.update({f"latency_{name}": value for name, value in quantiles_ms(waits).items()})
    return figures


def _failed_share(attempts: list[Attempt]) -> float:
    failed = sum(1 for a in attempts if a.state != "SUCCESS")
    return 100.0 * failed / max(len(attempts), 1)


def measure_bridge(rig: Rig, n: int) -> Measured:
    """Hand-off rate with no worker: ``n`` orders pre-produced, then the bridge started.

    Rate from the first batch landing in the Celery queue to the last; with a single batch, from
    the bridge's readiness. CPU of the bridge, the broker and Redis over the same window.
    """
    run = rig.new_run("bridge")
    try:
        _producer(rig, run, n, 0.0, "bridge").run()
        rig.start_bridge(run, MAX_QUEUE_DEPTH=str(2 * n + 1000))
        rig.wait_ready(run, interval=POLL_SECONDS)
        window = CostWindow(_pids(rig, run), redis.Redis.from_url(rig.settings.redis_url))
        window.start()
        with closing(depth_reader(run.settings.broker_url, run.queue)) as reader:
            rate = _time_fill(reader, run, n, time.perf_counter())
        return Measured(rate, window.stop(n))
    finally:
        rig.end_run(run)


def _time_fill(reader: QueueDepthReader, run: Run, n: int, ready: float) -> float:
    return rate_until(
        n, reader.depth, ready, run, lambda depth: f"the bridge handed off {depth} of {n} orders"
    )


def measure_baseline(rig: Rig, n: int, seed: int) -> Measured:
    """The blocking consumer over the first ``n`` orders of the failure runs, same seed and schedule."""
    run = rig.new_run("baseline")
    try:
        settings = run.settings
        _producer(rig, run, n, 0.0, FAILURE_PREFIX).run()
        rig.wait_ready(run)  # no children of its own; the last run's must be gone
        consumer = create_consumer(settings)
        backoff = tuple(float(countdown) for countdown in countdowns(settings))  # the workers' own
        baseline = BlockingConsumer(
            consumer,
            settings.orders_topic,
            OrderCodec(create_registry_client(settings), settings.orders_topic),
            AggregateWriter(run.redis(), settings.dedupe_ttl_seconds),
            FailureInjector(transient_rate=FAILURE_RATE, seed=seed),
            backoff=backoff,
        )
        try:
            result = baseline.run(limit=n, max_seconds=60 + n * sum(backoff))
        finally:
            consumer.close()
        attempts = result.done + result.failed_attempts - result.gave_up
        share = 100.0 * result.failed_attempts / max(attempts, 1)
        return Measured(result.rate, figures={"failed_share": share, "orders": result.done})
    finally:
        rig.end_run(run)
