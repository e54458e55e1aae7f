"""The shipped monitoring files (monitoring/) read as the tests need them, and a real Prometheus to run.

Prometheus and promtool are Debian's `prometheus` package (.ci/setup installs it). The dashboard's
queries and the rules' expressions are extracted here once, so the unit check (every query in the
JSON is one the integration test evaluates) and the integration test work from the same list.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orders.stack.supervisor import Service, free_port, wait_for
from tests.harness.services import REPO_ROOT, Running, Unavailable

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "orders.rules.yml"
RULES_TEST = PROMETHEUS_DIR / "orders.rules.test.yml"
GRAFANA_DIR = MONITORING / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "orders.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "orders.yml"

# Grafana's interval variables, as Prometheus alone must be given them.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_:]+\b")


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable(f"{name} is not on PATH: apt-get install prometheus (or make setup)")
    return found


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    expr: str

    def for_prometheus(self, interval: str = "1m") -> str:
        """The query with Grafana's interval variables replaced, as Prometheus' API takes it."""
        expr = self.expr
        for variable in GRAFANA_INTERVALS:
            expr = expr.replace(variable, interval)
        return expr


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def panel_queries(board: dict[str, Any] | None = None) -> list[PanelQuery]:
    """Every Prometheus query of every panel (rows' panels included), in the order shown."""
    board = dashboard() if board is None else board
    return [
        PanelQuery(panel["title"], target["expr"])
        for panel in _panels(board["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def rules() -> list[dict[str, Any]]:
    """Every recording and alerting rule of orders.rules.yml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recorded_names(expr: str) -> set[str]:
    """The recording rules (``level:metric:operation``) an expression reads."""
    return set(RECORDED_NAME.findall(expr))


def local_config(targets: dict[str, list[int]], interval: str = "1s") -> str:
    """The shipped prometheus.yml for this machine: each job's DNS discovery replaced by static targets.

    Job names, rule files and everything else stay as shipped, so the queries match on ``job`` as in
    compose; scrapes and evaluations run every ``interval`` so a test sees data in seconds.
    """
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "evaluation_interval": interval,
    }
    for job in config["scrape_configs"]:
        ports = targets.get(job["job_name"])
        if ports is None:
            continue
        job.pop("dns_sd_configs")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}" for port in ports]}]
    return yaml.safe_dump(config, sort_keys=False)


class Prometheus:
    """Debian's Prometheus on a free loopback port, with the shipped rules and a config from the test."""

    def __init__(self, log_dir: Path, config: str) -> None:
        self.dir = log_dir / f"prometheus-{free_port()}"
        self.dir.mkdir(parents=True)
        shutil.copy(RULES, self.dir / RULES.name)
        (self.dir / "prometheus.yml").write_text(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = Service(
            self.dir.name,
            [binary("prometheus"), f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            log_dir,
        )  # fmt: skip

    def start(self) -> Running:
        self.service.start(self._ready, timeout=30)
        return Running(self.service, self.port, self.url, self.dir)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a query Prometheus refuses)."""
        return list(self.api("query", query=expr)["result"])

    def wait_for_targets(self, jobs: set[str], timeout: float = 30) -> None:
        def all_up() -> bool:
            active = self.api("targets", state="active")["activeTargets"]
            up = {target["labels"]["job"] for target in active if target["health"] == "up"}
            return jobs <= up

        wait_for(all_up, timeout, f"Prometheus to scrape {sorted(jobs)}", interval=0.5)

    def stop(self) -> None:
        self.service.stop()
