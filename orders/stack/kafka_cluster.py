"""A replicated Apache Kafka for the tests and the bench: three KRaft nodes from the cached jars.

Each node is a combined broker and controller (``process.roles=broker,controller``), as small
production clusters run; the three controllers form a static quorum (``controller.quorum.voters``).
Where a node runs is a :class:`~orders.stack.redis_ha.Host`: loopback, or a test network node
(tests/harness/netns.py), where it listens on the standard ports 9092 (clients) and 9093 (controllers).

Durability, as production should set it: every topic (the internal ones too) has three replicas,
``min.insync.replicas=2`` (an ``acks=all`` write is acknowledged once every in-sync replica holds it
and refused while fewer than two are in sync, so one broker may fail without losing an acknowledged
record or stopping writes; a silent one holds writes up until it leaves the ISR), and unclean leader
election is off (a replica that is not in sync never becomes leader). With fewer nodes the factors
shrink to fit (:func:`replication_for`).

Failure detection (:class:`Detection`) is tuned so that faults resolve in seconds in the tests;
:data:`PRODUCTION` holds Kafka's own defaults, which production should keep. Each node's heap is
small (:data:`HEAP`): three JVMs share a 2-core machine with the rest of the suite.

Readiness is never a log line: every broker registered and unfenced (the cluster's metadata lists
it), and every partition of every topic with a leader and all of its replicas in sync
(:meth:`KafkaCluster.problem`). :meth:`KafkaCluster.restore` brings a cluster back to that state after
a test's faults (paused nodes resumed, dead ones restarted on their data).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from confluent_kafka import ElectionType, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from orders.stack.redis_ha import LOOPBACK, Host, wait_until
from orders.stack.services import ensure_kafka_jars, kafka_java, new_cluster_id
from orders.stack.supervisor import Service, ServiceBacked

log = logging.getLogger(__name__)

BROKER_PORT, CONTROLLER_PORT = 9092, 9093
# -Xms, -Xmx per node (the single node's default is 256m-768m): each node's resident memory was
# ~420 MB through the reliability scenarios, and the three start in 12-20 s on this 2-core machine.
HEAP = ("320m", "320m")
# Partitions of the internal topics: Kafka's 50 offsets partitions, three times replicated, cost
# seconds at start and at every leader change; the suite's groups fit in a few.
INTERNAL_PARTITIONS = 6
ADMIN_TIMEOUT = 3.0
CHECK_INTERVAL = 0.25  # each health check asks three brokers with new clients: not every 50 ms
OFFSETS_TOPIC = "__consumer_offsets"


@dataclass(frozen=True)
class Detection:
    """How soon the cluster notices a dead, frozen or cut-off peer (milliseconds).

    - ``broker_session_timeout_ms``: a broker that sent no heartbeat to the controller for this long
      is fenced; its partitions get new leaders (heartbeats every ``broker_heartbeat_interval_ms``).
    - ``replica_lag_time_max_ms``: a follower this far behind leaves the ISR, so ``acks=all`` writes
      stop waiting for it; ``replica_socket_timeout_ms`` bounds a follower's fetch from a silent leader.
    - ``controller_quorum_*``: how soon the controllers notice a silent active controller and elect
      another.
    """

    broker_session_timeout_ms: int = 3000
    broker_heartbeat_interval_ms: int = 500
    replica_lag_time_max_ms: int = 5000
    replica_socket_timeout_ms: int = 5000
    controller_quorum_fetch_timeout_ms: int = 1000
    controller_quorum_election_timeout_ms: int = 500
    controller_quorum_request_timeout_ms: int = 1000

    def lines(self) -> list[str]:
        return [f"{f.name.replace('_', '.')}={getattr(self, f.name)}" for f in fields(self)]


# Kafka 4.1's defaults: what production should use (seconds of tolerance for GC pauses and slow disks).
PRODUCTION = Detection(9000, 2000, 30000, 30000, 2000, 1000, 2000)


def replication_for(brokers: int, wanted: int = 3) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``: up to ``wanted`` replicas,
    and one fewer in sync than that (one may fail without stopping writes), but at least 1."""
    factor = max(1, min(wanted, brokers))
    return factor, max(1, factor - 1)


