"""The shipped Prometheus and Grafana files, checked without a Docker engine.

promtool (Debian's `prometheus` package) validates the config and rules and runs the rules' unit
tests; the rest reads the files: the dashboard JSON, its datasource, and how docker-compose.yml wires
Prometheus to the bridge and the workers. tests/integration/test_monitoring.py runs every query
against a real Prometheus scraping real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.harness import monitoring
from tests.harness.services import REPO_ROOT, Unavailable

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# What the dashboard must show (the list), each by a metric its queries read.
REQUIRED_FIGURES = {
    "throughput": "orders_bridge_consumed_total",
    "retries": 'outcome="retried"',
    "DLQ by stage": "sum by (stage)",
    "consumer lag": "orders_bridge_consumer_lag",
    "queue depth": "orders_bridge_queue_depth",
    "latency quantiles": "histogram_quantile(0.99",
    "running average": "orders_aggregate_average_price",
}
REQUIRED_ALERTS = {
    "OrdersDeadLetterRateHigh",
    "OrdersConsumerLagGrowing",
    "OrdersQueueAtBackpressureBound",
    "OrdersNoLiveWorker",
    "OrdersLatencyP99High",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        binary = monitoring.binary("promtool")
    except Unavailable as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config_and_its_rules() -> None:
    result = promtool("check", "config", str(monitoring.PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_lints_the_rules_clean() -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(monitoring.RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    result = promtool("test", "rules", str(monitoring.RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load(monitoring.RULES_TEST.read_text())["tests"]
    exercised = {case["alertname"] for test in tested for case in test.get("alert_rule_test", [])}
    silent = {  # each alert has a case where it must stay silent and one where it must fire
        case["alertname"]
        for test in tested
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in monitoring.rules() if "alert" in rule}
    assert alerts == REQUIRED_ALERTS
    assert exercised == alerts and silent == alerts


def test_every_alert_compares_recorded_figures() -> None:
    """So the integration test's "each figure returns data" covers what every alert reads."""
    recorded = {rule["record"] for rule in monitoring.rules() if "record" in rule}
    for rule in monitoring.rules():
        if "alert" in rule:
            names = monitoring.recorded_names(rule["expr"])
            assert names and names <= recorded, rule["alert"]


def _exprs_anywhere(node: Any) -> Iterator[str]:
    """Every "expr" value at any depth of the JSON, whatever the panel type or nesting."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs_anywhere(item)


def test_dashboard_json_is_valid_and_every_query_is_one_the_integration_test_runs() -> None:
    board = json.loads(monitoring.DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["panels"]
    tested = {query.expr for query in monitoring.panel_queries(board)}
    assert set(_exprs_anywhere(board)) == tested
    assert all(query.strip() for query in tested)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    joined = "\n".join(tested)
    missing = [figure for figure, needle in REQUIRED_FIGURES.items() if needle not in joined]
    assert not missing, f"the dashboard lacks {missing}"


def test_panels_use_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(monitoring.DATASOURCES.read_text())["datasources"]
    uids = {source["uid"] for source in datasources if source["type"] == "prometheus"}
    board = json.loads(monitoring.DASHBOARD.read_text())
    for panel in board["panels"]:
        for holder in (panel, *panel.get("targets", [])):
            assert holder["datasource"]["uid"] in uids, panel["title"]


ZIPKIN_DATASOURCE = REPO_ROOT / "monitoring/grafana/provisioning/datasources/zipkin.yml"


def test_compose_runs_prometheus_and_grafana_on_these_files() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    assert mounts["./monitoring/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    grafana_mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert grafana_mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(monitoring.DASHBOARD_PROVIDERS.read_text())["providers"]
    assert grafana_mounts["./monitoring/grafana/dashboards"] == providers[0]["options"]["path"]
    datasource = yaml.safe_load(monitoring.DATASOURCES.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    for service in (prometheus, grafana):
        assert all(str(port).startswith("127.0.0.1:") for port in service["ports"])


def test_grafana_and_every_process_use_compose_s_zipkin() -> None:
    """The trace backend compose runs is Grafana's Zipkin datasource and every process's exporter target."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    zipkin = compose["services"]["zipkin"]
    assert zipkin["image"].startswith("openzipkin/zipkin:")
    assert all(str(port).startswith("127.0.0.1:") for port in zipkin["ports"])
    sources = yaml.safe_load((ZIPKIN_DATASOURCE).read_text())["datasources"]
    assert [(s["type"], s["url"]) for s in sources] == [("zipkin", "http://zipkin:9411")]
    for name in ("worker", "bridge", "producer", "dashboard"):
        env = compose["services"][name].get("environment") or compose["x-app-env"]
        assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == "http://zipkin:9411/api/v2/spans", name


def test_prometheus_discovers_each_scaled_service_on_its_metrics_port() -> None:
    """dns_sd_configs name the compose services and the METRICS_PORT each one serves."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    jobs = yaml.safe_load(monitoring.PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    discovered = {}
    for job in jobs:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            for name in sd["names"]:
                discovered[name] = (job["job_name"], sd["port"])
    assert set(discovered) == {"bridge", "worker"}
    for name, (_job, port) in discovered.items():
        assert int(services[name]["environment"]["METRICS_PORT"]) == port, name
        assert str(port) in [str(p) for p in services[name].get("expose", [])], name
    queried = "\n".join(query.expr for query in monitoring.panel_queries())
    assert 'job="orders-worker"' in queried and discovered["worker"][0] == "orders-worker"
