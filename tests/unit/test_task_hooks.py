"""The task's hooks and retry when Redis is away: the order is retried or handed back, never failed for it.

Redis here is a closed local port, so every command fails the way it does while Redis restarts.
"""

from __future__ import annotations

import logging
import pickle
import threading

import pytest
import redis
from celery.exceptions import Reject

import worker.hooks
from orders.core.errors import TransientError
from orders.stack.supervisor import free_port
from worker.aggregate import AggregateWriter
from worker.tasks import picklable, process_order

ORDER = {"orderId": "hook-1", "product": "Mouse", "price": "7.00"}
ORIGIN = {
    "topic": "orders",
    "partition": 0,
    "offset": 1,
    "timestamp": 0,
    "key": None,
    "value": "",
    "group": "g",
}


@pytest.fixture
def request_in_flight():  # type: ignore[no-untyped-def]
    """The task as a worker runs it: a request with an id, the order's args and a retry count."""
    process_order.push_request(
        id="hook-1", args=(ORDER, ORIGIN), kwargs={}, retries=0, is_eager=False, called_directly=False,
        delivery_info={"routing_key": "orders"},
    )  # fmt: skip
    yield process_order
    process_order.pop_request()


def unreachable_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_on_retry_with_redis_away_logs_and_does_not_raise(
    request_in_flight, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    away = AggregateWriter(redis.Redis.from_url(unreachable_url(), socket_connect_timeout=0.5), 60)
    monkeypatch.setattr(worker.hooks, "aggregate", lambda: away)
    with caplog.at_level(logging.WARNING):
        request_in_flight.on_retry(TransientError("x"), "hook-1", (ORDER, ORIGIN), {}, None)
    assert "order hook-1: figures not recorded" in caplog.text


def test_a_retry_the_broker_did_not_take_hands_the_order_back(request_in_flight) -> None:  # type: ignore[no-untyped-def]
    """Celery itself would reject without requeueing here, and the order would be gone."""
    # max_retries 0: kombu gives up on the first refused connection instead of retrying for seconds
    connection = request_in_flight.app.connection_for_write(
        unreachable_url(), transport_options={"max_retries": 0}
    )
    try:
        with pytest.raises(Reject) as caught:
            request_in_flight.retry(exc=TransientError("x"), countdown=0, connection=connection, retry=False)
    finally:
        connection.release()
    assert caught.value.requeue is True
    assert isinstance(caught.value.reason, Exception)


def test_a_hand_back_reject_pickles_whatever_the_redis_error_holds() -> None:
    """The prefork pool pickles a task's Reject to its parent; one that cannot be pickled never reaches
    it as a requeue (scenario 22f lost an order so, on a ClusterDownError: "cannot pickle RLock")."""
    exc = redis.exceptions.ClusterDownError("The cluster is down")
    exc.lock = threading.RLock()  # type: ignore[attr-defined]  # what the failing error carried
    with pytest.raises(TypeError):
        pickle.dumps(Reject(exc, requeue=True))
    reason = pickle.loads(pickle.dumps(Reject(picklable(exc), requeue=True))).reason
    assert reason == "ClusterDownError: The cluster is down"
