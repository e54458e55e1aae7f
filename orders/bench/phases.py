"""One run of each `orders bench` measurement: the no-op ceiling, end to end (with latency), the bridge
alone and the blocking baseline. Each takes a fresh run from the rig and returns its figure."""

from __future__ import annotations

import itertools
import random
import threading
import time
import urllib.request
from dataclasses import dataclass

import redis

from bridge.handoff import create_sender
from orders.bench.baseline import BlockingConsumer
from orders.bench.rig import BenchError, Rig, Run, Worker, wait_until
from orders.bench.stats import histogram_quantile, merge_histograms, observations, parse_histogram
from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.kafka import create_consumer, create_producer, create_registry_client
from orders.core.order import NOOP_TASK, Order
from orders.core.settings import Settings
from orders.produce import OrderProducer, Pacer, random_orders
from worker.aggregate import AggregateWriter
from worker.faults import FailureInjector

LATENCY_METRIC = "orders_end_to_end_latency_seconds"
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
POLL_SECONDS = 0.005
PREFILL_BATCH = 500
# kombu's Redis transport keeps delivered, not yet acknowledged messages in this hash.
UNACKED_KEY = "unacked"
BASELINE_FAILURE_RATE = 0.1


@dataclass(frozen=True)
class E2eRun:
    rate: float
    latency_ms: dict[str, float]  # p50/p95/p99, bucket-interpolated


def _patience(n: int) -> float:
    """Seconds a run may take before it counts as stalled (generous: 100 orders/s plus start-up)."""
    return 120.0 + n / 100


# -- ceiling -------------------------------------------------------------------------------------


def measure_ceiling(rig: Rig, n: int, workers: int, stock: bool = False) -> float:
    """Drain rate of ``n`` no-op tasks by ``workers`` solo workers, first to last completion.

    The queue is filled under a staging key while the workers start, then renamed into place in one
    step, so no worker drains alone while another is still booting.
    """
    run = rig.new_run("ceiling-stock" if stock else "ceiling")
    try:
        client = run.redis()
        staging = f"{run.queue}-staging"
        prefill_noops(run.settings, staging, n)
        rig.start_workers(run, workers, ORDERS_STOCK_TRANSPORT="1" if stock else "0")
        rig.wait_ready(run)
        client.rename(staging, run.queue)
        return _time_drain(client, run, n)
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
    if (depth := int(redis.Redis.from_url(settings.broker_url).llen(queue))) != n:  # type: ignore[arg-type]
        raise BenchError(f"pre-filled {depth} no-op tasks, expected {n}")


def _time_drain(client: redis.Redis, run: Run, n: int) -> float:
    """Completed = n - waiting - unacknowledged; rate from the first completion seen to the last."""
    renamed = now = time.perf_counter()
    first: tuple[float, int] | None = None
    deadline = renamed + _patience(n)
    while True:
        pipe = client.pipeline(transaction=True)
        pipe.llen(run.queue)
        pipe.hlen(UNACKED_KEY)
        waiting, unacked = pipe.execute()
        now = time.perf_counter()
        done = n - waiting - unacked
        if first is None and done > 0:
            first = (now, done)
        if waiting == 0 and unacked == 0:
            break
        if now > deadline:
            raise BenchError(f"the no-op queue did not drain: {waiting} waiting, {unacked} unacked")
        run.check_alive()
        time.sleep(POLL_SECONDS)
    assert first is not None
    started, done_before = first
    if done_before >= n:  # all of it finished between two polls: time it from the rename
        return n / (now - renamed)
    return (n - done_before) / (now - started)


# -- end to end ----------------------------------------------------------------------------------


def measure_e2e(rig: Rig, n: int, workers: int, failure_rate: float = 0.0, rate: float = 0.0) -> E2eRun:
    """Workers and bridge running, ``n`` orders produced (at ``rate``/s, 0 = flat out).

    Rate = n / (last aggregate update - first produce); an order settles when counted or
    dead-lettered. Latency comes from the workers' histogram, producer timestamp -> counted.
    """
    run = rig.new_run(f"e2e-{workers}w")
    try:
        faults = {"FAILURE_INJECTION": "true", "FAILURE_RATE": str(failure_rate), "RETRY_BACKOFF_BASE": "0"}
        faults = faults if failure_rate else {}
        started_workers = rig.start_workers(run, workers, **faults)
        rig.start_bridge(run)
        rig.wait_ready(run)
        aggregate = Aggregate(run.redis())
        first_produce = produce(order_producer(run.settings, rig.warm_up_topic), n, rate)

        def settled() -> bool:
            snapshot = aggregate.snapshot()
            return snapshot.count + snapshot.counters["dlq"] >= n

        wait_until(settled, _patience(n), f"{n} orders to settle", run)
        last_update = max(float(entry["at"]) for entry in aggregate.recent(50))
        latency = scrape_latency(started_workers, aggregate.snapshot().count)
        return E2eRun(n / max(last_update - first_produce, 1e-3), latency)
    finally:
        rig.end_run(run)


