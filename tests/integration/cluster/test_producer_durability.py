"""Every producer of ours writes with acks=all and idempotence, as librdkafka itself reports it.

confluent-kafka has no getter for a client's effective configuration, so each process runs with
``KAFKA_DEBUG=conf``: librdkafka then prints every property that differs from its defaults as it
creates a client ("Client configuration:" / "Default topic configuration:"). The test reads those
lines from the logs of `orders produce`, a bridge (its DLQ publisher), a worker (its failure hook's
publisher, made on the first dead letter) and `orders dlq replay`, on the replicated cluster.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

from orders.stack.supervisor import Service, wait_for
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.kafka_io import read_topic

CONF_LINE = re.compile(r"\|CONF\|(rdkafka#producer-\d+)\| \[thrd:[^\]]*\]:\s+([\w.]+) = (.*)$")
ORDERS = 10


def producer_configs(log: Path) -> dict[str, dict[str, str]]:
    """Each producer client's non-default properties, as librdkafka's debug=conf printed them."""
    clients: dict[str, dict[str, str]] = defaultdict(dict)
    for line in log.read_text(errors="replace").splitlines():
        match = CONF_LINE.search(line)
        if match:
            clients[match.group(1)][match.group(2)] = match.group(3).strip()
    return dict(clients)


def assert_durable(service: Service) -> int:
    clients = producer_configs(service.log_path)
    assert clients, f"{service.name}: no producer configuration in its log"
    for name, conf in clients.items():
        assert conf.get("enable.idempotence") == "true", (service.name, name, conf)
        assert conf.get("request.required.acks") == "-1", (service.name, name, conf)  # acks=all
        # Every broker to start from: any one of them may be the one that is down.
        assert len(conf["metadata.broker.list"].split(",")) == 3, (service.name, name, conf)
    return len(clients)


def run_cli(pipeline: NetworkPipeline, name: str, *args: str) -> Service:
    argv = [sys.executable, "-m", "orders.cli", *args]
    service = pipeline.start(name, argv, lambda _s: True, KAFKA_DEBUG="conf")
    wait_for(lambda: not service.running(), 120, f"{name} to finish")
    assert service.proc is not None and service.proc.returncode == 0, service.tail()
    return service


def test_every_producer_writes_with_acks_all_and_idempotence(cluster_pipeline: NetworkPipeline) -> None:
    p = cluster_pipeline
    debug = {"KAFKA_DEBUG": "conf"}
    # Every order fails for good, so the worker makes its DLQ producer and the replay has letters.
    worker = p.start_worker(PERMANENT_FAILURE_RATE="1", **debug)
    bridge = p.start_bridge(**debug)
    produce = run_cli(p, "produce", "produce", "--count", str(ORDERS), "--rate", "0", "--quiet")
    letters = read_topic(p.broker.bootstrap, p.dlq_topic, ORDERS, timeout=90)
    assert len(letters) == ORDERS
    worker.stop()  # the replayed orders stay on the topic; only the replay's producer matters here
    replay = run_cli(p, "replay", "dlq", "replay", "--quiet")  # exits 1 if a record was not acknowledged
    counts = {s.name: assert_durable(s) for s in (produce, bridge, worker, replay)}
    assert all(n >= 1 for n in counts.values()), counts
