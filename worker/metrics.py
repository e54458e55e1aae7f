"""Prometheus metrics of the workers: outcomes, attempts, processing time, DLQ publishes, group commits.

Served by the worker process on METRICS_PORT. With the solo pool (our layout) that process runs the
tasks; with prefork, set PROMETHEUS_MULTIPROC_DIR so the children's figures are merged.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Histogram

from orders.core.errors import Stage

OUTCOME_NAMES = ("succeeded", "duplicate", "retried", "dead_lettered", "requeued")
OUTCOMES = Counter(
    "orders_task_outcomes", f"Task attempts by outcome: {', '.join(OUTCOME_NAMES)}", ["outcome"]
)
ATTEMPTS = Histogram(
    "orders_task_attempts", "Attempts an order took until it settled", buckets=(1, 2, 3, 4, 5, 8, 13)
)
PROCESSING = Histogram("orders_task_processing_seconds", "Time spent in one task attempt")
DLQ_PUBLISHES = Counter("orders_dlq_publishes", "Dead letters the workers published", ["result"])
DEAD_LETTERS = Counter("orders_task_dead_letters", "Orders the workers dead-lettered, by stage", ["stage"])
LATENCY = Histogram(
    "orders_end_to_end_latency_seconds",
    "From the producer's record timestamp to the order being counted in the aggregate",
    buckets=(0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 30),
)
# Group commit on the solo pool (worker/group_commit.py): how full the flushes are, and what they handed back.
GROUP_COMMIT_ORDERS = Histogram(
    "orders_group_commit_orders", "Orders per group commit flush (solo pool)", buckets=(1, 2, 3, 4, 8, 16)
)
GROUP_COMMIT_HANDED_BACK = Counter(
    "orders_group_commit_handed_back", "Messages a group commit flush handed back (refused, claimed, failed)"
)

# Every label value from the start, at 0: dashboards and alerts rate() over series that must exist
# before the first retry or dead letter.
for _outcome in OUTCOME_NAMES:
    OUTCOMES.labels(_outcome)
for _result in ("ok", "failed"):
    DLQ_PUBLISHES.labels(_result)
for _stage in get_args(Stage):
    DEAD_LETTERS.labels(_stage)
