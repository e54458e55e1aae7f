"""The bridge's hand-off to RabbitMQ: send_task's message, confirmed per batch, refused batches raise;
the queue's depth read on a connection of its own, from any thread."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from contextlib import closing
from typing import Any

import pytest
from kombu import Connection
from prometheus_client import CollectorRegistry, start_http_server

from bridge.amqp_handoff import AmqpHandoff
from bridge.consumer import BROKER_ERRORS
from bridge.handoff import create_sender
from bridge.metrics import QueueCollector
from orders.core.celery_config import task_id_for, task_reprs
from orders.core.order import MAX_ID_LENGTH, PROCESS_ORDER_TASK
from orders.core.queue_depth import QueueDepthReader, QueueDepthUnavailable, depth_reader
from orders.core.settings import Settings
from orders.dashboard.sampler import RedisFigures
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.supervisor import free_port
from tests.integration.test_handoff import CASES, ORDER, ORIGIN, TRACE, VOLATILE

READER_NAME = "orders depth reader"


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


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("template", [True, False], ids=["template", "celery"])
def test_hand_off_sends_what_send_task_sends(rabbitmq: RabbitMQ, template: bool, case: str) -> None:
    """Field by field, as RabbitMQ delivers them: the headers (in order), the body's bytes, every property."""
    order, origin, trace = CASES[case]
    queue = f"q-same-{case}-{template}"
    app = _sender(rabbitmq, queue)
    handoff = AmqpHandoff(app, queue, template=template)
    handoff.hand_off([(order, origin)], [trace] if trace else None)
    app.send_task(PROCESS_ORDER_TASK, args=(order, origin), task_id=order["orderId"], queue=queue,
                  headers=trace, **task_reprs(order, origin))  # fmt: skip
    ours, celerys = _take_all(rabbitmq.url, queue)
    handoff.close()

    assert list(ours.headers.items()) == list(celerys.headers.items())
    assert ours.headers["id"] == order["orderId"]
    assert {k: ours.headers.get(k) for k in TRACE} == {k: (trace or {}).get(k) for k in TRACE}
    assert ours.body == celerys.body and json.loads(ours.body)[0] == [order, origin]
    assert ours.properties["delivery_mode"] == celerys.properties["delivery_mode"] == 2  # persistent
    assert ours.properties["correlation_id"] == order["orderId"] and ours.properties["reply_to"]
    assert {k: v for k, v in ours.properties.items() if k not in VOLATILE} == {
        k: v for k, v in celerys.properties.items() if k not in VOLATILE
    }


@pytest.mark.parametrize("template", [True, False], ids=["template", "celery"])
def test_a_batch_is_confirmed_and_counted_by_the_queue_depth(rabbitmq: RabbitMQ, template: bool) -> None:
    queue = f"q-depth-{template}"
    handoff = AmqpHandoff(_sender(rabbitmq, queue), queue, template=template)
    reader = depth_reader(rabbitmq.url, queue)
    assert reader.depth() == 0  # before anything declared the queue
    handoff.hand_off(_orders(500))
    # Returned means confirmed: RabbitMQ has every message, none in flight.
    assert reader.depth() == 500
    handoff.hand_off(_orders(3, first=500))
    assert reader.depth() == 503
    assert (reader.figures().waiting, reader.figures().unacknowledged) == (503, None)  # RabbitMQ does not say
    ids = [m.headers["id"] for m in _take_all(rabbitmq.url, queue)]
    handoff.close()
    reader.close()
    assert ids == [f"o-{i}" for i in range(503)]


def _reader_connections(node: RabbitMQ) -> list[str]:
    """The node's connections opened by a depth reader, by pid (they name themselves; publishers do not)."""
    rows = node.ctl("list_connections", "pid", "client_properties", "--quiet", "--no-table-headers")
    return [row.split("\t")[0] for row in rows.splitlines() if READER_NAME in row]


