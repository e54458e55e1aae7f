"""The Celery settings the bridge (sender) and the workers share, and how a task message is named.

Both sides build their Celery app from :func:`celery_config`, so the queue, serializer, transport and
visibility timeout can never differ between the process that sends an order and the one that runs it.
"""

from __future__ import annotations

from typing import Any

from orders.core.order import OrderPayload, RecordOrigin
from orders.core.settings import Settings, SettingsError

# Longest a task may run before Celery kills it; part of the visibility-timeout arithmetic below.
TASK_TIME_LIMIT = 30
# How often a worker looks for unacknowledged messages past the visibility timeout.
RESTORE_SWEEP_SECONDS = 10


def longest_countdown(settings: Settings) -> int:
    """The longest retry countdown autoretry can choose: base * 2**(retries-1), capped."""
    if settings.max_retries == 0:
        return 0
    return min(settings.retry_backoff_max, settings.retry_backoff_base * 2 ** (settings.max_retries - 1))


def visibility_timeout(settings: Settings) -> int:
    """How long the Redis transport waits before redelivering an unacknowledged message.

    With acks_late a message stays unacknowledged while its task runs, and a retry scheduled with
    a countdown sits unacknowledged in the worker until its ETA. If either outlasts the visibility
    timeout, Redis hands the message to a second worker and the order runs twice. So the timeout
    must exceed the longest countdown plus the task time limit; a margin covers prefetched
    messages waiting their turn. It must not be much longer either: it is also how long orders
    held by a worker that died (SIGKILL, OOM) wait before another worker gets them.

    ``VISIBILITY_TIMEOUT`` overrides the margin (tests that kill workers use a short one); raises
    :class:`SettingsError` if it does not exceed the longest countdown plus the task time limit.
    """
    floor = longest_countdown(settings) + TASK_TIME_LIMIT
    if settings.visibility_timeout is None:
        return floor + 60
    if settings.visibility_timeout <= floor:
        raise SettingsError(
            "Invalid configuration:\n  VISIBILITY_TIMEOUT: must exceed the longest retry countdown plus the "
            f"task time limit ({floor} s), or a waiting retry runs twice (got {settings.visibility_timeout})"
        )
    return settings.visibility_timeout


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the bridge (sender) and the workers.

    The broker URL's scheme picks the transport: Redis (ours, worker/transport.py) or RabbitMQ.
    """
    config = {
        "broker_url": settings.broker_url,
        "result_backend": settings.celery_result_backend,
        "task_ignore_result": settings.celery_result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.celery_queue,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(settings),
            # kombu sweeps expired unacked messages back only every interval x throttle seconds
            # (10 x 10 by default since 5.7): scan on every 10 s tick instead, so a dead worker's
            # orders return within the visibility timeout + 10 s, not + 100 s.
            "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
            "unacked_restore_throttle": 1,
            # One Redis list per queue: worker/transport.py fetches from it atomically.
            "priority_steps": [0],
        },
        "broker_connection_retry_on_startup": True,
        # Our Redis transport reuses one client per channel (worker/transport.py).
        "broker_transport": None if settings.stock_transport else "worker.transport:Transport",
        "enable_utc": True,
    }
    if settings.broker_kind == "amqp":
        config.update(amqp_transport())
    return config


def amqp_transport() -> dict[str, Any]:
    """RabbitMQ through kombu's py-amqp transport, in place of the Redis-only options above.

    No visibility timeout: an unacknowledged message returns as soon as its consumer's connection
    closes. Publisher confirms on every publish a worker makes (a retry, a requeue), so the message
    it replaces is acknowledged only once RabbitMQ has taken the new one. The bridge confirms per
    batch instead (bridge/handoff.py).
    """
    return {"broker_transport_options": {"confirm_publish": True}, "broker_transport": None}


def task_reprs(payload: OrderPayload, origin: RecordOrigin) -> dict[str, str]:
    """How Flower shows a task: ``orderId product price`` and ``topic[partition]@offset``."""
    return {
        "argsrepr": f"{payload['orderId']} {payload['product']} {payload['price']}",
        "kwargsrepr": f"{origin['topic']}[{origin['partition']}]@{origin['offset']}",
    }


def task_id_for(order: OrderPayload) -> str:
    """Derived from the order, so a redelivered or replayed order keeps its identity in Flower."""
    return order["orderId"]
