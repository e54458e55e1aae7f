"""The Celery settings the bridge (sender) and the workers share, and how a task message is named.

Both sides build their Celery app from :func:`celery_config`, so the queue, serializer, transport and
visibility timeout can never differ between the process that sends an order and the one that runs it.
"""

from __future__ import annotations

import uuid
from typing import Any

from kombu import Exchange, Queue

# FAST_TRANSPORT is named where the broker connection is made; worker/transport.py reads it from here.
from orders.core.broker_connection import FAST_TRANSPORT as FAST_TRANSPORT
from orders.core.broker_connection import redis_broker
from orders.core.order import OrderPayload, RecordOrigin
from orders.core.settings import Settings, SettingsError

# Longest a task may run, failure hook included. Prefork enforces it; on solo (no time limits) every
# wait inside a task is bounded below it instead: Redis socket timeouts, WORKER_DLQ_WAIT.
TASK_TIME_LIMIT = 15
# A worker waits at most this long for the DLQ to acknowledge a letter, then requeues the order.
WORKER_DLQ_WAIT = 5
# worker/transport.py renews the visibility of every message a live worker holds this often.
LEASE_RENEW_SECONDS = 5
# Celery's default; named because the stock lane's arithmetic depends on it. It is also the size of a solo
# worker's group-commit tick (worker/group_commit.py): one fetch takes at most multiplier x concurrency
# messages (Celery's concurrency, 2 on this 2-core machine even on solo: 8), and their writes share one
# flush. Not raised for it: a tick's messages are held only while its tasks run and its one flush answers
# (a Redis command within 3 s, a WAIT within REDIS_WAIT_TIMEOUT <= 2 s, a refused flush's 1 s pause), so
# no lease or visibility figure below changes; a larger tick would save at most 1 round trip in 8 more.
PREFETCH_MULTIPLIER = 4
VISIBILITY_MARGIN = 30
# How often a worker looks for unacknowledged messages past the visibility timeout.
RESTORE_SWEEP_SECONDS = 10
# Records read again after a bridge crash, or the unacknowledged tail of a replay that crashed, arrive
# within minutes; the dedupe window keeps this much more than the longest redelivery.
REREAD_MARGIN = 3600
# AMQP's short string (the correlation_id Celery copies the task id into) holds 255 bytes.
MAX_TASK_ID_BYTES = 255
LONG_ID_NAMESPACE = uuid.UUID("6f7a2d1c-52b0-4c1e-9a61-0c2f3e9d8b47")  # task ids of over-long orderIds


def countdowns(settings: Settings) -> list[int]:
    """The retry countdowns autoretry chooses: base * 2**retry, capped (2, 4, 8 s by default)."""
    return [
        min(settings.retry_backoff_max, settings.retry_backoff_base * 2**r)
        for r in range(settings.max_retries)
    ]


def longest_countdown(settings: Settings) -> int:
    return max(countdowns(settings), default=0)


def visibility_floor(settings: Settings) -> int:
    """The shortest safe visibility timeout: no message may pass it while a live worker holds it.

    Our transport renews the lease of every message a worker holds (waiting retries and prefetched
    messages included), so only a task blocking the worker's loop (solo pool) can delay a renewal,
    by at most the task time limit. kombu's stock transport (``ORDERS_STOCK_CELERY``) never renews: a
    message must outlast its wait behind the other prefetched ones, its own run and its retry countdown.
    """
    if settings.stock_celery:
        return longest_countdown(settings) + PREFETCH_MULTIPLIER * TASK_TIME_LIMIT
    return TASK_TIME_LIMIT + LEASE_RENEW_SECONDS


def visibility_timeout(settings: Settings) -> int:
    """How long the Redis transport waits before redelivering an unacknowledged message.

    Short enough that the orders of a worker that died (SIGKILL, OOM) come back soon, longer than
    :func:`visibility_floor` so no message is handed to a second worker while the first holds it.
    ``VISIBILITY_TIMEOUT`` overrides the margin (tests that kill workers use a short one); raises
    :class:`SettingsError` if it does not exceed the floor.
    """
    floor = visibility_floor(settings)
    if settings.visibility_timeout is None:
        return floor + VISIBILITY_MARGIN
    if settings.visibility_timeout <= floor:
        raise SettingsError(
            "Invalid configuration:\n  VISIBILITY_TIMEOUT: must exceed how long a live worker may hold a "
            f"message without renewing it ({floor} s), or it runs twice (got {settings.visibility_timeout})"
        )
    return settings.visibility_timeout