class KafkaNode(ServiceBacked):
    """One broker+controller process on a :class:`Host`, with its data directory and config file."""

    STOP_GRACE = 20  # a controlled shutdown moves its partitions' leadership first

    def __init__(self, node_id: int, host: Host, log_dir: Path, tag: str, heap: tuple[str, str]) -> None:
        self.node_id, self.host = node_id, host
        self.name = f"{tag}-{node_id}"
        self.port = host.port(BROKER_PORT)
        self.controller_port = host.port(CONTROLLER_PORT)
        self.data_dir = log_dir / self.name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.data_dir / "server.properties"
        self.jars = ensure_kafka_jars()
        argv = [*host.prefix, *kafka_java(self.jars, "kafka.Kafka", str(self.config), heap=heap)]
        self.service = Service(self.name, argv, log_dir)

    def __repr__(self) -> str:
        return f"<{self.name} {self.bootstrap}>"

    @property
    def bootstrap(self) -> str:
        return f"{self.host.address}:{self.port}"

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{self.host.address}:{self.controller_port}"

    def properties(self, voters: str, replication: tuple[int, int], detection: Detection) -> str:
        factor, min_isr = replication
        address = self.host.address
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{address}:{self.port},CONTROLLER://{address}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{address}:{self.port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'logs'}",
            # Durability: topics created without their own settings, and the internal ones.
            f"default.replication.factor={factor}",
            f"min.insync.replicas={min_isr}",
            "unclean.leader.election.enable=false",
            f"offsets.topic.replication.factor={factor}",
            f"offsets.topic.num.partitions={INTERNAL_PARTITIONS}",
            f"transaction.state.log.replication.factor={factor}",
            f"transaction.state.log.min.isr={min_isr}",
            f"transaction.state.log.num.partitions={INTERNAL_PARTITIONS}",
            f"share.coordinator.state.topic.replication.factor={factor}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            # A topic is made on purpose (with its replication), never by a typo in a client.
            "auto.create.topics.enable=false",
            "num.partitions=3",
            "group.initial.rebalance.delay.ms=0",
            # Followers retry a failed fetch sooner than the default 1 s.
            "replica.fetch.backoff.ms=200",
            *detection.lines(),
            "",
        ])  # fmt: skip

    def write_config(self, voters: str, replication: tuple[int, int], detection: Detection) -> None:
        self.config.write_text(self.properties(voters, replication, detection))

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "logs" / "meta.properties").exists()

    def format_command(self, cluster_id: str) -> list[str]:
        return kafka_java(
            self.jars, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config)
        )

    def start(self) -> None:
        """Start the process and return at once: a broker is ready only with its peers (the cluster waits)."""
        self.service.start(lambda: True, timeout=30)


