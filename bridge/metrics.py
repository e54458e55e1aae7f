"""Prometheus metrics of the bridge, and the running average read from Redis at scrape time.

Served with ``orders.core.metrics_server`` on the bridge's METRICS_PORT, beside its /healthz.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import get_args

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orders.core.aggregate import Aggregate
from orders.core.errors import Stage
from orders.core.queue_depth import QueueDepthReader, QueueDepthUnavailable

log = logging.getLogger(__name__)

CONSUMED = Counter("orders_bridge_consumed", "Records read from the orders topic")
HANDED_OFF = Counter("orders_bridge_handed_off", "Orders accepted by the Celery broker")
DEAD_LETTERS = Counter("orders_bridge_dead_letters", "Records dead-lettered by the bridge", ["stage"])
CONSUMER_REPLACED = Counter(
    "orders_bridge_consumer_replaced", "Kafka consumers replaced after staying out of their group"
)
PAUSED = Gauge("orders_bridge_paused", "1 while backpressure pauses the bridge's partitions")
LAG = Gauge("orders_bridge_consumer_lag", "Records behind the partition's end", ["topic", "partition"])
# Every stage from the start, at 0: a dashboard's "DLQ by stage" and an alert's rate() need the series
# to exist before the first dead letter.
for _stage in get_args(Stage):
    DEAD_LETTERS.labels(_stage)


def record_lag_from_stats(stats_json: str) -> None:
    """librdkafka's statistics callback: per-partition consumer lag, as librdkafka computes it."""
    stats = json.loads(stats_json)
    for topic, topic_stats in stats.get("topics", {}).items():
        for partition, p in topic_stats.get("partitions", {}).items():
            if partition == "-1" or p.get("consumer_lag", -1) < 0:
                continue  # -1 is librdkafka's internal UA partition; a negative lag is "unknown"
            LAG.labels(topic, partition).set(p["consumer_lag"])


class AggregateCollector(Collector):
    """The shared running average and counters, read from Redis when Prometheus scrapes."""

    def __init__(self, aggregate: Aggregate) -> None:
        self._aggregate = aggregate

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._aggregate.snapshot()
        yield GaugeMetricFamily("orders_aggregate_count", "Orders counted in the average", value=snap.count)
        yield GaugeMetricFamily(
            "orders_aggregate_average_price", "All-time average price", value=float(snap.average or 0)
        )
        yield GaugeMetricFamily(
            "orders_aggregate_last100_average_price",
            "Average price of the last 100 orders",
            value=float(snap.last100_average or 0),
        )
        counters = GaugeMetricFamily(
            "orders_aggregate_events", "Pipeline counters in Redis", labels=["event"]
        )
        for name, value in snap.counters.items():
            counters.add_metric([name], value)
        yield counters
        stages = GaugeMetricFamily(
            "orders_aggregate_dead_letters",
            "Dead letters by stage, in Redis (all processes)",
            labels=["stage"],
        )
        for stage, value in snap.dlq_stages.items():
            stages.add_metric([stage], value)
        yield stages


class QueueCollector(Collector):
    """The Celery queue's length and the backpressure bound, read from the broker when Prometheus scrapes.

    Read at scrape time (one reading every scrape interval), not from the bridge's own estimate, so
    every bridge reports the queue as it is. A broker that does not answer, Redis or RabbitMQ, leaves
    the depth out of that scrape rather than failing the whole page. The reader may be the bridge
    loop's too: readers are safe to share between threads (orders/core/queue_depth.py).
    """

    def __init__(self, reader: QueueDepthReader, bound: int) -> None:
        self._reader = reader
        self._bound = bound

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "orders_bridge_max_queue_depth",
            "MAX_QUEUE_DEPTH: the bridge pauses at this Celery queue length",
            value=self._bound,
        )
        try:
            depth = self._reader.depth()
        except QueueDepthUnavailable as exc:
            log.warning("queue depth not read for /metrics: %s", exc)
            return
        yield GaugeMetricFamily(
            "orders_bridge_queue_depth", "Messages waiting in the Celery queue", value=depth
        )