def order_producer(settings: Settings, warm_up_topic: str) -> OrderProducer:
    """The bench's producer, warm before any timing starts: schema registered, one record delivered.

    A cold idempotent producer holds its first record ~0.5 s (connection, metadata, producer id);
    that start-up belongs to the demo producer, not the pipeline, so it is paid on a side topic.
    """
    codec = OrderCodec(create_registry_client(settings), settings.orders_topic)
    codec.encode(Order("bench-warm-up", "Laptop", 100))
    producer = create_producer(settings)
    producer.produce(warm_up_topic, b"warm-up")
    if producer.flush(30):
        raise BenchError(f"the Kafka producer could not deliver to {warm_up_topic}")
    return OrderProducer(producer, codec, settings.orders_topic)


def produce(sender: OrderProducer, n: int, rate: float = 0.0) -> float:
    """Send ``n`` random orders and wait for their delivery; returns the wall-clock time of the first."""
    pacer, never = Pacer(rate), threading.Event()
    started = time.time()
    for order in itertools.islice(random_orders(random.Random()), n):
        sender.send(order)
        pacer.wait(never)
    unreported = sender.finish()
    if unreported or sender.tally.failed:
        raise BenchError(
            f"{sender.tally.failed + unreported} orders not delivered: {sender.tally.last_error}"
        )
    return started


def scrape_latency(workers: list[Worker], expected: int, timeout: float = 5.0) -> dict[str, float]:
    """p50/p95/p99 in ms from every worker's histogram, summed bucket by bucket.

    Waits (briefly) until the histograms hold ``expected`` observations: a worker observes just
    after counting, so the last order may be counted a moment before it is observed.
    """
    deadline = time.monotonic() + timeout
    while True:
        buckets = merge_histograms(
            parse_histogram(_metrics_page(w.metrics_port), LATENCY_METRIC) for w in workers
        )
        if observations(buckets) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not observations(buckets):
        return {}
    return {name: histogram_quantile(q, buckets) * 1000 for name, q in QUANTILES.items()}


def _metrics_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


# -- bridge alone ------------------------------------------------------------------------------


def measure_bridge(rig: Rig, n: int) -> float:
    """Hand-off rate with no worker: ``n`` orders pre-produced, then the bridge started.

    Rate from the first batch landing in the Celery queue to the last; with a single batch, from
    the bridge's readiness.
    """
    run = rig.new_run("bridge")
    try:
        produce(order_producer(run.settings, rig.warm_up_topic), n)
        rig.start_bridge(run, MAX_QUEUE_DEPTH=str(2 * n + 1000))
        rig.wait_ready(run)
        return _time_fill(run.redis(), run, n, time.perf_counter())
    finally:
        rig.end_run(run)


def _time_fill(client: redis.Redis, run: Run, n: int, ready: float) -> float:
    first: tuple[float, int] | None = None
    deadline = ready + _patience(n)
    while True:
        depth = int(client.llen(run.queue))  # type: ignore[arg-type]
        now = time.perf_counter()
        if first is None and depth > 0:
            first = (now, depth)
        if depth >= n:
            break
        if now > deadline:
            raise BenchError(f"the bridge handed off {depth} of {n} orders")
        run.check_alive()
        time.sleep(POLL_SECONDS)
    assert first is not None
    started, landed = first
    if landed >= n:
        return n / (now - ready)
    return (n - landed) / (now - started)


# -- baseline ----------------------------------------------------------------------------------


def measure_baseline(rig: Rig, n: int, seconds: float) -> float:
    """The blocking consumer's orders/s over ``seconds``, at a 10% transient failure rate."""
    run = rig.new_run("baseline")
    try:
        settings = run.settings
        produce(order_producer(settings, rig.warm_up_topic), n)
        rig.wait_ready(run)  # no children of its own; the last run's must be gone
        consumer = create_consumer(settings, **rig.consumer_options)
        baseline = BlockingConsumer(
            consumer,
            settings.orders_topic,
            OrderCodec(create_registry_client(settings), settings.orders_topic),
            AggregateWriter(run.redis(), settings.dedupe_ttl_seconds),
            FailureInjector(transient_rate=BASELINE_FAILURE_RATE),
        )
        try:
            result = baseline.run(seconds, limit=n)
        finally:
            consumer.close()
        return result.rate
    finally:
        rig.end_run(run)
