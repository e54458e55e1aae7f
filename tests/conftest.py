"""Session fixtures: real services started by the suite itself on free loopback ports.

Kafka tests run on two lanes, Tansu first (starts in milliseconds) then Apache Kafka (the production
broker). A lane whose service cannot be had here is skipped with the reason, except under CI=true.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from orders.core.queue_depth import depth_reader
from orders.stack.processes import bridge_argv, healthz, healthz_ready, pipeline_service, worker_argv
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.supervisor import Service, wait_for
from tests.harness import services

# Replicated Redis (Sentinel, Cluster), Kafka (three brokers) and the RabbitMQ cluster on the test network
# of namespaces: tests/harness/ha_fixtures.py, kafka_fixtures.py, rabbit_fixtures.py; the independent
# checker: tests/checker/fixtures.py
pytest_plugins = (
    "tests.harness.ha_fixtures",
    "tests.harness.kafka_fixtures",
    "tests.harness.rabbit_fixtures",
    "tests.checker.fixtures",
)
log = logging.getLogger("harness")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
LANES = ["tansu", "apache"]
# Celery brokers a test taking `celery_broker` runs on; RabbitMQ's lane runs with Apache Kafka only.
CELERY_BROKERS = ["redis", "rabbitmq"]
RELIABILITY = Path(__file__).parent / "reliability"


# The cluster lane's failure detection: a worker notices a silent node within ~2 heartbeats (10 s),
# any socket gives up after 5 s (production: README's "Clustered RabbitMQ").
CLUSTER_HEARTBEAT = "5"
CLUSTER_TIMEOUT = "5"


STARTUPS: dict[str, list[float]] = {}  # in the process that runs the session
_UNREPORTED: list[tuple[str, float]] = []  # measured in this process, not yet on a test report
STARTUP_PROPERTY = "service_startup"


def record_startup(name: str, seconds: float) -> None:
    _UNREPORTED.append((name, seconds))


@pytest.fixture(autouse=True)
def _report_startups(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start-up times ride on the test's report, so xdist's controller sees every worker's."""
    yield
    request.node.user_properties.extend((STARTUP_PROPERTY, entry) for entry in _UNREPORTED)
    _UNREPORTED.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown":
        return
    for name, value in report.user_properties:
        if name == STARTUP_PROPERTY:
            service, seconds = value  # type: ignore[misc]
            STARTUPS.setdefault(service, []).append(seconds)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each service's measured start-up time (median and range when it started more than once)."""
    if not STARTUPS:
        return
    terminalreporter.section("service start-up times")
    for name, times in sorted(STARTUPS.items()):
        times = sorted(times)
        median = times[len(times) // 2]
        spread = f" (n={len(times)}, {times[0]:.2f}-{times[-1]:.2f}s)" if len(times) > 1 else ""
        terminalreporter.write_line(f"{name:28} {median:6.2f}s{spread}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "tests/reliability: crashes, restarts, fuzz, soak")
    group.addoption(
        "--long", action="store_true", help="also run the long profile (tests marked `long`): big runs, soak"
    )
    group.addoption(
        "--reliability-report",
        nargs="?",
        const="docs/reliability.md",
        default=None,
        metavar="PATH",
        help="write the reliability figures of this run to PATH (default docs/reliability.md)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The RabbitMQ lane pairs with Apache Kafka, the production broker, not with Tansu; a scenario
    marked ``celery_brokers(...)`` or ``kafka_lanes(...)`` runs on the brokers it names only. Outside
    tests/reliability (whose conftest sorts its own profiles), an item marked ``long`` needs --long."""
    run_long = config.getoption("--long")
    drop = [item for item in items if _off_lane(item) or (_long_elsewhere(item) and not run_long)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


def _long_elsewhere(item: pytest.Item) -> bool:
    return item.get_closest_marker("long") is not None and RELIABILITY not in item.path.parents


def _off_lane(item: pytest.Item) -> bool:
    kafka = item.get_closest_marker("kafka_lanes")
    if kafka is not None and _params(item).get("kafka_broker") not in kafka.args:
        return True
    broker = _params(item).get("celery_broker")
    if broker is None:
        return False
    marker = item.get_closest_marker("celery_brokers")
    if marker is not None and broker not in marker.args:
        return True
    return broker == "rabbitmq" and _params(item).get("kafka_broker", "apache") != "apache"


def _params(item: pytest.Item) -> dict[str, object]:
    callspec = getattr(item, "callspec", None)
    return callspec.params if callspec is not None else {}


def unavailable(reason: str) -> None:
    """Skip a lane locally; under CI no lane may skip."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("services")
    log.info("service logs in %s", path)
    return path


@pytest.fixture(scope="session")
def redis_server(service_logs: Path) -> Iterator[services.Running]:
    try:
        running = services.start_redis(service_logs)
        record_startup("redis-server", running.service.startup_seconds)
    except services.Unavailable as exc:
        unavailable(str(exc))
    yield running
    running.service.stop()


_next_db = itertools.count(1)  # db 0 belongs to the registry


@pytest.fixture
def redis_url(redis_server: services.Running) -> str:
    """A Redis database of this test's own, empty: the Celery broker and the aggregate live there."""
    db = next(_next_db)
    url = f"{redis_server.url}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def rabbitmq(service_logs: Path) -> Iterator[RabbitMQ]:
    """A private RabbitMQ node (Debian's rabbitmq-server), for the tests on Celery's other broker."""
    try:
        node = RabbitMQ(service_logs).start()
    except services.Unavailable as exc:
        unavailable(str(exc))
    assert node.service is not None
    record_startup("rabbitmq", node.service.startup_seconds)
    yield node
    node.stop()


@pytest.fixture(params=CELERY_BROKERS)
def celery_broker(request: pytest.FixtureRequest) -> str:
    """Which broker Celery uses in this test (a `pipeline` override applies it; see test_pipeline.py)."""
    return str(request.param)


@pytest.fixture(scope="session")
def zipkin(service_logs: Path) -> Iterator[services.Running]:
    """Zipkin in memory (orders/stack/zipkin.py), the trace backend `orders up --tracing` runs."""
    try:
        running = services.start_zipkin(service_logs)
    except services.Unavailable as exc:
        unavailable(str(exc))
    record_startup("zipkin", running.service.startup_seconds)
    yield running
    running.service.stop()


@pytest.fixture(scope="session")
def registry(service_logs: Path, redis_server: services.Running) -> Iterator[services.Running]:
    running = services.start_registry(service_logs, f"{redis_server.url}/0")
    record_startup("registry", running.service.startup_seconds)
    yield running
    running.service.stop()


@dataclass
class Broker:
    """Where a lane's Kafka is; ``running`` is None for a cluster (tests/harness/kafka_fixtures.py)."""

    lane: str
    bootstrap: str
    running: services.Running | None
    kafka: services.ApacheKafka | None = None
    replication_factor: int = 1

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topics(self, *names: str, partitions: int = 3) -> None:
        admin = self.admin()  # kept alive until the futures resolve
        replicas = self.replication_factor
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replicas) for name in names]
        )
        for future in futures.values():
            future.result(timeout=30)