class KafkaCluster:
    """``len(hosts)`` nodes (three for replication); :attr:`bootstrap` lists every broker."""

    def __init__(
        self,
        log_dir: Path,
        hosts: Sequence[Host] = (LOOPBACK,) * 3,
        *,
        tag: str = "kafka-cluster",
        heap: tuple[str, str] = HEAP,
        detection: Detection | None = None,
    ) -> None:
        self.nodes = [KafkaNode(i + 1, host, log_dir, tag, heap) for i, host in enumerate(hosts)]
        self.replication = replication_for(len(self.nodes))
        self.detection = detection or Detection()
        self.paused: set[int] = set()
        self.startup_seconds = self.format_seconds = 0.0
        voters = ",".join(node.voter for node in self.nodes)
        for node in self.nodes:
            node.write_config(voters, self.replication, self.detection)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        return self.replication[0]

    def start(self, timeout: float = 120) -> KafkaCluster:
        """Format every node's storage (once), start them together, wait until healthy."""
        started = time.monotonic()
        self._format([node for node in self.nodes if not node.formatted])
        self.format_seconds = time.monotonic() - started
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        self._create_offsets_topic(timeout)
        self.startup_seconds = time.monotonic() - started
        log.info(
            "%d-node Kafka cluster ready in %.1fs: %s", len(self.nodes), self.startup_seconds, self.bootstrap
        )
        return self

    def _format(self, nodes: Sequence[KafkaNode]) -> None:
        """All storage formats at once (a JVM start each), with one cluster id."""
        if not nodes:
            return
        cluster_id = new_cluster_id()
        running = [
            subprocess.Popen(
                node.format_command(cluster_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for node in nodes
        ]
        for node, proc in zip(nodes, running, strict=True):
            output, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"formatting {node.name} failed: {output.decode(errors='replace')[-2000:]}"
                )

    def _create_offsets_topic(self, timeout: float) -> None:
        """Look up a group's coordinator, which makes the brokers create ``__consumer_offsets`` now: its
        partitions are then in sync before the first test (and part of :meth:`problem`'s checks)."""
        admin = self.admin()

        def created() -> str | None:
            if OFFSETS_TOPIC in self.metadata(admin).topics:
                return self.problem()
            with contextlib.suppress(KafkaException):
                admin.describe_consumer_groups(["kafka-cluster-start"])["kafka-cluster-start"].result(
                    timeout=5
                )
            return f"{OFFSETS_TOPIC} not created yet"

        wait_until(created, timeout, f"{OFFSETS_TOPIC} created and in sync")

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM every node at once, SIGKILL what is left after ``grace`` seconds.

        The last nodes cannot finish a controlled shutdown (the controllers' quorum left with the
        others) and would wait for it; their data is only the run's.
        """
        for node in self.nodes:
            node.resume()
            node.service.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.nodes:
            node.service.stop(grace=max(0.1, deadline - time.monotonic()))

    # -- faults ---------------------------------------------------------------------------------

    def node(self, node_id: int) -> KafkaNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def pause(self, node: KafkaNode) -> None:
        node.pause()
        self.paused.add(node.node_id)

    def resume(self, node: KafkaNode) -> None:
        node.resume()
        self.paused.discard(node.node_id)

    def restore(self, timeout: float = 60) -> None:
        """Undo a test's faults on the nodes: resume the paused, restart the dead, wait until healthy.

        Then ask for preferred leaders, so leadership is spread again after restarts moved it.
        (The network's faults are the test network's to heal, before this.)
        """
        for node_id in list(self.paused):
            self.resume(self.node(node_id))
        for node in self.nodes:
            if not node.running():
                log.info("restarting %s", node.name)
                node.start()
        self.wait_healthy(timeout)
        self.elect_preferred_leaders()
        self.wait_healthy(timeout)

    # -- state ----------------------------------------------------------------------------------

    def admin(self, bootstrap: str | None = None) -> AdminClient:
        """An admin client (on every broker, or ``bootstrap``), with bounds that keep a cut-off node
        from hanging a check."""
        return AdminClient({
            "bootstrap.servers": bootstrap or self.bootstrap, "socket.timeout.ms": 2000,
            "socket.connection.setup.timeout.ms": 2000, "log_level": 0,
        })  # fmt: skip

    def metadata(self, admin: AdminClient | None = None) -> ClusterMetadata:
        return (admin or self.admin()).list_topics(timeout=ADMIN_TIMEOUT)

    def problem(self) -> str | None:
        """None when healthy, else the first thing that is not: a broker missing, a partition without
        a leader or with replicas out of sync, in any broker's own view.

        Each broker is asked itself (a new client knows no other broker yet): one that was cut off
        keeps the metadata it had, all healthy, until it has caught up with the controller.
        """
        for node in self.nodes:
            try:
                metadata = self.metadata(self.admin(node.bootstrap))
            except KafkaException as exc:
                return f"{node.name}: no metadata: {exc}"
            reason = self._unhealthy(metadata)
            if reason is not None:
                return f"{node.name} says {reason}"
        return None

    def _unhealthy(self, metadata: ClusterMetadata) -> str | None:
        missing = {node.node_id for node in self.nodes} - set(metadata.brokers)
        if missing:
            return f"brokers {sorted(missing)} not registered"
        for topic in metadata.topics.values():
            if topic.error is not None:
                return f"{topic.topic}: {topic.error}"
            for partition in topic.partitions.values():
                if partition.leader < 0 or sorted(partition.isrs) != sorted(partition.replicas):
                    return (
                        f"{topic.topic}[{partition.id}] leader {partition.leader}, "
                        f"isr {sorted(partition.isrs)} of {sorted(partition.replicas)}"
                    )
        return None

    def wait_healthy(self, timeout: float) -> None:
        def check() -> str | None:
            for node in self.nodes:
                if not node.running():
                    raise RuntimeError(f"{node.name} exited; log:\n{node.service.tail()}")
            return self.problem()

        wait_until(_spaced(check, CHECK_INTERVAL), timeout, f"the Kafka cluster healthy ({self.bootstrap})")

    def leader_of(self, topic: str, partition: int) -> KafkaNode:
        """The node leading ``topic[partition]`` now; LookupError while it has none."""
        leader = self.metadata().topics[topic].partitions[partition].leader
        if leader < 0:
            raise LookupError(f"{topic}[{partition}] has no leader")
        return self.node(leader)

    def elect_preferred_leaders(self) -> None:
        """Each partition led by its first replica again (best effort: none may need it)."""
        admin = self.admin()
        with contextlib.suppress(KafkaException):
            admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=10)


def _spaced(check: Callable[[], str | None], interval: float) -> Callable[[], str | None]:
    """``check``, called at most every ``interval`` seconds (the last answer in between)."""
    last: list[tuple[float, str | None]] = [(-interval, "not checked yet")]

    def spaced() -> str | None:
        if time.monotonic() - last[0][0] >= interval:
            last[0] = (time.monotonic(), check())
        return last[0][1]

    return spaced
