"""What the bridge reads on top of the shared settings: its batch size, queue bound, rejoin timeout and
how it builds task messages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orders.core.replication import handoff_replicas
from orders.core.settings import Settings
from orders.core.tracing_settings import TracingSettings


class BridgeSettings(Settings, TracingSettings):
    """The bridge's settings: the shared ones (Kafka, registry, Redis, Celery) and the bridge's own."""

    default_service_name = "orders-bridge"  # OTEL_SERVICE_NAME overrides it

    # The bridge pauses its partitions above this Celery queue length and resumes below half.
    max_queue_depth: int = Field(10_000, alias="MAX_QUEUE_DEPTH", ge=2)
    bridge_batch_size: int = Field(500, alias="BRIDGE_BATCH_SIZE", ge=1, le=100_000)
    # Seconds out of its consumer group (with a broker up) before the bridge replaces its consumer;
    # above the 300 s a legitimate rebalance may take (bridge/group_watch.py).
    bridge_rejoin_timeout: float = Field(360.0, alias="BRIDGE_REJOIN_TIMEOUT", gt=0)
    # How each task message is built (bridge/task_message.py): from a template of Celery's own message
    # (the default), or by Celery and kombu for every order, as the stock lane always does.
    bridge_handoff: Literal["template", "celery"] = Field("template", alias="BRIDGE_HANDOFF")
    # Replicas each hand-off batch must reach before its Kafka offsets are stored
    # (orders/core/replication.py has the default per layout; 0 = no wait).
    celery_broker_wait_replicas: int | None = Field(None, alias="CELERY_BROKER_WAIT_REPLICAS", ge=0, le=16)

    @property
    def handoff_wait_replicas(self) -> int:
        """CELERY_BROKER_WAIT_REPLICAS, or the layout's default."""
        return handoff_replicas(self, self.celery_broker_wait_replicas)
