"""Fixtures for the replicated Kafka on the test network (issue 24); loaded by tests/conftest.py.

The contract a test gets:
- ``kafka_cluster`` (per test; started once per session, i.e. per xdist worker): a
  :class:`~orders.stack.kafka_cluster.KafkaCluster` of three broker+controller nodes, each in a node of
  ``test_network`` of its own (``kafka0``, ``kafka1``, ``kafka2``; 9092 for clients, 9093 for the
  controllers), replication factor 3, ``min.insync.replicas=2``. Before each test: every isolation and
  cut on the network healed, paused nodes resumed, dead ones restarted on their data, then every broker
  registered and every partition of every topic with a leader and all three replicas in sync, with
  preferred leaders elected. Which node leads what changes with every test: ask ``.leader_of()``.
- ``net_redis``: one redis-server (not replicated: issue 22 owns failover) in a node of its own
  (``redis0``, port 6379, 1024 databases), so processes in nodes reach it and a test can cut one of
  them from it; ``net_registry``: the dev registry on the host's bridge address (nodes reach it), with
  basic auth carried in its URL.
- ``cluster_pipeline``: a :class:`NetworkPipeline` on all of that: its own topics (3 replicas), group,
  queue and Redis database; ``start_worker(node=...)`` / ``start_bridge(node=...)`` run a process in a
  node of the test's own (``net_node("w")``), the host otherwise. Topics are deleted after the test.
- The node of a server: ``test_network.node_at(address)`` (``cluster.nodes[i].host.address``,
  ``net_redis.host.address``).
A test that cannot have the network fails with the reason, never skips (ha_fixtures.py).

Tests on the cluster live under a ``cluster/`` directory (tests/integration/cluster/,
tests/reliability/cluster/): under ``--dist loadfile`` they all go to one xdist worker, so one cluster
starts per run instead of one per worker (three JVMs each, on a 2-core machine).
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from xdist.scheduler import LoadFileScheduling

from orders.stack.kafka_cluster import KafkaCluster
from orders.stack.processes import bridge_argv, healthz_ready, pipeline_service, worker_argv
from orders.stack.redis_ha import RedisNode
from orders.stack.services import Running, Unavailable, start_registry
from orders.stack.supervisor import Service
from tests.conftest import Broker, Pipeline, record_startup, unavailable
from tests.harness.netns import Node, TestNetwork
from tests.harness.services import REPO_ROOT

RESTORE_TIMEOUT = 90.0
CLUSTER_LANE = "cluster"
CLUSTER_DIRECTORY = "/cluster/"


class OneWorkerForTheCluster(LoadFileScheduling):  # type: ignore[misc]
    """``--dist loadfile``, except that every test under a ``cluster/`` directory is one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return CLUSTER_DIRECTORY if CLUSTER_DIRECTORY in f"/{path}" else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> OneWorkerForTheCluster | None:
    if config.getoption("dist") != "loadfile":
        return None
    return OneWorkerForTheCluster(config, log)


@pytest.fixture(scope="session")
def kafka_cluster_set(test_network: TestNetwork, service_logs: Path) -> Iterator[KafkaCluster]:
    nodes = [test_network.add_node(f"kafka{i}") for i in range(3)]
    try:
        cluster = KafkaCluster(service_logs, [node.host() for node in nodes])
    except Unavailable as exc:
        unavailable(f"kafka cluster: {exc}")
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    record_startup("kafka cluster (3 nodes, format)", cluster.format_seconds)
    record_startup("kafka cluster (3 nodes)", cluster.startup_seconds)
    yield cluster
    test_network.heal_all()  # a node cut off would wait out its controlled shutdown
    cluster.stop()
    for node in nodes:
        test_network.remove_node(node)


@pytest.fixture
def kafka_cluster(kafka_cluster_set: KafkaCluster, test_network: TestNetwork) -> KafkaCluster:
    test_network.heal_all()
    kafka_cluster_set.restore(RESTORE_TIMEOUT)
    return kafka_cluster_set


@pytest.fixture(scope="session")
def net_redis(test_network: TestNetwork, service_logs: Path) -> Iterator[RedisNode]:
    node = test_network.add_node("redis0")
    server = RedisNode("net-redis", node.host(), service_logs, ["databases 1024"])
    server.start()
    record_startup("redis-server (in a node)", server.service.startup_seconds)
    yield server
    server.stop()
    test_network.remove_node(node)


