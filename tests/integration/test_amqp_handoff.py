"""The bridge's hand-off to RabbitMQ: send_task's message, confirmed per batch, refused batches raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu import Connection

from bridge.amqp_handoff import AmqpHandoff
from bridge.consumer import BROKER_ERRORS
from bridge.handoff import create_sender
from orders.core.celery_config import task_reprs
from orders.core.order import PROCESS_ORDER_TASK
from orders.core.settings import Settings
from orders.dashboard.sampler import RedisFigures
from orders.stack.rabbitmq import RabbitMQ, queue_depth
from tests.integration.test_handoff import ORDER, ORIGIN, VOLATILE


def _sender(node: RabbitMQ, queue: str) -> Any:
    env = {"CELERY_BROKER_URL": node.url, "REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_QUEUE": queue}
    return create_sender(Settings.from_env(env, env_file=None))


def _take_all(url: str, queue: str) -> list[Any]:
    """Every message in ``queue``, in order (basic.get, acknowledged)."""
    taken = []
    with Connection(url) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
    return taken


def _orders(n: int, first: int = 0) -> list[Any]:
    return [({**ORDER, "orderId": f"o-{i}"}, {**ORIGIN, "offset": i}) for i in range(first, first + n)]


def test_hand_off_sends_what_send_task_sends(rabbitmq: RabbitMQ) -> None:
    app = _sender(rabbitmq, "q-same")
    handoff = AmqpHandoff(app, "q-same")
    handoff.hand_off([(ORDER, ORIGIN)])
    app.send_task(
        PROCESS_ORDER_TASK, args=(ORDER, ORIGIN), task_id="o-1", queue="q-same", **task_reprs(ORDER, ORIGIN)
    )
    ours, celerys = _take_all(rabbitmq.url, "q-same")
    handoff.close()

    assert ours.headers == celerys.headers
    assert ours.headers["id"] == "o-1" and ours.headers["argsrepr"] == "o-1 Laptop 999.99"
    assert json.loads(ours.body) == json.loads(celerys.body)
    assert ours.properties["delivery_mode"] == celerys.properties["delivery_mode"] == 2  # persistent
    assert {k: v for k, v in ours.properties.items() if k not in VOLATILE} == {
        k: v for k, v in celerys.properties.items() if k not in VOLATILE
    }


def test_a_batch_is_confirmed_and_counted_by_the_queue_depth(rabbitmq: RabbitMQ) -> None:
    handoff = AmqpHandoff(_sender(rabbitmq, "q-depth"), "q-depth")
    assert handoff.queue_depth() == 0  # before anything declared the queue
    handoff.hand_off(_orders(500))
    # Returned means confirmed: RabbitMQ has every message, none in flight.
    assert queue_depth(rabbitmq.url, "q-depth") == 500
    handoff.hand_off(_orders(3, first=500))
    assert handoff.queue_depth() == 503
    ids = [m.headers["id"] for m in _take_all(rabbitmq.url, "q-depth")]
    handoff.close()
    assert ids == [f"o-{i}" for i in range(503)]


def test_a_batch_no_queue_takes_fails_and_its_retry_goes_through(rabbitmq: RabbitMQ) -> None:
    """The queue deleted under a running bridge: the returned batch raises, the retry re-declares."""
    handoff = AmqpHandoff(_sender(rabbitmq, "q-gone"), "q-gone")
    handoff.hand_off(_orders(2))
    with Connection(rabbitmq.url) as connection:
        connection.default_channel.queue_delete("q-gone")

    with pytest.raises(BROKER_ERRORS, match="unroutable"):
        handoff.hand_off(_orders(2, first=2))
    handoff.hand_off(_orders(2, first=2))

    assert [m.headers["id"] for m in _take_all(rabbitmq.url, "q-gone")] == ["o-2", "o-3"]
    handoff.close()


def test_after_a_lost_connection_the_retry_goes_through(rabbitmq: RabbitMQ) -> None:
    handoff = AmqpHandoff(_sender(rabbitmq, "q-lost"), "q-lost")
    handoff.hand_off(_orders(1))
    rabbitmq.ctl("close_all_connections", "test: connection lost")

    with pytest.raises(BROKER_ERRORS):
        handoff.hand_off(_orders(1, first=1))
    handoff.hand_off(_orders(1, first=1))

    assert [m.headers["id"] for m in _take_all(rabbitmq.url, "q-lost")] == ["o-0", "o-1"]
    handoff.close()


def test_the_dashboard_reads_a_rabbitmq_queue_depth(rabbitmq: RabbitMQ, redis_url: str) -> None:
    """With CELERY_BROKER_URL=amqp://... the dashboard shows the queue's depth (it used to build a Redis
    client from the amqp:// URL and fail on every sample); RabbitMQ does not say what is unacknowledged."""
    env = {"CELERY_BROKER_URL": rabbitmq.url, "REDIS_URL": redis_url, "CELERY_QUEUE": "q-dashboard"}
    figures = RedisFigures(Settings.from_env(env, env_file=None))
    handoff = AmqpHandoff(_sender(rabbitmq, "q-dashboard"), "q-dashboard")
    handoff.hand_off(_orders(7))
    handoff.close()

    read = figures.read()
    assert (read.queued, read.in_flight) == (7, None)
    assert read.snapshot.count == 0  # the aggregate still comes from REDIS_URL
