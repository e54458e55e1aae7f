"""The bridge's hand-off on a real redis-server: the message it builds is the one send_task builds; the
queue's depth as every reader sees it."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.consumer import BROKER_ERRORS
from bridge.handoff import Handoff, create_sender
from orders.core.celery_config import task_reprs
from orders.core.order import PROCESS_ORDER_TASK
from orders.core.queue_depth import UNACKED_KEY, QueueDepthUnavailable, QueueFigures, depth_reader
from orders.core.settings import Settings
from orders.stack.supervisor import free_port
from tests.harness import services
from worker.transport import FETCH_SCRIPT

ORIGIN = {
    "topic": "orders",
    "partition": 2,
    "offset": 41,
    "timestamp": 0,
    "key": "o-1",
    "value": "",
    "group": "g",
}
ORDER = {"orderId": "o-1", "product": "Laptop", "price": "999.99"}
# Differ per message whoever sends it: kombu's delivery tag. send_task also copies argsrepr and
# kwargsrepr into the message properties, where nothing reads them (Flower reads the headers).
VOLATILE = {"delivery_tag", "argsrepr", "kwargsrepr"}
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "ro=1,x=y"}
# (order, origin, trace headers): what the template must get right, each against send_task's message.
CASES = {
    "plain": (ORDER, ORIGIN, None),
    "unicode-traced": (
        {"orderId": "ord-ü-☃-7", "product": "Ноутбук «Pro» 漢字 ☃", "price": "1234.50"},
        {**ORIGIN, "key": None, "value": "AAAAAAEY8J+Ygw=="},
        TRACE,
    ),
    "long-escapes": (  # quotes, backslashes and format specifiers in a 256-character product
        {"orderId": "o-%(id)s-\\x", "product": ('say "hi" \\ %s %(id)s {0} ' * 12)[:256], "price": "0.01"},
        {**ORIGIN, "topic": "orders-eu", "partition": 11, "offset": 2**40, "timestamp": 1_700_000_000_000},
        {"traceparent": TRACE["traceparent"]},
    ),
}


def _queued(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange("q", 0, -1)[::-1]]  # kombu pushes on the left


def assert_same_message(ours: dict[str, Any], celerys: dict[str, Any]) -> None:
    """Field by field (JSON as kombu's Redis transport pushes it): what differs between two messages of
    send_task for the same order (the delivery tag) and the properties nothing reads may differ."""
    assert set(ours) == set(celerys)
    assert list(ours["headers"].items()) == list(celerys["headers"].items())  # in Celery's order too
    assert base64.b64decode(ours["body"]) == base64.b64decode(celerys["body"])
    for key in ("content-type", "content-encoding"):
        assert ours[key] == celerys[key], key
    same = {k: v for k, v in celerys["properties"].items() if k not in VOLATILE}
    assert {k: v for k, v in ours["properties"].items() if k not in VOLATILE} == same
    assert uuid.UUID(ours["properties"]["delivery_tag"]).version == 4  # unique per message, as kombu's
    assert ours["properties"]["reply_to"] and ours["headers"]["origin"]  # the sender's, as send_task's


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("template", [True, False], ids=["template", "celery"])
def test_hand_off_sends_what_send_task_sends(redis_url: str, template: bool, case: str) -> None:
    order, origin, trace = CASES[case]
    app = create_sender(Settings.from_env({"REDIS_URL": redis_url, "CELERY_QUEUE": "q"}, env_file=None))
    client = redis.Redis.from_url(redis_url)

    Handoff(app, "q", template=template).hand_off([(order, origin)], [trace] if trace else None)
    app.send_task(PROCESS_ORDER_TASK, args=(order, origin), task_id=order["orderId"], queue="q",
                  headers=trace, **task_reprs(order, origin))  # fmt: skip

    ours, celerys = _queued(client)
    assert_same_message(ours, celerys)
    assert ours["headers"]["id"] == order["orderId"]
    assert json.loads(base64.b64decode(ours["body"]))[0] == [order, origin]
    assert {k: ours["headers"].get(k) for k in TRACE} == {k: (trace or {}).get(k) for k in TRACE}


def test_hand_off_sends_what_send_task_sends_with_a_result_backend(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "CELERY_QUEUE": "q", "CELERY_RESULT_BACKEND": redis_url}
    app = create_sender(Settings.from_env(env, env_file=None))

    Handoff(app, "q").hand_off([(ORDER, ORIGIN)])
    app.send_task(
        PROCESS_ORDER_TASK, args=(ORDER, ORIGIN), task_id="o-1", queue="q", **task_reprs(ORDER, ORIGIN)
    )

    ours, celerys = _queued(redis.Redis.from_url(redis_url))
    assert_same_message(ours, celerys)
    assert ours["headers"]["argsrepr"] == "o-1 Laptop 999.99"
    assert ours["headers"]["kwargsrepr"] == "orders[2]@41"


@pytest.mark.parametrize("template", [True, False], ids=["template", "celery"])
def test_hand_off_publishes_a_batch_in_order(redis_url: str, template: bool) -> None:
    client = redis.Redis.from_url(redis_url)
    sender = create_sender(Settings.from_env({"REDIS_URL": redis_url}, env_file=None))
    handoff = Handoff(sender, "q", template=template)
    orders = [({**ORDER, "orderId": f"o-{i}"}, {**ORIGIN, "offset": i}) for i in range(5)]

    handoff.hand_off(orders[:2])
    handoff.hand_off(orders[2:])  # the second batch no longer declares the queue

    queued = _queued(client)
    assert [m["headers"]["id"] for m in queued] == [f"o-{i}" for i in range(5)]
    assert len({m["properties"]["delivery_tag"] for m in queued}) == 5


def test_after_a_failed_hand_off_the_retry_goes_through(tmp_path: Path) -> None:
    """The bridge keeps one producer across batches; Redis going away must not leave it unusable."""
    server = services.start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url)
        handoff = Handoff(create_sender(Settings.from_env({"REDIS_URL": server.url}, env_file=None)), "q")
        handoff.hand_off([(ORDER, ORIGIN)])

        server.service.kill()
        with pytest.raises(BROKER_ERRORS):
            handoff.hand_off([({**ORDER, "orderId": "o-2"}, ORIGIN)])
        server.service.start(lambda: _answers(client), timeout=20)  # same port, empty (no persistence)
        handoff.hand_off([({**ORDER, "orderId": "o-2"}, ORIGIN)])

        assert [m["headers"]["id"] for m in _queued(client)] == ["o-2"]
    finally:
        server.service.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_the_depth_reader_counts_what_waits_and_what_workers_hold(redis_url: str) -> None:
    handoff = Handoff(create_sender(Settings.from_env({"REDIS_URL": redis_url}, env_file=None)), "q")
    reader = depth_reader(redis_url, "q")
    assert reader.figures() == QueueFigures(0, 0)  # before anything created the list
    handoff.hand_off([({**ORDER, "orderId": f"o-{i}"}, {**ORIGIN, "offset": i}) for i in range(5)])
    assert reader.depth() == 5

    # A worker's fetch (worker/fetch.lua) moves two to the unacknowledged hash in one step.
    redis.Redis.from_url(redis_url).eval(FETCH_SCRIPT, 3, "q", UNACKED_KEY, "unacked_index", 2, "1")
    assert reader.figures() == QueueFigures(waiting=3, unacknowledged=2)
    assert reader.depth() == 3
    reader.close()


def test_a_redis_that_does_not_answer_is_an_unavailable_depth() -> None:
    reader = depth_reader(f"redis://127.0.0.1:{free_port()}/0", "q", timeout=1)
    with pytest.raises(QueueDepthUnavailable, match="Redis queue 'q'"):
        reader.depth()
    with pytest.raises(QueueDepthUnavailable):
        reader.figures()