def redelivery_window(settings: Settings) -> int:
    """The longest an order's messages may keep arriving: each retry's countdown and run, a redelivery."""
    runs = (settings.max_retries + 1) * TASK_TIME_LIMIT
    return sum(countdowns(settings)) + runs + visibility_timeout(settings)


def check_dedupe_window(settings: Settings, dedupe_ttl_seconds: int) -> None:
    """A worker's DEDUPE_TTL_SECONDS must cover every redelivery and re-read the shared Celery settings
    allow, or an order could be counted twice. Raises :class:`SettingsError`."""
    floor = redelivery_window(settings) + REREAD_MARGIN
    if dedupe_ttl_seconds < floor:
        raise SettingsError(
            "Invalid configuration:\n  DEDUPE_TTL_SECONDS: must cover the longest redelivery "
            f"({redelivery_window(settings)} s) plus {REREAD_MARGIN} s for re-reads and replays, "
            f"at least {floor} s (got {dedupe_ttl_seconds})"
        )


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the bridge (sender) and the workers.

    The broker URL's scheme picks the transport: Redis (ours, worker/transport.py; one server or
    Sentinel-managed, every wait bounded: orders/core/broker_connection.py) or RabbitMQ.
    """
    if settings.broker_kind == "amqp":
        config = {**shared_config(settings), **amqp_transport(settings)}
        if settings.celery_queue_type == "quorum":
            config.update(quorum_queues(settings))
        return config
    broker = redis_broker(settings)
    config = {**shared_config(settings), **broker}
    config["broker_transport_options"] = {
        **broker["broker_transport_options"],
        "visibility_timeout": visibility_timeout(settings),
        # kombu sweeps expired unacked messages back only every interval x throttle seconds
        # (10 x 10 by default since 5.7): scan on every 10 s tick instead, so a dead worker's
        # orders return within the visibility timeout + 10 s, not + 100 s.
        "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
        "unacked_restore_throttle": 1,
        # One Redis list per queue: worker/transport.py fetches from it atomically.
        "priority_steps": [0],
    }
    return config


def shared_config(settings: Settings) -> dict[str, Any]:
    """What every broker shares: serialization, the queue, results."""
    return {
        "result_backend": settings.celery_result_backend,
        "task_ignore_result": settings.celery_result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.celery_queue,
        "broker_connection_retry_on_startup": True,
        "enable_utc": True,
    }


def amqp_transport(settings: Settings) -> dict[str, Any]:
    """RabbitMQ through kombu's py-amqp transport, in place of the Redis-only options above.

    No visibility timeout: an unacknowledged message returns as soon as its consumer's connection
    closes. Publisher confirms on every publish a worker makes (a retry, a requeue), so the message
    it replaces is acknowledged only once RabbitMQ has taken the new one. The bridge confirms per
    batch instead (bridge/handoff.py).

    Failure detection: a worker's consumer connection uses heartbeats (``broker_heartbeat``); every
    socket gives up after ``CELERY_BROKER_TIMEOUT`` (py-amqp would wait for ever on a silent peer: a
    publisher confirm, a close), and a connection error moves on to the next node of a
    ``;``-separated ``CELERY_BROKER_URL`` (round robin).
    """
    timeout = settings.celery_broker_timeout
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {
            "confirm_publish": True,
            "read_timeout": timeout,
            "write_timeout": timeout,
        },
        "broker_transport": None,
        "broker_heartbeat": settings.celery_broker_heartbeat,
        "broker_connection_timeout": min(timeout, 4.0),  # Celery's default 4 s, per node tried
        "broker_failover_strategy": "round-robin",
    }


# A quorum queue's messages that reached their delivery limit go to this queue (``<queue>.parked``).
PARKED_SUFFIX = ".parked"


def parked_queue_name(queue: str) -> str:
    return queue + PARKED_SUFFIX


def quorum_queues(settings: Settings) -> dict[str, Any]:
    """Celery's queue as a RabbitMQ quorum queue (replicated on a cluster's nodes, Raft), declared the
    same way by the bridge (with its first batch) and the workers: RabbitMQ refuses a second declaration
    with other arguments.

    - **Where a retry waits.** Celery 5.5+ sends a retry's countdown through RabbitMQ when its queue is a
      quorum queue on a topic exchange ("native delayed delivery": 28 quorum queues with message TTLs,
      ``celery_delayed_*``, dead-lettering at least once into the next). On RabbitMQ 3.10.8 a delay
      queue whose leader is SIGKILLed stops dead-lettering for good: its messages stay in it, counted
      but never delivered, and every later retry through it too (tests/reliability/
      test_rabbitmq_cluster.py, docs/reliability.md). So by default the exchange is direct, and Celery
      leaves the retry with the worker, unacknowledged in the quorum queue as on a classic one (it warns
      that this "may block the worker": a held retry takes a prefetch slot, which quorum queues make
      static; worker/celery.py raises the prefetch for it). ``CELERY_NATIVE_DELAYED_DELIVERY=true``
      turns the topic exchange on, for a RabbitMQ without that fault.
    - **The delivery limit.** Each return of a message (a hand-back while Redis is away: the task
      rejects with requeue, at most once a second; a worker lost with it unacknowledged) counts as a
      delivery. 1,000,000 is over eleven days of hand-backs at that pace (RabbitMQ 4 would drop the
      order after 20; 3.10 has no default, no limit). At the limit RabbitMQ dead-letters the message,
      at least once, to ``<queue>.parked``, which the workers also consume: a message from there is
      never run again, it goes to the DLQ topic (worker/tasks.py), where ``orders dlq replay`` can
      send it round again.
    """
    queue, parked = settings.celery_queue, parked_queue_name(settings.celery_queue)
    exchange_type = "topic" if settings.celery_native_delayed_delivery else "direct"
    arguments = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.celery_delivery_limit,
        "x-dead-letter-exchange": "",  # the default exchange: routed by queue name
        "x-dead-letter-routing-key": parked,
        # at-least-once dead-lettering (RabbitMQ 3.10+) needs reject-publish overflow; no length limit
        # is set, so nothing is ever rejected for it
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    return {
        "task_queues": [
            Queue(queue, Exchange(queue, type=exchange_type), routing_key=queue, queue_arguments=arguments),
            Queue(
                parked,
                Exchange(parked, type=exchange_type),
                routing_key=parked,
                queue_arguments={"x-queue-type": "quorum"},
            ),
        ],
        "task_default_exchange_type": exchange_type,
        # the delayed retries' own queues are quorum queues too (Celery's default): replicated
        "broker_native_delayed_delivery_queue_type": "quorum",
    }


def task_reprs(payload: OrderPayload, origin: RecordOrigin) -> dict[str, str]:
    """How Flower shows a task: ``orderId product price`` and ``topic[partition]@offset``."""
    return {
        "argsrepr": f"{payload['orderId']} {payload['product']} {payload['price']}",
        "kwargsrepr": f"{origin['topic']}[{origin['partition']}]@{origin['offset']}",
    }


def task_id_for(order: OrderPayload) -> str:
    """Derived from the order, so a redelivered or replayed order keeps its identity in Flower.

    The orderId itself, unless its UTF-8 is longer than AMQP's short strings allow: Celery puts the task
    id in the message's ``correlation_id`` (255 bytes at most), and py-amqp cannot encode a longer one,
    so such an order (valid: 256 characters may take 1,024 bytes) stopped the bridge on RabbitMQ. Then a
    UUID derived from the orderId, the same for every copy of the order; Flower shows the orderId in the
    task's arguments either way.
    """
    order_id = order["orderId"]
    if len(order_id.encode("utf-8", "surrogatepass")) <= MAX_TASK_ID_BYTES:
        return order_id
    return str(uuid.uuid5(LONG_ID_NAMESPACE, order_id))
