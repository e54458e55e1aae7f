"""`orders bench`'s broker lanes, tiny, one bench per lane: RabbitMQ (one node), the RabbitMQ cluster and
three Kafka brokers against one. Each boots brokers of its own (2-4 minutes here), so they run with
``--long``, outside CI: ``python -m pytest tests/integration/test_bench_lanes.py --long``."""

from __future__ import annotations

from pathlib import Path

import pytest

# embedded_services: test_bench.py's fixture, used here by name
from tests.integration.test_bench import LANES, embedded_services, run_bench  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.long]

# Each lane's drain figure, its latency at half that rate (where it has one) and its ratios.
EXPECTED = {
    "rabbitmq": (("drain_rabbitmq",), "half_rabbitmq_latency_p99", ()),
    "rabbitmq_cluster": (("drain_rabbitmq_cluster",), "half_rabbitmq_cluster_latency_p99", ()),
    "replicated": (("drain_kafka1", "drain_kafka3"), None, ("kafka3_over_kafka1", "cpu_kafka3_over_kafka1")),
}


@pytest.mark.timeout(960)
@pytest.mark.usefixtures("embedded_services")
@pytest.mark.parametrize("lane", LANES)
def test_a_lane_reports_its_figures_and_costs(lane: str, tmp_path: Path) -> None:
    output, report = tmp_path / "benchmarks.json", tmp_path / "benchmarks.md"
    # the three-broker lane boots and warms up four JVMs: 257 s here on a busy machine, over 400 s on a
    # saturated one
    _args, results = run_bench([lane], output, report, timeout=900)

    assert results["parameters"]["phases"] == [lane]
    drains, latency, ratios = EXPECTED[lane]
    for key in drains:
        figure = results["figures"][key]
        assert figure["median"] > 0 and figure["unit"] == "orders/s", (key, figure)
        assert results["cost"][key]["components"]["total"]["median"] > 0, key
        if lane.startswith("rabbitmq"):
            assert "celery_broker" in results["cost"][key]["components"]  # RabbitMQ's own CPU
    if latency is not None:
        assert results["figures"][latency]["median"] > 0
    assert set(ratios) <= results["ratios"].keys()
    assert all(item["value"] > 0 for item in results["ratios"].values())
    assert "## What limits the pipeline" in report.read_text()
