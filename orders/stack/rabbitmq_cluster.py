"""A three-node RabbitMQ cluster (Debian's rabbitmq-server 3.10), for the cluster lane and the bench.

Each node is an :class:`~orders.stack.rabbitmq.RabbitMQ` on a :class:`~orders.stack.redis_ha.Host` of its
own (a namespace of the test network, so every node has the standard ports and is ``rabbit@ADDRESS``),
or all three on loopback (``rabbitN@localhost`` on free ports, one epmd for the three: the bench),
sharing one Erlang cookie and one random user. ``cluster_partition_handling = pause_minority``: a node
that finds itself in a minority stops serving until it rejoins the majority, so a partition never
leaves two halves taking writes.

Start-up: the first node boots, then the other two side by side; those are told (classic-config peer
discovery) to join the first, so the cluster forms while they boot instead of after
(``rabbitmqctl join_cluster`` needs a stop_app/start_app per node: ~10 s more here). :meth:`start`
says why not all three at once.

Failure detection is tuned down for tests: ``net_ticktime`` (how long a silent peer takes to be
declared down) is :data:`TEST_NET_TICKTIME` instead of RabbitMQ's 60 s; README's "Clustered RabbitMQ"
says what production should use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import amqp

from orders.stack.rabbitmq import RabbitMQ
from orders.stack.redis_ha import Host, wait_until
from orders.stack.supervisor import Service, free_port, port_open, wait_for

log = logging.getLogger(__name__)

# Seconds before a silent peer is declared down (Erlang's kernel net_ticktime; RabbitMQ's default 60).
# Detection takes between this and 1.25 times it.
TEST_NET_TICKTIME = 6
USER = "orders"
CTL_ERRORS = (subprocess.CalledProcessError, subprocess.TimeoutExpired)


class RabbitCluster:
    """Three (or more) nodes, one per host; ``url`` lists every node's for Celery's failover."""

    def __init__(self, log_dir: Path, hosts: Sequence[Host], net_ticktime: int = TEST_NET_TICKTIME) -> None:
        cookie, password = secrets.token_hex(16).upper(), secrets.token_hex(12)
        self.epmd: Service | None = None
        shared_epmd = None if all(host.dedicated for host in hosts) else free_port()
        if shared_epmd is not None:
            epmd = [shutil.which("epmd") or "epmd", "-port", str(shared_epmd), "-address", "127.0.0.1"]
            self.epmd = Service(f"epmd-cluster-{shared_epmd}", epmd, log_dir)
        seed = f"rabbit@{hosts[0].address}" if hosts[0].dedicated else "rabbit0@localhost"
        base = ["cluster_partition_handling = pause_minority"]
        join = [
            "cluster_formation.peer_discovery_backend = classic_config",
            f"cluster_formation.classic_config.nodes.1 = {seed}",
            # the seed boots alongside: retry every 200 ms for up to a minute
            "cluster_formation.discovery_retry_limit = 300",
            "cluster_formation.discovery_retry_interval = 200",
        ]
        advanced = f"[{{kernel, [{{net_ticktime, {net_ticktime}}}]}}]"
        self.nodes = [
            RabbitMQ(log_dir, f"rabbit{i}", host, cookie=cookie, user=USER, password=password,
                     conf=base + (join if i else []), advanced=advanced, epmd_port=shared_epmd)
            for i, host in enumerate(hosts)
        ]  # fmt: skip
        self.startup_seconds = 0.0

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Celery's broker URL for the cluster: every node's, ``;``-separated (it fails over in order)."""
        return ";".join(self.urls)

    def start(self, timeout: float = 90.0) -> RabbitCluster:
        """Boot the first node, then the others side by side (they join it as they boot); return once
        all accept logins and run as one cluster.

        Not all three at once: a node that joins the first one while that one still enables its
        feature flags stops one of the two (``schema_integrity_check_failed`` on the joiner, or
        ``incompatible_feature_flags`` on the first node: 2 boots of ~20 here)."""
        started = time.monotonic()
        if self.epmd is not None:
            port = self.nodes[0].epmd_port
            self.epmd.start(lambda: port_open(port), timeout=20)
        self.nodes[0].start(timeout=timeout)
        for node in self.nodes[1:]:
            node.start(timeout=timeout, wait=False)
        wait_for(self._all_answer, timeout, "every RabbitMQ node to accept logins", interval=0.1)
        wait_until(self.unhealthy, timeout, "the RabbitMQ cluster to form")
        self.startup_seconds = time.monotonic() - started
        log.info("RabbitMQ cluster of %d nodes up in %.1fs", len(self.nodes), self.startup_seconds)
        return self

    def _all_answer(self) -> bool:
        for node in self.nodes:
            if not node.running():
                assert node.service is not None
                raise RuntimeError(f"{node.name} exited; log:\n{node.service.tail()}")
        return all(node.accepts_login() for node in self.nodes)

    def status(self, via: RabbitMQ | None = None) -> dict[str, Any] | None:
        """``rabbitmqctl cluster_status`` as JSON from ``via`` (the first node by default); None if it
        does not answer."""
        try:
            return dict(
                json.loads((via or self.nodes[0]).ctl("cluster_status", "--formatter", "json", timeout=20))
            )
        except (*CTL_ERRORS, json.JSONDecodeError):
            return None

    def unhealthy(self) -> str | None:
        """Why the cluster is not whole (a node down or paused, a partition, an alarm); None if it is."""
        for node in self.nodes:
            if not node.running():
                return f"{node.name} is not running"
            if not node.accepts_login():
                return f"{node.name} refuses AMQP logins (paused in a minority, or booting)"
        status = self.status()
        if status is None:
            return "cluster_status did not answer"
        running = set(status.get("running_nodes", []))
        missing = {node.nodename for node in self.nodes} - running
        if missing:
            return f"not running in the cluster: {sorted(missing)}"
        if status.get("partitions"):
            return f"partitions: {status['partitions']}"
        if status.get("alarms"):
            return f"alarms: {status['alarms']}"
        return None

    def node(self, nodename: str) -> RabbitMQ:
        """The node called ``nodename`` (``rabbit@ADDRESS``)."""
        return next(node for node in self.nodes if node.nodename == nodename)

    def leader(self, queue: str) -> RabbitMQ:
        """The node that leads the quorum queue ``queue`` now (asked of a node that answers)."""
        for via in self.nodes:
            with contextlib.suppress(*CTL_ERRORS, json.JSONDecodeError, StopIteration):
                rows = json.loads(via.ctl("list_queues", "name", "leader", "--formatter", "json", timeout=20))
                return self.node(next(row["leader"] for row in rows if row["name"] == queue))
        raise RuntimeError(f"no node names a leader for {queue!r}")

    def restore(self, timeout: float = 60.0) -> None:
        """Undo a test's faults to the nodes (the network's are the caller's): resume the paused,
        restart the dead, then wait until the cluster is whole and delete every queue."""
        for node in self.nodes:
            assert node.service is not None
            node.service.resume()
            if not node.running():
                log.info("restarting %s", node.name)
                node.restart(timeout=timeout)
        try:
            wait_until(self.unhealthy, timeout / 2, "the RabbitMQ cluster to be whole again")
        except TimeoutError as exc:
            # A node paused in a minority should resume once it sees the majority again; if one has not
            # by now, restart it, so one test's fault does not spill into the next.
            log.warning("%s; restarting the nodes that refuse logins", exc)
            for node in self.nodes:
                if not node.accepts_login():
                    node.restart(timeout=timeout)
            wait_until(self.unhealthy, timeout / 2, "the RabbitMQ cluster to be whole again")
        self.delete_queues()

    def delete_queues(self) -> None:
        """Delete every queue (a test's own, Celery's delayed-delivery ones), through the first node."""
        first = self.nodes[0]
        names = first.ctl("list_queues", "name", "--quiet", "--no-table-headers", timeout=20).split()
        if not names:
            return
        connection = amqp.Connection(f"{first.host.address}:{first.port}", userid=first.user,
                                     password=first.password, connect_timeout=5)  # fmt: skip
        connection.connect()
        try:
            channel = connection.channel()
            for name in names:
                channel.queue_delete(name)
        finally:
            connection.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.epmd is not None:
            self.epmd.stop(grace=5)
