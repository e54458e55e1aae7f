"""What a worker reads on top of the shared settings: failure injection, retry jitter, aggregate bounds,
task events and the per-task log lines."""

from __future__ import annotations

from pydantic import Field

from orders.core.replication import aggregate_replicas
from orders.core.settings import DAY_SECONDS, Settings
from orders.core.shards import MAX_SHARDS
from orders.core.tracing_settings import TracingSettings
from worker.group_commit import KillPoint


class WorkerSettings(Settings, TracingSettings):
    """A worker's settings: the shared ones (Kafka, Redis, Celery, retries) and the worker's own."""

    default_service_name = "orders-worker"  # OTEL_SERVICE_NAME overrides it

    # The demo's failure injector (worker/faults.py): without FAILURE_INJECTION=true a worker ignores
    # FAILURE_RATE, PERMANENT_FAILURE_RATE and the dashboard's override, so production never fails on purpose.
    failure_injection: bool = Field(False, alias="FAILURE_INJECTION")
    failure_rate: float = Field(0.0, alias="FAILURE_RATE", ge=0.0, le=1.0)
    permanent_failure_rate: float = Field(0.0, alias="PERMANENT_FAILURE_RATE", ge=0.0, le=1.0)
    failure_seed: int | None = Field(None, alias="FAILURE_SEED")
    # Celery's full jitter on the retry countdowns: only the task's retry policy reads it.
    retry_jitter: bool = Field(False, alias="RETRY_JITTER")
    # How long an orderId is remembered as counted (or claimed for the DLQ): Redis' memory grows with
    # orders/s x this (README: Bounded Redis has the formula).
    # Checked at worker start to cover every redelivery and re-read (orders/core/celery_config.py).
    dedupe_ttl_seconds: int = Field(DAY_SECONDS, alias="DEDUPE_TTL_SECONDS", ge=1)
    # Distinct product names kept apart in the aggregate; the rest are counted under "(other)".
    max_products: int = Field(1000, alias="MAX_PRODUCTS", ge=1)
    # The aggregate's logical shards (orders/core/shards.py); unset: as the aggregate says (1 when fresh).
    # Checked against the stored layout at start: a different N refuses to start (`orders reshard`).
    # Only workers read it: the bridge writes only the home shard's counters, the same under every N.
    aggregate_shards: int | None = Field(None, alias="AGGREGATE_SHARDS", ge=1, le=MAX_SHARDS)
    # Workers send Celery task events from the start; otherwise when Flower (or `control enable_events`) asks.
    task_events: bool = Field(False, alias="TASK_EVENTS")
    # Celery's two INFO lines per task ("Task ... received", "Task ... succeeded in ...") or neither;
    # failures, retries and dead letters log either way (worker/task_log.py; the cost: docs/benchmarks.md).
    task_success_log: bool = Field(True, alias="TASK_SUCCESS_LOG")
    # Replicas each aggregate write and dead-letter claim must reach before the task is acknowledged
    # (orders/core/replication.py has the default per layout; 0 = no wait).
    redis_wait_replicas: int | None = Field(None, alias="REDIS_WAIT_REPLICAS", ge=0, le=16)
    # Group commit (worker/group_commit.py): on the solo pool with the fast path, a tick's aggregate writes go
    # in one pipeline and its acks wait for it. Prefork and ORDERS_STOCK_CELERY write per task either way.
    group_commit: bool = Field(True, alias="WORKER_GROUP_COMMIT")
    # Reliability tests only: SIGKILL the worker at this point of its first group commit.
    test_kill_at: KillPoint | None = Field(None, alias="ORDERS_TEST_KILL_AT")

    @property
    def aggregate_wait_replicas(self) -> int:
        """REDIS_WAIT_REPLICAS, or the layout's default."""
        return aggregate_replicas(self, self.redis_wait_replicas)