@pytest.fixture(scope="session", params=LANES)
def kafka_broker(request: pytest.FixtureRequest, service_logs: Path) -> Iterator[Broker]:
    """A Kafka broker per lane; tests using it run once on each."""
    lane = request.param
    try:
        if lane == "tansu":
            running = services.start_tansu(service_logs)
            record_startup("tansu", running.service.startup_seconds)
            broker = Broker(lane, running.url, running)
        else:
            kafka = services.ApacheKafka(service_logs)
            kafka.format()
            log.info("apache kafka storage formatted in %.2fs", kafka.format_seconds)
            running = kafka.start()
            record_startup("apache-kafka (format)", kafka.format_seconds)
            record_startup("apache-kafka", running.service.startup_seconds)
            broker = Broker(lane, running.url, running, kafka)
    except services.Unavailable as exc:
        unavailable(f"{lane} lane: {exc}")
    yield broker
    if broker.kafka is not None:
        broker.kafka.stop()
    elif broker.running is not None:
        broker.running.service.stop()


@dataclass
class Pipeline:
    """Environment for one test's processes: its own topics, group, queue and Redis database."""

    broker: Broker
    env: dict[str, str]
    log_dir: Path
    processes: list[Service] = field(default_factory=list)

    @property
    def orders_topic(self) -> str:
        return self.env["ORDERS_TOPIC"]

    @property
    def dlq_topic(self) -> str:
        return self.env["DLQ_TOPIC"]

    def use_rabbitmq(self, node: RabbitMQ) -> None:
        """Celery's broker becomes ``node`` for the processes started from now on."""
        self.env["CELERY_BROKER_URL"] = node.url

    def use_rabbitmq_cluster(self, cluster: RabbitCluster, **env: str) -> None:
        """Celery's broker becomes the three-node cluster, its queue a quorum queue, for the processes
        started from now on; failure detection tuned for tests (README: Clustered RabbitMQ)."""
        self.env.update(
            CELERY_BROKER_URL=cluster.url,
            CELERY_QUEUE_TYPE="quorum",
            CELERY_BROKER_HEARTBEAT=CLUSTER_HEARTBEAT,
            CELERY_BROKER_TIMEOUT=CLUSTER_TIMEOUT,
            **env,
        )

    def celery_queue_depth(self) -> int:
        """Messages waiting in the Celery queue, on whichever broker it is."""
        broker_url = self.env.get("CELERY_BROKER_URL", self.env["REDIS_URL"])
        with closing(depth_reader(broker_url, self.env["CELERY_QUEUE"])) as reader:
            return reader.depth()

    def settings(self, **overrides: str):  # type: ignore[no-untyped-def]
        from orders.core.settings import Settings

        return Settings.from_env({**self.env, **overrides}, env_file=None)

    def start(self, name: str, argv: list[str], ready, timeout: float = 60, **env: str) -> Service:  # type: ignore[no-untyped-def]
        service = Service(self._unique(name), argv, self.log_dir, {**self.env, **env}, services.REPO_ROOT)
        return self._launch(name, service, lambda: ready(service), timeout)

    def start_worker(self, *extra: str, pool: str = "solo", healthy: bool = True, **env: str) -> Service:
        """A real `celery -A worker worker` process on this test's queue, ready when its /healthz is.

        ``pool="prefork"`` runs Celery's default pool (two children), as a bare `celery -A worker worker`.
        ``healthy=False``: started once /healthz answers at all (a worker whose Redis is away says 503).
        """
        name = self._unique("worker")
        concurrency = ("-c", "2") if pool == "prefork" else ()
        argv = worker_argv(name, "--without-mingle", *concurrency, *extra, pool=pool)
        service, port = pipeline_service(name, argv, self.log_dir, {**self.env, **env}, services.REPO_ROOT)
        ready = (lambda: healthz_ready(port)) if healthy else (lambda: healthz(port)[0] is not None)
        return self._launch("worker", service, ready)

    def start_bridge(self, **env: str) -> Service:
        """`orders bridge` on this test's topics, ready when its /healthz says it joined the group."""
        name = self._unique("bridge")
        service, port = pipeline_service(
            name, bridge_argv(), self.log_dir, {**self.env, **env}, services.REPO_ROOT
        )
        return self._launch("bridge", service, lambda: healthz_ready(port))

    def _unique(self, name: str) -> str:
        # Unique per test and process: log files are appended to.
        return f"{name}-{self.orders_topic.removeprefix('orders-')}-{len(self.processes)}"

    def _launch(self, kind: str, service: Service, ready, timeout: float = 60) -> Service:  # type: ignore[no-untyped-def]
        self.processes.append(service)
        service.start(ready, timeout=timeout)
        record_startup(f"{kind} ({self.broker.lane})" if kind == "bridge" else kind, service.startup_seconds)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.processes):
            service.stop()


