"""Celery's native delayed delivery (quorum queues), set up once per consumer start through the node the
worker is connected to, instead of once per node of CELERY_BROKER_URL.

Why: Celery's own bootstep (celery/worker/consumer/delayed_delivery.py, 5.7) takes every URL of a
``;``-separated broker_url for a broker of its own and, for each, connects with up to three retries
(1, 3 and 5 s apart) before the consumer goes on. On a cluster with a node down that held the worker
~17 s at every (re)connection, sending no heartbeats, so with a short ``broker_heartbeat`` RabbitMQ
closed the consumer's connection and the worker reconnected into the same wait: it consumed nothing
until the node came back (scenario Q1, tests/reliability/test_rabbitmq_cluster.py). A cluster's
exchanges and queues are the cluster's: declaring them through one node that answers is enough.

Selected by Celery's public ``worker_consumer`` setting (worker/celery.py). The step list it edits is
Celery's (contract C6 in worker/fast_path.py); the declarations are kombu's public functions.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery as CeleryDelayedDelivery
from kombu.common import Broadcast
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

log = logging.getLogger(__name__)

CELERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"
OUR_STEP = "worker.delayed_delivery:DelayedDelivery"


class DelayedDelivery(CeleryDelayedDelivery):
    """Included when Celery's is (a quorum queue is configured) and its exchange can route delayed
    retries (CELERY_NATIVE_DELAYED_DELIVERY); starts without waiting on dead nodes."""

    def include_if(self, c: Any) -> bool:
        return c.app.conf.task_default_exchange_type != "direct" and bool(super().include_if(c))

    def start(self, c: Any) -> None:
        app = c.app
        # A copy of the consumer's connection: the node it reached first, the others after it.
        with c.connection.clone() as connection:
            try:
                connection.ensure_connection(max_retries=max(len(connection.alt), 1))
                declare_native_delayed_delivery_exchanges_and_queues(
                    connection, app.conf.broker_native_delayed_delivery_queue_type
                )
                for queue in app.amqp.queues.values():
                    if not isinstance(queue, Broadcast):
                        bind_queue_to_native_delayed_delivery_exchange(connection, queue)
            except (*connection.recoverable_connection_errors, *connection.recoverable_channel_errors) as exc:
                # Retries then fail to publish and their orders are handed back (worker/hooks.py);
                # the next (re)connection declares it all again.
                log.warning("native delayed delivery not set up (%r); retries wait until it is", exc)


class DirectExchangeWarning(logging.Filter):
    """Drops Celery's warning that a retry on a quorum queue's direct exchange is held by the worker: that
    is our default (orders/core/celery_config.py), and Celery says it for every retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(
            "Direct exchanges are not supported with native delayed delivery"
        )


def quiet_direct_exchange_warning() -> None:
    logging.getLogger("celery.app.base").addFilter(DirectExchangeWarning())


class Consumer(CeleryConsumer):
    """Celery's consumer with :class:`DelayedDelivery` in place of Celery's own step."""

    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            OUR_STEP if step == CELERY_STEP else step for step in CeleryConsumer.Blueprint.default_steps
        ]
