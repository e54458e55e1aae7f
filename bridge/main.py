"""The bridge process: build its parts from the settings, serve /metrics and /healthz, run until stopped."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from bridge.amqp_handoff import AmqpHandoff
from bridge.consumer import Bridge
from bridge.handoff import Handoff, create_sender
from bridge.metrics import AggregateCollector, QueueCollector, record_lag_from_stats
from bridge.settings import BridgeSettings
from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.dead_letter_publisher import create_dead_letter_publisher
from orders.core.kafka import create_consumer, create_registry_client
from orders.core.metrics_server import serve_metrics
from orders.core.process import start_process, stop_on_signals
from orders.core.queue_depth import depth_reader
from orders.core.redis_client import connect
from orders.core.redis_health import combined, pipeline_redis
from orders.core.settings import Settings, SettingsError
from orders.core.tracing import start_tracing

log = logging.getLogger("bridge")


def _stats_options(settings: Settings, on_stats: Callable[[str], None]) -> dict[str, Any]:
    """librdkafka statistics every 5 s: the group watch always, per-partition lag when metrics are served."""

    def both(stats_json: str) -> None:
        on_stats(stats_json)
        record_lag_from_stats(stats_json)

    interval = settings.kafka_options.get("statistics.interval.ms", 5000)  # KAFKA_STATISTICS_INTERVAL_MS
    return {"stats_cb": both if settings.metrics_port else on_stats, "statistics.interval.ms": interval}


def run_bridge(settings: BridgeSettings) -> None:
    """Consume ORDERS_TOPIC until SIGTERM/SIGINT, then commit what was handed off and return."""
    log.info("bridge starting: %s", settings.redacted())
    dead_letters = create_dead_letter_publisher(settings, settings.dlq_delivery_timeout)
    aggregate = Aggregate(connect(settings.redis))  # counters and /metrics' figures, every wait bounded
    handoff = create_handoff(settings)
    tracing = start_tracing(settings, "bridge")
    # One reader for the loop's backpressure and the scrape thread's figure, on a connection of its own.
    depth = depth_reader(settings.broker_url, settings.celery_queue)
    loop = Bridge(
        settings,
        lambda on_stats: create_consumer(settings, **_stats_options(settings, on_stats)),
        OrderCodec(create_registry_client(settings), settings.orders_topic),
        handoff,
        depth,
        dead_letters,
        aggregate.count_events,
        tracing,
    )
    serve_metrics(
        settings.metrics_port,
        AggregateCollector(aggregate),
        QueueCollector(depth, settings.max_queue_depth),
        # Not ready while the loop retries something, or a Redis it needs does not answer (the reason shown).
        readiness=combined(loop.readiness, pipeline_redis(settings)),
        host=settings.metrics_host,
    )
    stop_on_signals(loop.stop)
    loop.run()
    handoff.close()
    tracing.shutdown()  # the last batch's spans, within a bound
    depth.close()


def create_handoff(settings: BridgeSettings) -> Handoff:
    """The hand-off for the Celery broker CELERY_BROKER_URL names: Redis (waiting for its replicas per
    batch, if it has any) or RabbitMQ; its messages from a template unless BRIDGE_HANDOFF=celery or
    ORDERS_STOCK_CELERY (Celery and kombu as shipped)."""
    app = create_sender(settings, settings.handoff_wait_replicas)
    template = settings.bridge_handoff == "template" and not settings.stock_celery
    if settings.broker_kind == "amqp":
        # a batch unconfirmed for CELERY_BROKER_TIMEOUT is handed off again (through the next node)
        timeout = settings.celery_broker_timeout
        return AmqpHandoff(app, settings.celery_queue, confirm_timeout=timeout, template=template)
    return Handoff(app, settings.celery_queue, template=template)


def main() -> None:
    """`python -m bridge`: the bridge with settings from the environment."""
    try:
        run_bridge(start_process(BridgeSettings))
    except SettingsError as exc:
        sys.exit(str(exc))
