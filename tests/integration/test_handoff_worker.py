"""A real worker runs what the bridge's message template hands off, on both Celery brokers."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.amqp_handoff import AmqpHandoff
from bridge.handoff import Handoff, create_sender
from orders.core.aggregate import Aggregate
from orders.core.settings import Settings
from orders.stack.processes import healthz_ready, pipeline_service, worker_argv
from orders.stack.supervisor import wait_for
from tests.harness.services import REPO_ROOT
from tests.integration.test_handoff import CASES, ORIGIN


def _orders(n: int) -> tuple[list[Any], list[Any]]:
    """The template's hard cases, then ``n`` plain orders; their trace headers (None: untraced)."""
    cases = list(CASES.values())
    plain = [
        ({"orderId": f"w-{i}", "product": f"p{i % 7}", "price": f"{i + 1}.{i % 100:02d}"},
         {**ORIGIN, "offset": i})
        for i in range(n)
    ]  # fmt: skip
    return [(o, origin) for o, origin, _ in cases] + plain, [t for _, _, t in cases] + [None] * n


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_worker_counts_every_order_the_template_hands_off(
    broker: str, redis_url: str, service_logs: Path, request: pytest.FixtureRequest
) -> None:
    broker_url = redis_url if broker == "redis" else request.getfixturevalue("rabbitmq").url
    queue = f"template-{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "CELERY_BROKER_URL": broker_url, "CELERY_QUEUE": queue}
    app = create_sender(Settings.from_env(env, env_file=None))
    handoff = (AmqpHandoff if broker == "rabbitmq" else Handoff)(app, queue, template=True)
    orders, traces = _orders(200)
    handoff.hand_off(orders, traces)
    handoff.close()

    name = f"template-worker-{queue}"
    argv = worker_argv(name, "--without-mingle")
    service, port = pipeline_service(name, argv, service_logs, env, REPO_ROOT)
    service.start(lambda: healthz_ready(port))
    try:
        aggregate = Aggregate(redis.Redis.from_url(redis_url))
        wait_for(lambda: aggregate.snapshot().count >= len(orders), 60, f"{len(orders)} orders counted")
        snap = aggregate.snapshot()
    finally:
        service.stop()
    assert snap.count == len(orders)
    assert snap.sum == sum(Decimal(order["price"]) for order, _ in orders)
    assert snap.counters.get("dlq", 0) == 0
    assert "Ноутбук «Pro» 漢字 ☃" in snap.products  # the unicode product, intact
