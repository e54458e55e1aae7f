"""A real Prometheus (Debian's binary) scraping a real bridge and worker, with the shipped rules:
every Grafana panel query and every figure an alert reads returns data.

The config is monitoring/prometheus/prometheus.yml with its DNS discovery (compose service names)
replaced by the test's loopback targets, scraping and evaluating every second; job names and rules are
as shipped. When each alert fires is promtool's part (tests/unit/test_monitoring_files.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from orders.stack.supervisor import free_port, wait_for
from tests.conftest import Pipeline, unavailable
from tests.harness import monitoring
from tests.harness.kafka_io import produce_raw
from tests.harness.services import Unavailable
from tests.integration.test_pipeline import codec_for

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]

ORDERS = 60


@pytest.fixture
def prometheus_for(pipeline: Pipeline) -> Iterator[monitoring.Prometheus]:
    """A worker and a bridge serving /metrics, and a Prometheus scraping both."""
    bridge_port, worker_port = free_port(), free_port()
    pipeline.start_worker(
        METRICS_PORT=str(worker_port), FAILURE_INJECTION="true", FAILURE_RATE="0.3",
        PERMANENT_FAILURE_RATE="0.05", FAILURE_SEED="17", RETRY_BACKOFF_BASE="0", MAX_RETRIES="1",
    )  # fmt: skip
    # librdkafka's statistics (the lag figures) every second instead of every 5 s
    pipeline.start_bridge(METRICS_PORT=str(bridge_port), KAFKA_STATISTICS_INTERVAL_MS="1000")
    config = monitoring.local_config({"orders-bridge": [bridge_port], "orders-worker": [worker_port]})
    try:
        prometheus = monitoring.Prometheus(pipeline.log_dir, config)
    except Unavailable as exc:
        unavailable(str(exc))
    prometheus.start()
    yield prometheus
    prometheus.stop()


def returns_data(prometheus: monitoring.Prometheus, expr: str) -> bool:
    return bool(prometheus.query(expr))


def test_every_panel_query_and_alert_figure_returns_data(
    pipeline: Pipeline, prometheus_for: monitoring.Prometheus
) -> None:
    from orders.core.order import Order

    prometheus = prometheus_for
    prometheus.wait_for_targets({"orders-bridge", "orders-worker"})
    codec = codec_for(pipeline)
    good = [(f"k{i}".encode(), codec.encode(Order(f"mon-{i}", "Camera", 10_000 + i))) for i in range(ORDERS)]
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic, [*good, (b"bad", b"not avro")])

    # Settled in Prometheus' view: every order counted or dead-lettered, the decode failure seen.
    settled = (
        f'sum(orders_task_outcomes_total{{outcome=~"succeeded|dead_lettered"}}) >= {ORDERS}'
        ' and on() sum(orders_bridge_dead_letters_total{stage="decode"}) >= 1'
    )
    wait_for(lambda: returns_data(prometheus, settled), 90, f"{ORDERS} orders settled in Prometheus", 0.5)
    wait_for(lambda: returns_data(prometheus, "orders_bridge_consumer_lag"), 30, "lag statistics", 0.5)

    assert_every_panel_query_returns_data(prometheus)
    assert_every_rule_evaluates_and_every_alert_figure_has_data(prometheus)
    assert_dead_letters_by_stage_agree(prometheus)
    assert float(prometheus.query("orders:workers_up:count")[0]["value"][1]) == 1
    firing = prometheus.query('ALERTS{alertstate="firing"}')
    assert not [a for a in firing if a["metric"]["alertname"] == "OrdersNoLiveWorker"], firing


def assert_every_panel_query_returns_data(prometheus: monitoring.Prometheus) -> None:
    """Each query returns at least one series of finite values (the figures move in this run)."""
    empty, not_finite = [], []
    for query in monitoring.panel_queries():
        expr = query.for_prometheus("1m")
        result = prometheus.query(expr)
        if not result:
            empty.append(f"{query.panel}: {expr}")
        elif not all(math.isfinite(float(series["value"][1])) for series in result):
            not_finite.append(f"{query.panel}: {expr} -> {result}")
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert not not_finite, "panel queries with NaN/Inf:\n" + "\n".join(not_finite)


def assert_every_rule_evaluates_and_every_alert_figure_has_data(prometheus: monitoring.Prometheus) -> None:
    wait_for(lambda: all(rule_health(prometheus).values()), 30, "every rule evaluated", 0.5)
    recorded = [rule["record"] for rule in monitoring.rules() if "record" in rule]
    wait_for(lambda: all(returns_data(prometheus, name) for name in recorded), 30, "recorded figures", 0.5)
    for rule in monitoring.rules():
        if "alert" in rule:
            for name in monitoring.recorded_names(rule["expr"]):
                assert returns_data(prometheus, name), f"{rule['alert']} reads {name}, which has no data"
            prometheus.query(rule["expr"])  # valid as a query on its own (it fires or not: promtool's part)


def assert_dead_letters_by_stage_agree(prometheus: monitoring.Prometheus) -> None:
    """Every stage recorded; the processes' own counters add up to what they wrote to Redis (what
    `orders stats` and `orders top` show)."""
    rates = prometheus.query("orders:dead_letters:rate5m")
    by_stage = {s["metric"]["stage"]: float(s["value"][1]) for s in rates}
    assert by_stage.keys() == {"decode", "validate", "process"} and by_stage["decode"] > 0
    in_processes = prometheus.query(
        'sum by (stage) ({__name__=~"orders_bridge_dead_letters_total|orders_task_dead_letters_total"})'
    )
    in_redis = prometheus.query("max by (stage) (orders_aggregate_dead_letters)")
    counts = {s["metric"]["stage"]: float(s["value"][1]) for s in in_processes}
    assert counts == {s["metric"]["stage"]: float(s["value"][1]) for s in in_redis}
    assert counts["decode"] == 1 and counts["process"] > 0


def rule_health(prometheus: monitoring.Prometheus) -> dict[str, bool]:
    """Each rule's name -> evaluated without error at least once."""
    groups = prometheus.api("rules")["groups"]
    return {
        rule["name"]: rule["health"] == "ok" and not rule.get("lastError")
        for group in groups
        for rule in group["rules"]
    }
