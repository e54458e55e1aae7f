"""The stack `orders up` runs: the whole pipeline on one machine without Docker, started and stopped in order.

Services first (Tansu, redis-server, the registry), then the Celery workers, the bridge, Flower, the
web dashboard and the demo producer. Stopping goes the other way, the services last.

Nothing listens beyond loopback, and every secret is made for this run alone (`RunSecrets`): the Redis
password, the registry's basic auth, Flower's and the dashboard's. The summary prints URLs carrying
them, as Jupyter does; `orders env` exports what clients need.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from orders.core.settings import Settings, with_database
from orders.registry.settings import REGISTRY_DATABASE
from orders.stack import services
from orders.stack.kafka_cluster import replication_for
from orders.stack.options import RunSecrets, StackOptions, with_credentials
from orders.stack.processes import (
    PYTHON,
    bridge_argv,
    flower_argv,
    healthz_ready,
    pipeline_service,
    worker_argv,
)
from orders.stack.state import STATE_FILE, write_state
from orders.stack.supervisor import Service, free_port, port_open
from orders.stack.zipkin import spans_endpoint, start_zipkin

log = logging.getLogger(__name__)


class StackError(Exception):
    """The stack cannot start (a missing program, a port in use); the message says what to do."""


@dataclass
class Stack:
    """The running children, in start order, and the environment that reaches them."""

    options: StackOptions
    settings: Settings
    run_dir: Path
    secrets: RunSecrets = field(default_factory=RunSecrets)
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    children: list[Service] = field(default_factory=list)
    # Lines the summary shows above the URLs (a conventional port that was taken, ...).
    notes: list[str] = field(default_factory=list)

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

    def write_state(self) -> None:
        """What `orders env` prints while this stack runs (orders/stack/state.py)."""
        write_state(self.env, self.urls, self.log_dir, {child.name: child.pid for child in self.children})

    def stop(self, grace: float = 10.0) -> None:
        """Producer, dashboard, Flower, bridge, workers, then the services: the reverse of start order."""
        for child in reversed(self.children):
            code = child.stop(grace)
            log.info("stopped %s (exit code %s)", child.name, code)
        STATE_FILE.unlink(missing_ok=True)


def _port(stack: Stack, service: str, wanted: int, option: str | None) -> int:
    """``wanted`` when it is free (0: any free port); ``option`` names its ``--<option>-port``, if any.

    A default port that is taken falls back to a free one, with a note in the summary; a port the user
    gave stops start-up instead, since their clients expect it there.
    """
    if not wanted:
        return free_port()
    if not port_open(wanted):
        return wanted
    if option in stack.options.explicit_ports:
        raise StackError(f"port {wanted} (--{option}-port) is in use; pick another or pass 0 for a free one")
    port = free_port()
    hint = f" (--{option}-port to choose)" if option else ""
    stack.notes.append(f"port {wanted} is in use: {service} listens on {port} instead{hint}")
    return port


def start_broker(stack: Stack, data_dir: Path) -> tuple[services.Running, dict[str, str]]:
    """Tansu (the default: in memory, starts at once) or Apache Kafka in KRaft mode with its log in
    ``data_dir``, so a restart keeps the topics; with the options its clients need."""
    port = _port(stack, "kafka", stack.options.kafka_port, "kafka")
    if stack.options.broker == "kafka":
        kafka = services.ApacheKafka(stack.log_dir, port, data_dir / "kafka", name="kafka")
        if not kafka.formatted:
            kafka.format()
        return kafka.start(), {}
    tansu = services.start_tansu(stack.log_dir, port, name="tansu")
    # Tansu: without a short session timeout a consumer's first group join waits ~23 s; and it answers
    # a fetch only when its wait expires, not when data arrives, so keep the wait short.
    return tansu, {"KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_FETCH_WAIT_MAX_MS": "10"}


def start_services(stack: Stack) -> None:
    """The broker, redis-server and the registry; fills in the env every later child gets."""
    opts = stack.options
    data_dir = opts.data_dir or stack.run_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        kafka, client_options = start_broker(stack, data_dir)
        stack.children.append(kafka.service)
        aof = ("--appendonly", "yes", "--appendfsync", "everysec")
        redis_server = services.start_redis(
            stack.log_dir,
            _port(stack, "redis", opts.redis_port, "redis"),
            data_dir,
            aof,
            "redis",
            stack.secrets.redis_password,
        )
        stack.children.append(redis_server.service)
        redis_url = f"{redis_server.url}/0"
        registry = services.start_registry(
            stack.log_dir,
            with_database(redis_url, REGISTRY_DATABASE),  # apart from the aggregate: see `orders reset`
            _port(stack, "registry", opts.registry_port, "registry"),
            "registry",
            stack.secrets.registry_auth,
            aggregate_url=redis_url,
        )
        stack.children.append(registry.service)
    except services.Unavailable as exc:
        raise StackError(str(exc)) from exc
    stack.env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka.url,
        **client_options,
        REDIS_URL=redis_url,
        SCHEMA_REGISTRY_URL=registry.url,
        SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=stack.secrets.registry_auth,
    )
    create_topics(stack)
    if opts.tracing:
        start_trace_backend(stack)
    stack.urls.update(
        kafka=stack.env["KAFKA_BOOTSTRAP_SERVERS"], redis=redis_url,
        registry=with_credentials(registry.url, stack.secrets.registry_auth),
    )  # fmt: skip


def start_trace_backend(stack: Stack) -> None:
    """Zipkin, in memory; every child started after it exports its spans there (OTEL_* in their env)."""
    try:
        zipkin = start_zipkin(
            stack.log_dir, _port(stack, "zipkin", stack.options.zipkin_port, "zipkin"), "zipkin"
        )
    except services.Unavailable as exc:
        raise StackError(str(exc)) from exc
    stack.children.append(zipkin.service)
    stack.env.update(OTEL_EXPORTER_ZIPKIN_ENDPOINT=spans_endpoint(zipkin.url), TRACES_URL=zipkin.url)
    stack.urls["zipkin"] = f"{zipkin.url}/zipkin/"


def create_topics(stack: Stack) -> None:
    """The orders topic and the DLQ, replicated as the broker count allows (:func:`replication_for`:
    one replica on the one broker `orders up` runs; 3 with min.insync.replicas=2 from three brokers)."""
    admin = AdminClient({"bootstrap.servers": stack.env["KAFKA_BOOTSTRAP_SERVERS"]})
    factor, min_isr = replication_for(len(admin.list_topics(timeout=30).brokers))
    config = {"min.insync.replicas": str(min_isr)} if factor > 1 else {}
    topics = [
        NewTopic(stack.settings.orders_topic, stack.options.partitions, factor, config=config),
        NewTopic(stack.settings.dlq_topic, 1, factor, config=config),
    ]
    for future in admin.create_topics(topics).values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:  # a durable broker's restart: the topics are there already
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def start_pipeline(stack: Stack) -> None:
    """Workers (one solo process each: the fastest layout measured), bridge, Flower, dashboard, producer."""
    opts = stack.options
    # The demo's failure injection: on for these workers only (a worker is started without it otherwise).
    faults = {"FAILURE_INJECTION": "true", "FAILURE_RATE": str(opts.failure_rate)}
    for n in range(1, opts.workers + 1):
        port = opts.metrics_port + n if opts.metrics_port else 0
        start_ready(stack, f"worker{n}", worker_argv(f"worker{n}"), port, **faults)
    start_ready(stack, "bridge", bridge_argv(), opts.metrics_port)
    if opts.flower:
        port = _port(stack, "flower", opts.flower_port, "flower")
        argv = flower_argv(port, opts.flower_max_tasks)
        # Credentials through Flower's environment, not its command line (which `ps` shows to anyone).
        auth = stack.secrets.flower_auth
        stack.start_child("flower", argv, lambda _s: port_open(port), FLOWER_BASIC_AUTH=auth)
        stack.urls["flower"] = with_credentials(f"http://127.0.0.1:{port}", auth)
    if opts.dashboard:
        port = _port(stack, "dashboard", opts.dashboard_port, "dashboard")
        argv = [PYTHON, "-m", "orders.cli", "dashboard", "--host", "127.0.0.1", "--port", str(port)]
        token = stack.secrets.dashboard_token
        stack.start_child("dashboard", argv, lambda _s: port_open(port), DASHBOARD_TOKEN=token)
        # Opened once, the token becomes a session cookie and leaves the address bar.
        stack.urls["dashboard"] = f"http://127.0.0.1:{port}/?token={token}"
    if opts.producer:
        argv = [PYTHON, "-m", "orders.cli", "produce", "--rate", str(opts.rate), "--quiet"]
        stack.start_child("producer", argv, lambda s: s.running())


def start_ready(stack: Stack, name: str, argv: list[str], metrics_port: int, **env: str) -> Service:
    """A worker or bridge serving /metrics on ``metrics_port`` (or a free one), started once its /healthz
    answers 200."""
    # Only the bridge's port is the option's own; the workers' follow it.
    port = _port(stack, f"{name} /metrics", metrics_port, "metrics" if name == "bridge" else None)
    service, port = pipeline_service(
        name, argv, stack.log_dir, {**stack.env, **env, "METRICS_PORT": str(port)}
    )
    stack.children.append(service)
    service.start(lambda: healthz_ready(port), timeout=90)
    stack.urls[f"{name} metrics"] = f"http://127.0.0.1:{port}/metrics"
    return service


def new_stack(settings: Settings, options: StackOptions) -> Stack:
    run_dir = Path(tempfile.mkdtemp(prefix="orders-up-"))
    (run_dir / "logs").mkdir()
    base_env = {
        "ORDERS_TOPIC": settings.orders_topic,
        "DLQ_TOPIC": settings.dlq_topic,
        "CELERY_QUEUE": settings.celery_queue,
        "CONSUMER_GROUP": settings.consumer_group,
        # /metrics and /healthz of the workers and the bridge stay on this machine.
        "METRICS_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    return Stack(options, settings, run_dir, env=base_env)
