"""Fixtures for replicated Redis on the test network (issues 22 and 24); loaded by tests/conftest.py.

The contract a test gets:
- ``test_network`` (session, one per xdist worker): the :class:`TestNetwork` the clusters live on.
  ``net_node`` makes nodes of the test's own, removed after it. A test that cannot have the network
  fails with the reason (no root, no nftables), never skips.
- ``redis_sentinel_cluster``: a :class:`SentinelSet` started once per session in three nodes, each with
  one data node and one Sentinel (as production places them), with random passwords on both. Before
  each test: every isolation and cut healed, paused processes resumed, dead ones restarted, then the set
  is healthy (every Sentinel names one primary, which has both replicas online and in sync, and no
  failover is in progress), ``min-replicas-to-write`` is back to 0 and every database is empty on all
  three nodes. The primary may be any node by then: ask ``.primary()``, never assume ``data[0]``.
- ``redis_cluster``: a :class:`RedisClusterSet` of six nodes (three primaries with a replica each), once
  per session; before each test the same faults are undone, every node is up with all slots covered,
  each primary has its replica in sync, and every primary is empty. Ask ``.node_for_key()``.
- The node a Redis runs on: ``test_network.node_at(redis_node.host.address)``.
Each cluster's start-up time is in the "service start-up times" summary; failover times a test
measures (``record_ha_timing``) are in "redis ha timings".
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orders.stack.redis_cluster import RedisClusterSet
from orders.stack.redis_sentinel import SentinelSet
from tests.harness.netns import NetworkUnavailable, Node, TestNetwork

HA_TIMING = "redis_ha_timing"
TIMINGS: dict[str, list[float]] = {}  # in the process that runs the session (xdist's controller)
RESTORE_TIMEOUT = 30.0


def worker_tag() -> str:
    """``gw0``, ``gw1``... under pytest-xdist, ``main`` without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def open_network(tag: str) -> TestNetwork:
    """The session's network, or a test failure that says why it cannot be had (never a skip)."""
    try:
        return TestNetwork.create(tag)
    except NetworkUnavailable as exc:
        reason = str(exc)
    pytest.fail(f"the test network cannot be created: {reason}", pytrace=False)  # outside: no traceback


@pytest.fixture(scope="session", name="test_network")
def _test_network() -> Iterator[TestNetwork]:
    network = open_network(worker_tag())
    yield network
    network.remove()


@pytest.fixture
def net_node(test_network: TestNetwork) -> Iterator[Callable[[str], Node]]:
    """Make nodes of this test's own (``net_node("a")``); they are removed after it."""
    made: list[Node] = []
    numbers = itertools.count()

    def make(name: str) -> Node:
        node = test_network.add_node(f"{name}{next(numbers)}")
        made.append(node)
        return node

    yield make
    for node in made:
        test_network.remove_node(node)


def _startup(name: str, seconds: float) -> None:
    from tests.conftest import record_startup  # here, not at import: conftest loads this module

    record_startup(name, seconds)


@pytest.fixture(scope="session")
def sentinel_set(test_network: TestNetwork, service_logs: Path) -> Iterator[SentinelSet]:
    nodes = [test_network.add_node(f"sentinel{i}") for i in range(3)]
    ha = SentinelSet(
        service_logs,
        [node.host() for node in nodes],
        password=secrets.token_hex(8),
        sentinel_password=secrets.token_hex(8),
    )
    try:
        ha.start()
    except BaseException:
        ha.stop()
        raise
    _startup("redis sentinel set (3+3)", ha.startup_seconds)
    yield ha
    ha.stop()
    for node in nodes:
        test_network.remove_node(node)


@pytest.fixture
def redis_sentinel_cluster(sentinel_set: SentinelSet, test_network: TestNetwork) -> SentinelSet:
    test_network.heal_all()
    sentinel_set.restore(RESTORE_TIMEOUT)
    return sentinel_set


@pytest.fixture(scope="session")
def cluster_set(test_network: TestNetwork, service_logs: Path) -> Iterator[RedisClusterSet]:
    nodes = [test_network.add_node(f"cluster{i}") for i in range(6)]
    cluster = RedisClusterSet(service_logs, [node.host() for node in nodes], password=secrets.token_hex(8))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    _startup("redis cluster (3+3)", cluster.startup_seconds)
    yield cluster
    cluster.stop()
    for node in nodes:
        test_network.remove_node(node)


@pytest.fixture
def redis_cluster(cluster_set: RedisClusterSet, test_network: TestNetwork) -> RedisClusterSet:
    test_network.heal_all()
    cluster_set.restore(RESTORE_TIMEOUT)
    return cluster_set


@pytest.fixture
def record_ha_timing(request: pytest.FixtureRequest) -> Callable[[str, float], None]:
    """Report a measured time (a failover, a promotion) in the session's "redis ha timings"."""

    def record(name: str, seconds: float) -> None:
        request.node.user_properties.append((HA_TIMING, (name, seconds)))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        for name, value in report.user_properties:
            if name == HA_TIMING:
                what, seconds = value  # type: ignore[misc]
                TIMINGS.setdefault(what, []).append(seconds)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("redis ha timings")
    for name, times in sorted(TIMINGS.items()):
        listed = ", ".join(f"{t:.2f}" for t in times)
        terminalreporter.write_line(f"{name:52} {listed} s")
