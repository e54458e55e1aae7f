"""Fixtures for the RabbitMQ cluster lane on the test network (issue 24); loaded by tests/conftest.py.

The contract a test gets:
- ``rabbit_cluster_set`` (session, one per xdist worker): a :class:`RabbitCluster` of three nodes, each
  in a namespace of its own (``rabbit0``..``rabbit2``, nodes ``rabbit@ADDRESS`` on the standard ports),
  ``pause_minority``, a random user. Its start-up time is in the "service start-up times" summary.
- ``rabbitmq_cluster``: that cluster, made whole before the test: every isolation and cut healed,
  paused nodes resumed, dead ones restarted, all three running in one cluster with no partition and no
  alarm, and every queue deleted. A test that cannot have the network fails with the reason.
- The namespace a node runs in: ``test_network.node_at(node.host.address)``; kill or pause a node
  with ``node.kill()`` / ``node.service.pause()``, partition it with ``test_network.isolate(...)``.
  The quorum queue's leader: ``rabbitmq_cluster.leader(queue)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orders.stack.rabbitmq_cluster import RabbitCluster
from orders.stack.services import Unavailable
from tests.harness.ha_fixtures import _startup
from tests.harness.netns import TestNetwork

RESTORE_TIMEOUT = 90.0


@pytest.fixture(scope="session")
def rabbit_cluster_set(test_network: TestNetwork, service_logs: Path) -> Iterator[RabbitCluster]:
    nodes = [test_network.add_node(f"rabbit{i}") for i in range(3)]
    try:
        cluster = RabbitCluster(service_logs, [node.host() for node in nodes])
    except Unavailable as exc:
        pytest.fail(f"the RabbitMQ cluster cannot be started: {exc}", pytrace=False)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    _startup("rabbitmq cluster (3 nodes)", cluster.startup_seconds)
    yield cluster
    cluster.stop()
    for node in nodes:
        test_network.remove_node(node)


@pytest.fixture
def rabbitmq_cluster(rabbit_cluster_set: RabbitCluster, test_network: TestNetwork) -> RabbitCluster:
    test_network.heal_all()
    rabbit_cluster_set.restore(RESTORE_TIMEOUT)
    return rabbit_cluster_set
