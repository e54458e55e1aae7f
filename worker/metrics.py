"""Prometheus metrics of the workers: outcomes, attempts, processing time, DLQ publishes.

Served by the worker process on METRICS_PORT. With the solo pool (our layout) that process runs the
tasks; with prefork, set PROMETHEUS_MULTIPROC_DIR so the children's figures are merged.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

OUTCOMES = Counter(
    "orders_task_outcomes",
    "Task attempts by outcome: succeeded, duplicate, retried, dead_lettered, requeued",
    ["outcome"],
)
ATTEMPTS = Histogram(
    "orders_task_attempts", "Attempts an order took until it settled", buckets=(1, 2, 3, 4, 5, 8, 13)
)
PROCESSING = Histogram("orders_task_processing_seconds", "Time spent in one task attempt")
DLQ_PUBLISHES = Counter("orders_dlq_publishes", "Dead letters the workers published", ["result"])
LATENCY = Histogram(
    "orders_end_to_end_latency_seconds",
    "From the producer's record timestamp to the order being counted in the aggregate",
    buckets=(0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 30),
)
