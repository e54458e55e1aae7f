"""The bridge's hand-off waits for replicas: ``WAIT`` appended to kombu's batched publish pipeline.

The bridge stores Kafka offsets once a batch is in Celery's queue. On a replicated broker a push the
primary took and lost with it (it died before a replica had it) is an order gone, its offset already
committed. So each batch's pipeline ends with ``WAIT replicas timeout``: on the same connection as
the pushes (WAIT covers only its own connection's writes), in the same round trip. Fewer replicas
than asked is :class:`~orders.core.redis_client.ReplicasBehind`: kombu's flush raises it as a
``BatchPublishError``, and the bridge hands the same records off again and commits nothing meanwhile.
After that, or a primary refusing writes (NOREPLICAS: cut off from its replicas), the channel's
connections are dropped, so a Sentinel channel asks the Sentinels where the primary is now.

kombu internal (worker/fast_path.py K15): ``PublishBatch.pipeline``, the redis-py pipeline its
``flush()`` executes once per batch, and resets after a failure.
"""

from __future__ import annotations

from typing import Any

import redis

from orders.core.broker_connection import PUBLISH_WAIT_REPLICAS, PUBLISH_WAIT_TIMEOUT
from orders.core.redis_client import ReplicasBehind, reconnect_pool, refuses_writes, wait_for_replicas


class WaitingPipeline:
    """A redis-py pipeline whose ``execute`` also waits for ``replicas``; anything else passes through."""

    def __init__(self, pipeline: Any, replicas: int, timeout: float) -> None:
        self._pipeline = pipeline
        self._replicas = replicas
        self._timeout_ms = max(1, round(timeout * 1000))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        """The pushes' replies; raises ReplicasBehind when the WAIT came back short."""
        self._pipeline.wait(self._replicas, self._timeout_ms)
        try:
            replies = list(self._pipeline.execute(*args, **kwargs))
            wait_for_replicas(replies, self._replicas)
        except (ReplicasBehind, redis.ResponseError) as exc:
            if isinstance(exc, ReplicasBehind) or refuses_writes(exc):
                reconnect_pool(self._pipeline.connection_pool)
            raise
        return replies[:-1]


def wait_for_replicas_in(batch: Any, channel: Any) -> Any:
    """``batch`` (a kombu PublishBatch of ``channel``) waiting for replicas if its connection's transport
    options ask for it (the bridge's sender: orders/core/broker_connection.py's ``publish_wait``)."""
    options = channel.connection.client.transport_options
    replicas = int(options.get(PUBLISH_WAIT_REPLICAS) or 0)
    if replicas:
        batch.pipeline = WaitingPipeline(
            batch.pipeline, replicas, float(options[PUBLISH_WAIT_TIMEOUT])
        )  # K15
    return batch
