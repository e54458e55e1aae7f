"""One order's trace end to end, read back through Zipkin's public API (the backend `orders up --tracing`
runs), with the real pipeline: producer, bridge, Celery workers (solo and prefork), Redis, DLQ, replay.

Failures come from the seeded injector, so the test picks orderIds whose fate it knows: one that
succeeds at once, one that fails twice and then succeeds (backoff base 1 s: gaps of 1 and 2 s), one
that fails permanently. Spans reach Zipkin asynchronously; every check polls the API with a deadline.
Tansu lane only: Zipkin is a second JVM beside the suite's, and the headers travel the same on both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from orders.core.codec import OrderCodec, order_schema_str
from orders.core.kafka import create_producer, create_registry_client
from orders.core.order import Order
from orders.core.trace_context import TRACEPARENT
from orders.core.tracing import start_tracing
from orders.produce import OrderProducer, ProducerSettings
from orders.stack.supervisor import wait_for
from orders.stack.zipkin import spans_endpoint
from orders.trace.query import Span, TraceQueryError, traces_of_order
from orders.trace.timeline import attempt_gaps_s
from tests.conftest import Pipeline, unavailable
from tests.harness import services
from tests.harness.kafka_io import headers_of, read_topic
from worker.faults import FailureInjector

TANSU = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]

TRANSIENT, PERMANENT, SEED, RETRIES = 0.5, 0.3, 25, 2
FAULTS = {"FAILURE_RATE": str(TRANSIENT), "PERMANENT_FAILURE_RATE": str(PERMANENT), "FAILURE_SEED": str(SEED)}
ARTIFACTS = services.REPO_ROOT / "test-artifacts"
TRACE_DEADLINE = 60.0
Traces = list[list[Span]]


def traced_env(zipkin: services.Running) -> dict[str, str]:
    # A short batch delay: spans reach Zipkin within ~0.2 s of ending.
    return {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": spans_endpoint(zipkin.url), "OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture
def traced(pipeline: Pipeline, zipkin: services.Running) -> Pipeline:
    """The pipeline's processes export to Zipkin; retries back off 1 s, then 2 s; two retries at most."""
    pipeline.env.update(traced_env(zipkin), MAX_RETRIES=str(RETRIES), RETRY_BACKOFF_BASE="1")
    return pipeline


def fate(injector: FailureInjector, order_id: str) -> str:
    """What the seeded injector does to an order: "permanent", "dlq", or "ok@N" (succeeds at attempt N)."""
    if injector._draw(order_id, 0, "permanent") < injector.permanent_rate:
        return "permanent"
    for attempt in range(RETRIES + 1):
        if injector._draw(order_id, attempt, "transient") >= injector.transient_rate:
            return f"ok@{attempt + 1}"
    return "dlq"


def pick_order(prefix: str, wanted: str) -> Order:
    injector = FailureInjector(TRANSIENT, PERMANENT, SEED)
    for i in range(1000):
        order_id = f"{prefix}-{wanted}-{i}"
        if fate(injector, order_id) == wanted:
            return Order(order_id, "Laptop", 123_45)
    raise AssertionError(f"no orderId with fate {wanted}")


def produce_traced(pipeline: Pipeline, orders: list[Order]) -> None:
    """Through `orders produce`'s own sender, traced: each order starts its trace with a PRODUCER span."""
    settings = ProducerSettings.from_env(pipeline.env, env_file=None)
    tracing = start_tracing(settings, "tests")
    assert tracing.enabled
    codec = OrderCodec(create_registry_client(settings), settings.orders_topic)
    sender = OrderProducer(create_producer(settings), codec, settings.orders_topic, tracing)
    for order in orders:
        sender.send(order)
    assert sender.finish() == 0 and sender.tally.delivered == len(orders)
    tracing.shutdown()


def produce_with_confluent_serializer(pipeline: Pipeline, order: Order) -> None:
    """As most existing producers write: Confluent's AvroSerializer, a plain Producer, no headers."""
    registry = SchemaRegistryClient({"url": pipeline.env["SCHEMA_REGISTRY_URL"]})
    serializer = AvroSerializer(registry, order_schema_str())
    value = serializer(order.to_record(), SerializationContext(pipeline.orders_topic, MessageField.VALUE))
    producer = Producer({"bootstrap.servers": pipeline.broker.bootstrap})
    producer.produce(pipeline.orders_topic, value, order.order_id.encode())
    assert producer.flush(30) == 0


