"""`orders up` as a user runs it: a subprocess that starts everything, shows progress, stops cleanly."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from orders.core.aggregate import Aggregate
from orders.stack.supervisor import wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    result = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return bool(result.stdout.strip())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of the test's own: `orders up` keeps its state file under it."""
    return tmp_path


def run_orders(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "orders.cli", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_orders_up_runs_the_pipeline_and_stops_everything(home: Path, tmp_path: Path) -> None:
    out = (tmp_path / "up.out").open("wb")
    env = {**os.environ, "HOME": str(home), "RETRY_BACKOFF_BASE": "1", "MAX_RETRIES": "1"}
    up = subprocess.Popen(
        [sys.executable, "-m", "orders.cli", "up", "--rate", "40", "--failure-rate", "0.1", "--workers", "2"],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    state_file = home / ".cache/orders-pipeline/up.json"
    try:
        wait_for(lambda: state_file.exists() or up.poll() is not None, 120, "orders up to start")
        assert up.poll() is None, (tmp_path / "up.out").read_text()
        state = json.loads(state_file.read_text())

        exports = run_orders(home, "env")
        assert exports.returncode == 0
        exported = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in exports.stdout.splitlines()
            if line.startswith("export ")
        )
        assert exported["REDIS_URL"] == state["env"]["REDIS_URL"]
        assert {
            "KAFKA_BOOTSTRAP_SERVERS",
            "SCHEMA_REGISTRY_URL",
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
            "ORDERS_TOPIC",
            "DLQ_TOPIC",
        } <= exported.keys()
        _check_the_run_secrets(state, exported, state_file)
        _check_conventional_ports(state["urls"], (tmp_path / "up.out").read_text())
        printed = (tmp_path / "up.out").read_text().splitlines()  # a file: 80 columns to rich
        for name, url in state["urls"].items():
            assert any(url in line for line in printed), f"{name}'s URL is not printed whole on one line"
        for name in ("bridge", "worker1", "worker2"):
            url = state["urls"][f"{name} metrics"]
            assert f"# {name} metrics: {url}" in exports.stdout
            assert _status(url) == 200

        aggregate = Aggregate(redis.Redis.from_url(exported["REDIS_URL"]))
        wait_for(lambda: aggregate.snapshot().count > 20, 60, "orders processed")
        first = aggregate.snapshot().count
        wait_for(lambda: aggregate.snapshot().count > first, 30, "the count to keep rising")
        wait_for(lambda: aggregate.snapshot().counters["retry_attempts"] > 0, 60, "retries at 10% failures")
        wait_for(lambda: aggregate.snapshot().counters["dlq"] > 0, 90, "DLQ entries (1 retry, 10% failures)")
        assert aggregate.snapshot().average is not None

        stats = subprocess.run([sys.executable, "-m", "orders.cli", "stats", "--json"], capture_output=True,
                               text=True, env={**os.environ, **exported}, timeout=30)  # fmt: skip
        assert json.loads(stats.stdout)["count"] >= first

        dashboard = _dashboard_state(state["urls"]["dashboard"])
        assert dashboard["processing"]["succeeded"] > 0 and dashboard["producer"]["produced"] > 0

        tasks = _flower_tasks(state["urls"]["flower"])
        processed = [
            t for t in tasks.values() if t["name"] == "orders.process_order" and t["state"] == "SUCCESS"
        ]
        assert processed, "Flower lists processed tasks"
        assert all(len(t["args"].split()) == 3 for t in processed[:20])  # "orderId product price"

        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
        children = state["children"]
        assert set(children) >= {
            "tansu",
            "redis",
            "registry",
            "worker1",
            "worker2",
            "bridge",
            "flower",
            "dashboard",
            "producer",
        }
        wait_for(lambda: not any(_alive(pid) or _group_alive(pid) for pid in children.values()), 15,
                 "every child process to be gone")  # fmt: skip
        assert not state_file.exists()
        assert run_orders(home, "env").returncode != 0
    finally:
        if up.poll() is None:
            up.kill()


# Each service's URL key in the state and the port a new user expects it on.
CONVENTIONAL_PORTS = {
    "kafka": 9092, "redis": 6379, "registry": 8081, "flower": 5555, "dashboard": 8050,
    "bridge metrics": 9100, "worker1 metrics": 9101, "worker2 metrics": 9102,
}  # fmt: skip


def _check_conventional_ports(urls: dict[str, str], output: str) -> None:
    """Every service on its usual port, or (the port was taken here) a line in the output saying so."""
    for name, port in CONVENTIONAL_PORTS.items():
        actual = urlsplit(urls[name] if "://" in urls[name] else f"tcp://{urls[name]}").port
        if actual != port:
            assert f"port {port} is in use: " in output, f"{name} on {actual} and no line says why"


def _status(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _basic(url: str) -> tuple[str, dict[str, str]]:
    """``http://user:pw@host:port`` -> (``http://host:port``, its Authorization header)."""
    parts = urlsplit(url)
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(), {
        "Authorization": f"Basic {token}"
    }


def _check_the_run_secrets(state: dict, exported: dict[str, str], state_file: Path) -> None:  # type: ignore[type-arg]
    """Every service asks for the secrets made for this run; the state file is for its owner only."""
    assert state_file.stat().st_mode & 0o077 == 0
    redis_port = urlsplit(exported["REDIS_URL"]).port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_port).ping()
    registry, auth = _basic(state["urls"]["registry"])
    assert exported["SCHEMA_REGISTRY_URL"] == registry
    printed = urlsplit(state["urls"]["registry"])
    assert exported["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == f"{printed.username}:{printed.password}"
    assert (_status(f"{registry}/subjects"), _status(f"{registry}/subjects", **auth)) == (401, 200)
    flower, auth = _basic(state["urls"]["flower"])
    assert (_status(f"{flower}/api/workers"), _status(f"{flower}/api/workers", **auth)) == (401, 200)
    dashboard = urlsplit(state["urls"]["dashboard"])
    assert dashboard.query.startswith("token=") and len(dashboard.query) > 30
    assert _status(dashboard._replace(query="", path="/api/state").geturl()) == 401


def _flower_tasks(url: str) -> dict[str, dict]:  # type: ignore[type-arg]
    result: dict[str, dict] = {}  # type: ignore[type-arg]
    base, auth = _basic(url)

    def fetched() -> bool:
        request = urllib.request.Request(f"{base}/api/tasks?limit=200", headers=auth)
        with urllib.request.urlopen(request, timeout=5) as response:
            result.update(json.loads(response.read()))
        return any(t.get("state") == "SUCCESS" for t in result.values())

    wait_for(fetched, 30, "Flower to list tasks")
    return result


def _dashboard_state(url: str) -> dict:  # type: ignore[type-arg]
    """The dashboard's latest pushed state, once it has sampled some processed orders.

    Opened as a browser would: the printed URL's token buys a session cookie, which then reads the state.
    """
    result: dict = {}  # type: ignore[type-arg]
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with browser.open(url, timeout=5) as page:
        assert "token=" not in page.url  # redirected to / with a cookie
    state_url = urlsplit(url)._replace(query="", path="/api/state").geturl()

    def sampled() -> bool:
        with browser.open(state_url, timeout=5) as response:
            result.update(json.loads(response.read()))
        return bool(result.get("processing")) and result["processing"]["succeeded"] > 0

    wait_for(sampled, 30, "the dashboard to show processed orders")
    return result