@pytest.fixture
def pipeline(
    kafka_broker: Broker, redis_url: str, registry: services.Running, service_logs: Path
) -> Iterator[Pipeline]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        # Tansu: without a short session timeout the first group join waits ~23 s.
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "SCHEMA_REGISTRY_URL": registry.url,
        "REDIS_URL": redis_url,
        "ORDERS_TOPIC": f"orders-{suffix}",
        "DLQ_TOPIC": f"orders-dlq-{suffix}",
        "CONSUMER_GROUP": f"bridge-{suffix}",
        "CELERY_QUEUE": f"orders-{suffix}",
        "LOG_LEVEL": "INFO",
        # The suite drives the failure paths with the demo injector (off unless a worker enables it;
        # tests/integration/test_failure_injection.py shows a worker without it ignoring every rate).
        "FAILURE_INJECTION": "true",
    }
    started = time.monotonic()
    kafka_broker.create_topics(env["ORDERS_TOPIC"], partitions=3)
    kafka_broker.create_topics(env["DLQ_TOPIC"], partitions=1)
    log.info("topics created in %.2fs on %s", time.monotonic() - started, kafka_broker.lane)
    run = Pipeline(kafka_broker, env, service_logs)
    yield run
    run.stop_all()


__all__ = ["Broker", "Pipeline", "wait_for"]
