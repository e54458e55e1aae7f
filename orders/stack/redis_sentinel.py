"""A Sentinel-managed Redis: a primary, two replicas and three Sentinels, tuned to fail over in seconds.

Start-up is quick because nothing is left to discovery: the replicas are in sync before the
Sentinels start, and each Sentinel's config names the replicas and the other Sentinels (with ids made
here), which otherwise it learns from the primary's INFO and hello messages over 2-10 s.

Healthy (:meth:`SentinelSet.healthy`) means: every Sentinel names the same primary, which says it is
one; it has both replicas online, and both say their link is up; each Sentinel sees two replicas and
two other Sentinels, none of them down, and no failover in progress. Tests start from that state
(:meth:`SentinelSet.restore`), whichever node is the primary by then: ask :meth:`SentinelSet.primary`.

Sentinel's timing: ``down_after_ms`` until a Sentinel deems the primary down (production keeps
5-30 s; 1 s here), then a quorum (2) agrees, a leader is elected and promotes the best replica.
``failover_timeout_ms`` bounds each failover step, and no new failover of the same primary starts
within twice that of the last one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.sentinel import Sentinel

from orders.core.redis_url import SentinelUrl
from orders.stack.redis_ha import (
    FAST_SYNC,
    LOOPBACK,
    Host,
    RedisNode,
    answer_or_none,
    auth_lines,
    start_together,
    wait_until,
)

QUORUM = 2


def data_lines(host: Host, password: str | None) -> list[str]:
    return [*auth_lines(password), f"replica-announce-ip {host.address}", *FAST_SYNC]


class SentinelSet:
    """Three data nodes (``data[0]`` the first primary) and three Sentinels watching ``service``."""

    def __init__(
        self,
        log_dir: Path,
        hosts: Sequence[Host] = (LOOPBACK,) * 3,
        sentinel_hosts: Sequence[Host] | None = None,
        *,
        tag: str = "sentinel-set",
        service: str = "orders",
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        min_replicas: tuple[int, int] = (0, 10),
    ) -> None:
        """``sentinel_hosts`` defaults to ``hosts``: a Sentinel beside each data node, as in production.

        ``min_replicas``: ``min-replicas-to-write`` and ``min-replicas-max-lag`` (0: writes never wait).
        """
        self.service, self.password, self.sentinel_password = service, password, sentinel_password
        self.min_replicas = self.default_min_replicas = min_replicas
        self.data = [
            RedisNode(f"{tag}-redis-{i}", host, log_dir, data_lines(host, password), password=password)
            for i, host in enumerate(hosts)
        ]
        self.sentinels = [
            RedisNode(f"{tag}-sentinel-{i}", host, log_dir, [], 26379, sentinel_password, sentinel=True)
            for i, host in enumerate(sentinel_hosts or hosts)
        ]
        self._timing = (down_after_ms, failover_timeout_ms)
        self.startup_seconds = 0.0

    def sentinel_lines(self, primary: RedisNode) -> list[str]:
        down_after, failover_timeout = self._timing
        name = self.service
        lines = [
            f"sentinel monitor {name} {primary.host.address} {primary.port} {QUORUM}",
            f"sentinel down-after-milliseconds {name} {down_after}",
            f"sentinel failover-timeout {name} {failover_timeout}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        if self.sentinel_password:  # what clients give, and what each Sentinel gives the others
            lines.append(f"requirepass {self.sentinel_password}")
        return lines

    def start(self, timeout: float = 30) -> SentinelSet:
        started = time.monotonic()
        primary, *replicas = self.data
        self._set_min_replicas_lines()
        for replica in replicas:
            replica.set_line("replicaof", f"{primary.host.address} {primary.port}")
        start_together(self.data)
        wait_until(lambda: self._replicas_unsynced(primary), timeout, "replicas in sync")
        ids = [secrets.token_hex(20) for _ in self.sentinels]
        for sentinel, myid in zip(self.sentinels, ids, strict=True):
            sentinel.lines += [*self.sentinel_lines(primary), f"sentinel myid {myid}"]
            # What each would otherwise learn from the primary's INFO and hello messages (~2 s)
            sentinel.lines += [
                f"sentinel known-replica {self.service} {r.host.address} {r.port}" for r in replicas
            ]
            sentinel.lines += [
                f"sentinel known-sentinel {self.service} {other.host.address} {other.port} {other_id}"
                for other, other_id in zip(self.sentinels, ids, strict=True)
                if other is not sentinel
            ]
        start_together(self.sentinels)
        self.wait_healthy(timeout)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

    # -- where the primary is ------------------------------------------------------------------

    def sentinel_client(self, **options: Any) -> Sentinel:
        """redis-py's Sentinel over these Sentinels, with the data nodes' password."""
        return Sentinel(
            [s.address for s in self.sentinels],
            sentinel_kwargs={"password": self.sentinel_password, "socket_timeout": 1.0},
            password=self.password,
            socket_timeout=2.0,
            **options,
        )

    def url(self, db: int = 0) -> str:
        """The ``sentinel://`` URL the pipeline's processes are given for this set (core/redis_url.py)."""
        return SentinelUrl(
            tuple(s.address for s in self.sentinels), self.service, db,
            password=self.password, sentinel_password=self.sentinel_password,
        ).to_url()  # fmt: skip

    def views(self) -> list[tuple[str, int] | None]:
        """Each Sentinel's answer to get-master-addr-by-name (None: it did not answer)."""
        return [answer_or_none(partial(self._primary_of, sentinel)) for sentinel in self.sentinels]

    def _primary_of(self, sentinel: RedisNode) -> tuple[str, int] | None:
        answer = sentinel.client().execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
        return (str(answer[0]), int(answer[1])) if answer else None

    def primary_address(self) -> tuple[str, int]:
        """The primary a quorum of Sentinels names; LookupError if no quorum agrees."""
        views = [view for view in self.views() if view is not None]
        for view in views:
            if views.count(view) >= QUORUM:
                return view
        raise LookupError(f"no quorum of Sentinels agrees on a primary: {self.views()}")

    def _no_quorum(self) -> str | None:
        try:
            self.primary_address()
        except LookupError as exc:
            return str(exc)
        return None

    def node_at(self, address: tuple[str, int]) -> RedisNode:
        return next(node for node in self.data if node.address == address)

    def primary(self) -> RedisNode:
        return self.node_at(self.primary_address())

    def replicas(self) -> list[RedisNode]:
        primary = self.primary()
        return [node for node in self.data if node is not primary]

    def wait_for_failover(self, old: RedisNode, timeout: float = 30) -> RedisNode:
        """Until a quorum of Sentinels names another primary and that node says it is one."""

        def failed_over() -> str | None:
            try:
                new = self.node_at(self.primary_address())
            except LookupError as exc:
                return str(exc)
            if new is old:
                return f"Sentinels still name {old}"
            return None if answer_or_none(new.role) == "master" else f"{new} is not a primary yet"

        wait_until(failed_over, timeout, f"a failover from {old}")
        return self.primary()

    # -- health and reset between tests --------------------------------------------------------

    def healthy(self) -> str | None:
        """None when the set is as :meth:`start` left it (any node the primary); else what is not."""
        views = self.views()
        if None in views or len(set(views)) != 1:
            return f"Sentinels disagree on the primary: {views}"
        primary = self.node_at(views[0])  # type: ignore[arg-type]
        return self._replicas_unsynced(primary) or self._sentinels_unready()

    def _replicas_unsynced(self, primary: RedisNode) -> str | None:
        info = answer_or_none(lambda: primary.info("replication"))
        if not isinstance(info, dict) or info.get("role") != "master":
            return f"{primary} is not a primary: {info}"
        online = [info.get(f"slave{i}", {}) for i in range(int(info.get("connected_slaves", 0)))]
        if sum(1 for slave in online if slave.get("state") == "online") != len(self.data) - 1:
            return f"{primary} has replicas {online}"
        for replica in self.data:
            if replica is not primary:
                info = answer_or_none(partial(replica.info, "replication"))
                link = info.get("master_link_status") if info else "unknown"
                if link != "up":
                    return f"{replica}'s link to the primary is {link}"
        return None

    def _sentinels_unready(self) -> str | None:
        expected = (len(self.data) - 1, len(self.sentinels) - 1)
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state: dict[str, Any] = client.execute_command("SENTINEL MASTER", self.service)
                peers: list[dict[str, Any]] = [
                    *client.execute_command("SENTINEL SLAVES", self.service),
                    *client.execute_command("SENTINEL SENTINELS", self.service),
                ]
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                return f"{sentinel}: {exc}"
            if state["flags"] != "master":  # e.g. "master,s_down" or "master,failover_in_progress"
                return f"{sentinel} sees the primary as {state['flags']}"
            seen = (int(state["num-slaves"]), int(state["num-other-sentinels"]))
            if seen != expected or any(_down(peer["flags"]) for peer in peers):
                return f"{sentinel} sees {seen} replicas/sentinels: {[p['flags'] for p in peers]}"
        return None

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_until(self.healthy, timeout, "the Sentinel set to be healthy")

    def restore(self, timeout: float = 30) -> RedisNode:
        """Undo a test's process faults, wait until healthy, reset ``min_replicas`` and empty the
        data; returns the primary.

        Paused nodes resume; dead data nodes restart as replicas of the current primary (restarted
        as primaries they would wait ~8 s for Sentinel to demote them); dead Sentinels restart from
        their rewritten config. Network faults are the test network's to heal (first).
        """
        for node in [*self.data, *self.sentinels]:
            node.resume()
        for sentinel in self.sentinels:
            if not sentinel.running():
                sentinel.start()
        wait_until(self._no_quorum, timeout, "a quorum of Sentinels to name a primary")
        primary = self.node_at(self.primary_address())
        for node in self.data:
            if not node.running():
                node.set_line(
                    "replicaof", None if node is primary else f"{primary.host.address} {primary.port}"
                )
                node.start()
            elif node is not primary and answer_or_none(node.role) == "master":
                # a former primary back from a partition: Sentinel would demote it only after ~8 s
                node.client().replicaof(*primary.address)
        self.wait_healthy(timeout)
        self.set_min_replicas(*self.default_min_replicas)
        self.flush()
        return self.primary()

    def set_min_replicas(self, count: int, max_lag: int) -> None:
        """``min-replicas-to-write`` / ``-max-lag`` on every data node (a replica may be promoted)."""
        self.min_replicas = (count, max_lag)
        self._set_min_replicas_lines()
        for node in self.data:
            if node.running():
                node.client().config_set("min-replicas-to-write", count)
                node.client().config_set("min-replicas-max-lag", max_lag)

    def _set_min_replicas_lines(self) -> None:
        for node in self.data:
            node.set_line("min-replicas-to-write", str(self.min_replicas[0]))
            node.set_line("min-replicas-max-lag", str(self.min_replicas[1]))

    def flush(self) -> None:
        """Empty every database, on the replicas too (WAIT, bounded) before the next test writes."""
        client = self.primary().client()
        client.flushall()
        client.wait(len(self.data) - 1, 5000)


def _down(flags: str) -> bool:
    """A replica or Sentinel this Sentinel cannot use. Not "master_down" on a Sentinel: that is its
    last answer about the primary, kept for 5 s after a failover; it can only hasten the next one."""
    return bool(set(flags.split(",")) - {"slave", "sentinel", "master_down"})