@pytest.fixture(scope="session")
def net_registry(test_network: TestNetwork, net_redis: RedisNode, service_logs: Path) -> Iterator[Running]:
    """The registry on the bridge address: beyond loopback it requires basic auth (in the URL here)."""
    auth = f"suite:{secrets.token_hex(12)}"
    running = start_registry(
        service_logs, f"redis://{net_redis.host.address}:{net_redis.port}/0", name="net-registry",
        basic_auth=auth, host=test_network.host.address,
    )  # fmt: skip
    running.url = running.url.replace("://", f"://{auth}@", 1)
    record_startup("registry (on the bridge)", running.service.startup_seconds)
    yield running
    running.service.stop()


@dataclass(kw_only=True)
class NetworkPipeline(Pipeline):
    """A :class:`Pipeline` on the replicated Kafka whose processes may run in nodes of the test network."""

    cluster: KafkaCluster
    network: TestNetwork
    redis: RedisNode

    @property
    def redis_node(self) -> Node:
        return self.network.node_at(self.redis.host.address)

    def kafka_nodes(self) -> list[Node]:
        return [self.network.node_at(node.host.address) for node in self.cluster.nodes]

    def start_worker(self, *extra: str, pool: str = "solo", node: Node | None = None, **env: str) -> Service:
        """A worker on the host, or in ``node`` (its /healthz on the node's address)."""
        if node is None:
            return super().start_worker(*extra, pool=pool, **env)
        name = self._unique("worker")
        concurrency = ("-c", "2") if pool == "prefork" else ()
        argv = [*node.prefix, *worker_argv(name, "--without-mingle", *concurrency, *extra, pool=pool)]
        return self._in_node("worker", name, argv, node, env)

    def start_bridge(self, node: Node | None = None, **env: str) -> Service:  # type: ignore[override]
        if node is None:
            return super().start_bridge(**env)
        name = self._unique("bridge")
        return self._in_node("bridge", name, [*node.prefix, *bridge_argv()], node, env)

    def _in_node(self, kind: str, name: str, argv: list[str], node: Node, env: dict[str, str]) -> Service:
        env = {**self.env, **env, "METRICS_HOST": node.address}
        service, port = pipeline_service(name, argv, self.log_dir, env, REPO_ROOT)
        return self._launch(kind, service, lambda: healthz_ready(port, node.address))


_next_net_db = itertools.count(1)  # db 0 holds the registry's schemas


@pytest.fixture
def cluster_pipeline(
    kafka_cluster: KafkaCluster,
    net_redis: RedisNode,
    net_registry: Running,
    test_network: TestNetwork,
    service_logs: Path,
) -> Iterator[NetworkPipeline]:
    suffix = uuid.uuid4().hex[:8]
    db = next(_next_net_db)
    redis_url = f"redis://{net_redis.host.address}:{net_redis.port}/{db}"
    net_redis.client(db=db).flushdb()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "SCHEMA_REGISTRY_URL": net_registry.url,
        "REDIS_URL": redis_url,
        "ORDERS_TOPIC": f"orders-{suffix}",
        "DLQ_TOPIC": f"orders-dlq-{suffix}",
        "CONSUMER_GROUP": f"bridge-{suffix}",
        "CELERY_QUEUE": f"orders-{suffix}",
        "LOG_LEVEL": "INFO",
        "FAILURE_INJECTION": "true",
    }
    broker = Broker(
        CLUSTER_LANE, kafka_cluster.bootstrap, None, replication_factor=kafka_cluster.replication_factor
    )
    started = time.monotonic()
    broker.create_topics(env["ORDERS_TOPIC"], partitions=3)
    broker.create_topics(env["DLQ_TOPIC"], partitions=1)
    kafka_cluster.wait_healthy(30)  # every new partition with its three replicas in sync
    record_startup("cluster topics", time.monotonic() - started)
    run = NetworkPipeline(
        broker=broker,
        env=env,
        log_dir=service_logs,
        cluster=kafka_cluster,
        network=test_network,
        redis=net_redis,
    )
    yield run
    run.stop_all()
    try:
        for future in broker.admin().delete_topics([env["ORDERS_TOPIC"], env["DLQ_TOPIC"]]).values():
            future.result(timeout=30)
    except (KafkaException, TimeoutError):
        # A cluster a test left broken, or one too busy to delete in 30 s (local CI run 7: a teardown
        # error after the test passed): the names are the test's own, and the next restore checks health.
        pass