def wait_traces(zipkin: services.Running, order_id: str, ready: Callable[[Traces], bool]) -> Traces:
    """Poll Zipkin until the order's traces satisfy ``ready`` (spans arrive asynchronously)."""
    found: Traces = []

    def check() -> bool:
        nonlocal found
        try:
            found = traces_of_order(zipkin.url, order_id)
        except TraceQueryError:
            return False
        return bool(found) and ready(found)

    try:
        wait_for(check, TRACE_DEADLINE, f"the trace of {order_id}", interval=0.3)
    except TimeoutError:
        pytest.fail(f"trace of {order_id} incomplete after {TRACE_DEADLINE}s: {found}")
    return found


def one(spans: list[Span], match: Callable[[Span], bool]) -> Span:
    found = [s for s in spans if match(s)]
    assert len(found) == 1, f"expected one span, got {found}"
    return found[0]


def attempts(spans: list[Span]) -> list[Span]:
    return sorted((s for s in spans if s.name == "orders.process_order"), key=lambda s: s.start_us)


def bridge_span(spans: list[Span]) -> Span:
    return one(spans, lambda s: s.service == "orders-bridge")


def has(count: int, *names: str) -> Callable[[Traces], bool]:
    """A ready-check: a trace holding ``count`` attempt spans, the bridge's span, and a span named
    starting with each of ``names`` (each process exports on its own schedule)."""

    def ready(traces: Traces) -> bool:
        spans = traces[0]
        named = all(any(s.name.startswith(n) for s in spans) for n in ("process ", *names))
        return len(attempts(spans)) == count and named

    return ready


def check_first_attempt_success(zipkin: services.Running, pipeline: Pipeline, order: Order) -> list[Span]:
    """produce -> bridge -> task -> aggregate, one trace, each span the child of the one before."""
    (spans,) = wait_traces(zipkin, order.order_id, has(1, "aggregate", "send"))
    producer = one(spans, lambda s: s.kind == "PRODUCER" and s.service == "orders-producer")
    bridge = bridge_span(spans)
    (attempt,) = attempts(spans)
    aggregate = one(spans, lambda s: s.name == "aggregate record_order")
    assert producer.parent_id is None and producer.tags["orderId"] == order.order_id
    assert (bridge.kind, bridge.parent_id) == ("CONSUMER", producer.span_id)
    assert (attempt.kind, attempt.parent_id, attempt.service) == ("CONSUMER", bridge.span_id, "orders-worker")
    assert (aggregate.kind, aggregate.parent_id) == ("CLIENT", attempt.span_id)
    assert bridge.tags["messaging.destination.name"] == pipeline.orders_topic
    assert bridge.tags["messaging.consumer.group.name"] == pipeline.env["CONSUMER_GROUP"]
    assert {"messaging.destination.partition.id", "messaging.kafka.offset"} <= bridge.tags.keys()
    assert bridge.tags["orderId"] == order.order_id
    assert attempt.tags["orders.attempt"] == "1" and attempt.tags["orders.outcome"] == "succeeded"
    assert attempt.tags["celery.hostname"].startswith("worker-")
    return spans


def check_two_retries(zipkin: services.Running, order: Order) -> list[Span]:
    """Fails twice, then succeeds: one trace, three attempts, the backoff's 1 s and 2 s between them."""
    (spans,) = wait_traces(zipkin, order.order_id, has(3, "aggregate"))
    first, second, third = attempts(spans)
    assert [a.tags["orders.attempt"] for a in (first, second, third)] == ["1", "2", "3"]
    assert [a.tags["orders.outcome"] for a in (first, second, third)] == [
        "retry_scheduled", "retry_scheduled", "succeeded",
    ]  # fmt: skip
    assert [first.tags["orders.retry.countdown_s"], second.tags["orders.retry.countdown_s"]] == ["1", "2"]
    # A retry belongs to the same trace: each attempt is the child of the one that scheduled it.
    assert (first.parent_id, second.parent_id, third.parent_id) == (
        bridge_span(spans).span_id, first.span_id, second.span_id,
    )  # fmt: skip
    gaps = attempt_gaps_s(spans)
    # The countdown runs from the retry's publish, a few ms before its attempt span ends.
    assert 0.9 <= gaps[0] < 2.5 and 1.9 <= gaps[1] < 3.5, gaps
    return spans


