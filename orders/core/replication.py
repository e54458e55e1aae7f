"""How many replicas a write must reach before the pipeline takes it as done, by layout (README: guarantees).

Redis replicates asynchronously: a primary that dies takes the writes its replicas had not received.
``WAIT n timeout`` after a write returns how many replicas have it, so a process can hold back what
depends on the write (a task's acknowledgement, the bridge's Kafka offsets) until it is safe.

- **The hand-off** (``CELERY_BROKER_WAIT_REPLICAS``): the bridge commits Kafka offsets once its pushes
  are in Celery's queue. On a replicated broker a push the primary took and lost with it is an order
  gone, in every layout: 1 by default when CELERY_BROKER_URL is a Sentinel URL.
- **The aggregate** (``REDIS_WAIT_REPLICAS``): a task is acknowledged (on Celery's broker) after its
  write. Where both live on one primary, replication keeps their order: a replica that has the
  acknowledgement has the write, and one without it redelivers the order. So the wait matters only where
  they live on different primaries (a separate broker Redis, RabbitMQ, shards): 1 by default when
  REDIS_URL is a Sentinel URL and Celery's broker is elsewhere; 0 on a shared primary. 1 by default on a
  Redis Cluster (each primary has replicas, which it promotes): Celery's broker can never be on it (kombu
  has no Cluster transport), so the acknowledgement is always on another primary than the write.
- 0 turns a wait off; a plain redis:// URL has no replica this side knows of, so 0 (set it for a
  managed Redis whose replicas hide behind one address).

One replica is enough for Sentinel: it promotes the replica with the most of the primary's data. A Cluster
promotes the replica with the smallest replication lag first (its election delay grows with its rank).
"""

from __future__ import annotations

from orders.core.redis_url import ClusterUrl, SentinelUrl
from orders.core.settings import Settings


def handoff_replicas(settings: Settings, configured: int | None) -> int:
    """Replicas each hand-off batch must reach before its offsets are stored."""
    if configured is not None:
        return configured
    return 1 if isinstance(settings.broker_redis, SentinelUrl) else 0


def aggregate_replicas(settings: Settings, configured: int | None) -> int:
    """Replicas each aggregate write (and dead-letter claim) must reach before its task is acknowledged."""
    if configured is not None:
        return configured
    aggregate, broker = settings.redis, settings.broker_redis
    if isinstance(aggregate, ClusterUrl):
        return 1  # the broker is never on the Cluster: the write and the acknowledgement are apart
    if not isinstance(aggregate, SentinelUrl):
        return 0
    if isinstance(broker, SentinelUrl) and broker.same_primary(aggregate):
        return 0  # replication order keeps each acknowledgement behind its write
    return 1