def test_depth_reads_never_touch_the_publishers_connection(rabbitmq: RabbitMQ) -> None:
    """The reader's connection is its own: RabbitMQ closing it fails one reading, never a hand-off (once,
    a depth reading that failed closed the publisher's connection, and the batch under way failed)."""
    for pid in _reader_connections(rabbitmq):  # left by other tests' readers
        rabbitmq.ctl("close_connection", pid, "test: not this test's")
    handoff = AmqpHandoff(_sender(rabbitmq, "q-own"), "q-own")
    reader = depth_reader(rabbitmq.url, "q-own")
    handoff.hand_off(_orders(10))
    assert reader.depth() == 10
    (pid,) = _reader_connections(rabbitmq)  # one connection for the reader, another for the publisher

    rabbitmq.ctl("close_connection", pid, "test: the depth reader's connection")
    with pytest.raises(QueueDepthUnavailable, match="CONNECTION_FORCED"):
        reader.depth()
    handoff.hand_off(_orders(10, first=10))  # its connection was never the reader's: no retry needed

    assert reader.depth() == 20  # and the next reading opens a new connection
    handoff.close()
    reader.close()


def test_depth_read_in_a_tight_loop_from_another_thread_during_confirm_waits(rabbitmq: RabbitMQ) -> None:
    """What the bridge does when /metrics is scraped during a confirm wait: no error on either side."""
    handoff = AmqpHandoff(_sender(rabbitmq, "q-threads"), "q-threads")
    reader = depth_reader(rabbitmq.url, "q-threads")
    readings: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_until_done() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline and len(readings) < 50_000:
            try:
                readings.append(reader.depth())
            except QueueDepthUnavailable as exc:
                errors.append(exc)

    scraper = threading.Thread(target=read_until_done)
    scraper.start()
    try:
        for batch in range(20):
            handoff.hand_off(_orders(500, first=500 * batch))
    finally:
        done.set()
        scraper.join(timeout=70)
    assert errors == []
    assert len(readings) > 20 and readings == sorted(readings)  # read throughout; never a count going back
    assert reader.depth() == 10_000
    handoff.close()
    reader.close()


def _metrics_page(reader: QueueDepthReader) -> tuple[int, str]:
    """/metrics served by Prometheus' own server with the bridge's queue collector: status and text."""
    registry = CollectorRegistry()
    registry.register(QueueCollector(reader, 100))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.status, response.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_rabbitmq_hiccup_leaves_the_depth_out_of_one_metrics_page(rabbitmq: RabbitMQ) -> None:
    """kombu's and py-amqp's errors during a scrape: a page without the depth, not a 500."""
    with closing(depth_reader(f"amqp://guest:guest@127.0.0.1:{free_port()}//", "q", timeout=2)) as nobody:
        status, page = _metrics_page(nobody)  # kombu's OperationalError: connection refused
    assert status == 200 and "orders_bridge_max_queue_depth 100.0" in page
    assert "orders_bridge_queue_depth " not in page

    handoff = AmqpHandoff(_sender(rabbitmq, "q-scrape"), "q-scrape")
    handoff.hand_off(_orders(4))
    handoff.close()
    with closing(depth_reader(rabbitmq.url, "q-scrape")) as reader:
        assert "orders_bridge_queue_depth 4.0" in _metrics_page(reader)[1]
        rabbitmq.ctl("close_all_connections", "test: a hiccup")  # py-amqp's ConnectionForced, next read
        status, page = _metrics_page(reader)
        assert status == 200 and "orders_bridge_max_queue_depth 100.0" in page
        assert "orders_bridge_queue_depth " not in page
        assert "orders_bridge_queue_depth 4.0" in _metrics_page(reader)[1]  # reconnected


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


@pytest.mark.parametrize("template", [True, False], ids=["template", "celery"])
def test_an_order_id_longer_than_an_amqp_short_string_is_handed_off(
    rabbitmq: RabbitMQ, template: bool
) -> None:
    """A valid orderId may take up to 1,024 bytes of UTF-8; AMQP's correlation_id holds 255. The task id
    (Celery puts it there) is then derived from the orderId, the same for every copy of the order."""
    queue = f"q-long-id-{template}"
    long_id = "é" * MAX_ID_LENGTH  # 256 characters, 512 bytes
    handoff = AmqpHandoff(_sender(rabbitmq, queue), queue, template=template)
    handoff.hand_off([({**ORDER, "orderId": long_id}, ORIGIN)])
    [message] = _take_all(rabbitmq.url, queue)
    handoff.close()

    assert json.loads(message.body)[0][0]["orderId"] == long_id
    assert (
        message.headers["id"]
        == message.properties["correlation_id"]
        == task_id_for({**ORDER, "orderId": long_id})
    )
    assert len(message.properties["correlation_id"].encode()) <= 255
