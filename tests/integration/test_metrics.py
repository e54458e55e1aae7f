"""Prometheus endpoints of the bridge and a worker, scraped and parsed as Prometheus would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orders.stack.processes import bridge_argv
from orders.stack.supervisor import free_port, port_open, wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import produce_raw
from tests.integration.test_pipeline import codec_for

pytestmark = pytest.mark.kafka


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_bridge_and_worker_metrics_move(pipeline: Pipeline) -> None:
    from orders.core.order import Order

    bridge_port, worker_port = free_port(), free_port()
    pipeline.start_worker(
        METRICS_PORT=str(worker_port), FAILURE_RATE="0.5", FAILURE_SEED="4", RETRY_BACKOFF_BASE="0"
    )
    pipeline.start_bridge(METRICS_PORT=str(bridge_port))
    wait_for(lambda: port_open(bridge_port) and port_open(worker_port), 30, "metrics endpoints")
    before_bridge, before_worker = scrape(bridge_port), scrape(worker_port)
    assert value(before_bridge, "orders_bridge_consumed_total") == 0
    assert value(before_worker, "orders_task_outcomes_total", outcome="succeeded") == 0

    codec = codec_for(pipeline)
    good = [(f"m{i}".encode(), codec.encode(Order(f"m-{i}", "Monitor", 10000 + i))) for i in range(40)]
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic, [*good, (b"bad", b"not avro")])
    wait_for(lambda: value(scrape(worker_port), "orders_task_attempts_count") >= 40, 60, "40 orders settled")
    wait_for(
        lambda: value(scrape(bridge_port), "orders_bridge_consumed_total") >= 41, 30, "41 records consumed"
    )

    def settled_in_redis() -> float:
        # The shared DLQ counter includes the bridge's own dead letter (the undecodable record); the
        # bridge writes its counters at most every 250 ms, a worker notes a dead letter after its metrics.
        scraped = scrape(bridge_port)
        return value(scraped, "orders_aggregate_count") + value(
            scraped, "orders_aggregate_events", event="dlq"
        )

    wait_for(lambda: settled_in_redis() >= 41, 10, "the aggregate and DLQ counter to show all 41")

    bridge, worker = scrape(bridge_port), scrape(worker_port)
    assert value(bridge, "orders_bridge_consumed_total") == 41
    assert value(bridge, "orders_bridge_handed_off_total") == 40
    assert value(bridge, "orders_bridge_dead_letters_total", stage="decode") == 1
    assert value(bridge, "orders_bridge_paused") == 0
    assert value(bridge, "orders_bridge_max_queue_depth") == 10_000  # MAX_QUEUE_DEPTH
    assert ("orders_bridge_queue_depth", ()) in bridge  # read from the broker at scrape time
    assert settled_in_redis() == 41
    assert value(bridge, "orders_aggregate_average_price") > 100
    settled = value(worker, "orders_task_outcomes_total", outcome="succeeded") + value(
        worker, "orders_task_outcomes_total", outcome="dead_lettered"
    )
    assert settled == 40
    dead_by_stage = sum(
        value(worker, "orders_task_dead_letters_total", stage=s) for s in ("process", "validate")
    )
    assert dead_by_stage == value(worker, "orders_task_outcomes_total", outcome="dead_lettered")
    assert value(worker, "orders_task_outcomes_total", outcome="retried") > 0  # 50% failures
    assert value(worker, "orders_task_processing_seconds_count") >= 40
    # Each process serves its own metrics only: no bridge counters stuck at 0 on a worker's page.
    assert not any(name.startswith("orders_bridge_") for name, _ in worker)
    assert any(name.startswith("orders_task_") for name, _ in worker)
    wait_for(
        lambda: any(name == "orders_bridge_consumer_lag" for name, _ in scrape(bridge_port)), 30,
        "librdkafka's lag statistics",
    )  # fmt: skip


def healthz(port: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_is_the_readiness_signal(pipeline: Pipeline) -> None:
    """A worker answers 200 once it consumes; a bridge 503 until its consumer joins the group, then 200."""
    worker_port, bridge_port, lonely_port = free_port(), free_port(), free_port()
    pipeline.start_worker(METRICS_PORT=str(worker_port))
    reached = {"redis": {"aggregate": "ok"}}  # the Redis it needs (orders/core/redis_health.py)
    assert healthz(worker_port) == (200, {"ready": True, **reached})
    pipeline.start_bridge(METRICS_PORT=str(bridge_port))
    assert healthz(bridge_port) == (200, {"ready": True, "paused": False, **reached})
    # A bridge whose broker is not there is alive but never ready.
    pipeline.start(
        "bridge-without-kafka", bridge_argv(), lambda _s: port_open(lonely_port),
        METRICS_PORT=str(lonely_port), KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert healthz(lonely_port) == (503, {"ready": False, "paused": False, **reached})
