"""docker-compose.cluster.yml, merged over docker-compose.yml by Debian's `docker-compose config` (no
Docker engine): the aggregate on a six-node Redis Cluster, Celery's broker left on the plain Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orders.core.redis_url import ClusterUrl, ServerUrl
from tests.unit.test_compose import (
    COMPLETED,
    COMPOSE_FILE,
    HEALTHY,
    ROOT,
    SECRETS,
    SERVICE_SETTINGS,
    _env_file,
    _run_config,
    filled_env,
    merged_services,
)
from worker.settings import WorkerSettings

CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
NODES = [f"redis-cluster-{n}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return merged_services(tmp_path_factory.mktemp("cluster"), CLUSTER_FILE)


def test_the_cluster_override_needs_the_redis_password(tmp_path: Path) -> None:
    without = {k: v for k, v in filled_env().items() if k != "REDIS_PASSWORD"}
    refused = _run_config(_env_file(tmp_path / "partial.env", without), COMPOSE_FILE, CLUSTER_FILE)
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr


def test_every_project_service_has_the_aggregate_on_the_cluster_and_the_broker_apart(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, kind in SERVICE_SETTINGS.items():
        settings = kind.from_env({k: str(v) for k, v in services[name]["environment"].items()}, env_file=None)
        aggregate, broker = settings.redis, settings.broker_redis
        assert isinstance(aggregate, ClusterUrl), name
        assert [host for host, _ in aggregate.nodes] == NODES and aggregate.password == SECRETS[
            "REDIS_PASSWORD"
        ]
        assert isinstance(broker, ServerUrl) and broker.url.endswith("@redis:6379/1"), name
        if name in {"worker", "bridge", "dashboard"}:
            assert services[name]["depends_on"]["redis-cluster-init"]["condition"] == COMPLETED, name
    worker_env = services["worker"]["environment"]
    assert WorkerSettings.from_env(worker_env, env_file=None).aggregate_wait_replicas == 1  # broker apart


def test_six_cluster_nodes_made_into_a_cluster_once(services: dict[str, dict[str, Any]]) -> None:
    for name in NODES:
        node = services[name]
        script = node["command"][-1]
        for flag in ("--cluster-enabled yes", "--cluster-announce-hostname", "--min-replicas-to-write 1",
                     "--appendonly yes", "--maxmemory-policy noeviction", "--masterauth"):  # fmt: skip
            assert flag in script, f"{name}: {flag}"
        assert node["hostname"] == name and node["healthcheck"]["test"] and node["volumes"]
    init = services["redis-cluster-init"]
    assert {n: d["condition"] for n, d in init["depends_on"].items()} == dict.fromkeys(NODES, HEALTHY)
    script = init["command"][-1]
    assert "--cluster create" in script and "--cluster-replicas 1" in script and "cluster_state:ok" in script
    assert init["restart"] == "no"