def check_dead_letter_and_replay(zipkin: services.Running, pipeline: Pipeline, order: Order) -> str:
    """A permanent failure ends in a DLQ publish span whose context the letter carries; a replay starts
    a new trace that links to it."""
    (spans,) = wait_traces(zipkin, order.order_id, has(1, "publish"))
    (attempt,) = attempts(spans)
    publish = one(spans, lambda s: s.name == f"publish {pipeline.dlq_topic}")
    assert (publish.kind, publish.parent_id) == ("PRODUCER", attempt.span_id)
    assert attempt.tags["orders.outcome"] == "dead_lettered" and "error" in attempt.tags
    (letter,) = read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 1)
    assert letter.key() == order.order_id.encode()
    _, trace_id, span_id, flags = headers_of(letter)[TRACEPARENT].split("-")
    assert (trace_id, span_id) == (publish.trace_id, publish.span_id) and int(flags, 16) & 1  # sampled

    replay = subprocess.run(
        [sys.executable, "-m", "orders.cli", "dlq", "replay", "--quiet", "--order-id", order.order_id],
        env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1" in replay.stdout
    traces = wait_traces(zipkin, order.order_id, lambda t: len(t) == 2 and bridge_spans(t[1]) != [])
    original, replayed = traces
    assert original[0].trace_id == publish.trace_id
    send = one(replayed, lambda s: s.service == "orders-dlq-replay")
    assert (send.kind, send.parent_id) == ("PRODUCER", None)
    assert send.tags["orders.link.trace_id"] == publish.trace_id  # Zipkin keeps no links: the tag
    assert send.tags["orders.replayed.from"] == f"{pipeline.dlq_topic}/0/{letter.offset()}"
    assert bridge_span(replayed).parent_id == send.span_id
    return publish.trace_id


def bridge_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.service == "orders-bridge"]


def check_no_context_starts_at_the_bridge(zipkin: services.Running, order: Order) -> None:
    (spans,) = wait_traces(zipkin, order.order_id, has(1, "aggregate"))
    bridge = bridge_span(spans)
    assert bridge.parent_id is None, "a record without a context starts a new trace at the bridge"
    assert not [s for s in spans if s.service == "orders-producer"]
    assert attempts(spans)[0].parent_id == bridge.span_id


@TANSU[0]
@TANSU[1]
def test_traces_end_to_end_on_solo(traced: Pipeline, zipkin: services.Running, request: Any) -> None:
    prefix = uuid.uuid4().hex[:8]
    ok, retried, permanent, plain = (
        pick_order(prefix, "ok@1"), pick_order(prefix, "ok@3"), pick_order(prefix, "permanent"),
        pick_order(f"{prefix}-plain", "ok@1"),
    )  # fmt: skip
    traced.start_worker(**FAULTS)
    traced.start_bridge()
    produce_traced(traced, [ok, retried, permanent])
    produce_with_confluent_serializer(traced, plain)

    check_first_attempt_success(zipkin, traced, ok)
    check_no_context_starts_at_the_bridge(zipkin, plain)
    retried_spans = check_two_retries(zipkin, retried)
    check_dead_letter_and_replay(zipkin, traced, permanent)
    screenshot(request, zipkin, retried_spans[0].trace_id)
    show = subprocess.run(
        [sys.executable, "-m", "orders.cli", "trace", retried.order_id, "--url", zipkin.url],
        env={**os.environ, **traced.env, "COLUMNS": "150"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert "attempt 3" in show.stdout and "wait" in show.stdout and "succeeded" in show.stdout
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "orders-trace.txt").write_text(show.stdout)


@TANSU[0]
@TANSU[1]
def test_traces_end_to_end_on_prefork(traced: Pipeline, zipkin: services.Running) -> None:
    """Each pool child builds its own tracing (worker_process_init): the same parents, attempts, gaps."""
    prefix = uuid.uuid4().hex[:8]
    ok, retried = pick_order(prefix, "ok@1"), pick_order(prefix, "ok@3")
    traced.start_worker(pool="prefork", **FAULTS)
    traced.start_bridge()
    produce_traced(traced, [ok, retried])
    check_first_attempt_success(zipkin, traced, ok)
    spans = check_two_retries(zipkin, retried)
    assert {a.tags["celery.hostname"] for a in attempts(spans)} == {
        attempts(spans)[0].tags["celery.hostname"]
    }


def test_order_not_traced_says_so(zipkin: services.Running) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orders.cli", "trace", f"never-{uuid.uuid4().hex}", "--url", zipkin.url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "not sampled" in result.stderr


def screenshot(request: Any, zipkin: services.Running, trace_id: str) -> None:
    """Zipkin's page for the retried order's trace, in Debian's Chromium (test-artifacts/trace.png;
    README's picture is docs/trace.png, copied from it)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium not on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from tests.integration.test_dashboard_browser import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(f"{zipkin.url}/zipkin/traces/{trace_id}")
            page.wait_for_selector("text=orders.process_order", timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)
        finally:
            browser.close()


INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@TANSU[0]
@TANSU[1]
def test_untraced_processes_pass_the_context_through(pipeline: Pipeline) -> None:
    """No OTEL_* set: no SDK loaded, no header added; a record's traceparent reaches its Celery message,
    its retry and its dead letter unchanged."""
    pipeline.start_bridge()
    codec = OrderCodec(create_registry_client(pipeline.settings()), pipeline.orders_topic)
    producer = Producer({"bootstrap.servers": pipeline.broker.bootstrap})
    producer.produce(pipeline.orders_topic, codec.encode(Order("with-ctx", "Laptop", 100)), b"with-ctx",
                     headers=[(TRACEPARENT, INCOMING.encode())])  # fmt: skip
    producer.produce(pipeline.orders_topic, codec.encode(Order("without-ctx", "Mouse", 200)), b"without-ctx")
    assert producer.flush(30) == 0

    # No worker yet: the messages wait in the Celery queue, as the bridge built them.
    queue = redis.Redis.from_url(pipeline.env["REDIS_URL"])
    wait_for(lambda: queue.llen(pipeline.env["CELERY_QUEUE"]) == 2, 60, "both orders handed off")
    messages = [json.loads(raw) for raw in queue.lrange(pipeline.env["CELERY_QUEUE"], 0, -1)]
    headers = {m["headers"]["id"]: m["headers"] for m in messages}
    assert headers["with-ctx"][TRACEPARENT] == INCOMING
    assert not {TRACEPARENT, "tracestate"} & headers["without-ctx"].keys()

    # Every attempt fails: one retry (its message built by the worker), then the dead letter.
    pipeline.start_worker(FAILURE_RATE="1", MAX_RETRIES="1", RETRY_BACKOFF_BASE="0")
    letters = {m.key(): headers_of(m) for m in read_topic(pipeline.broker.bootstrap, pipeline.dlq_topic, 2)}
    assert letters[b"with-ctx"]["__orders.errors.attempts"] == "2"
    assert letters[b"with-ctx"][TRACEPARENT] == INCOMING
    assert TRACEPARENT not in letters[b"without-ctx"]
    for service in pipeline.processes:
        assert "tracing on" not in service.tail(400)


def test_no_exporter_without_configuration() -> None:
    """Unconfigured, a process builds no provider or exporter (orders/core/trace_export.py is where they
    are built; redis-py itself may import the SDK when it is installed, so that is not the check)."""
    probe = (
        "import sys; from bridge.settings import BridgeSettings;"
        "from orders.core.tracing import start_tracing;"
        "t = start_tracing(BridgeSettings.from_env({}, env_file=None), 'probe');"
        "print(t.enabled, type(t.tracer).__name__, 'orders.core.trace_export' in sys.modules,"
        "      any(m.startswith('opentelemetry.exporter') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "NoOpTracer", "False", "False"], out.stderr
