"""What each fault does to a process or a node, and how it is healed, recorded in the run's history.

A :class:`Member` is anything the nemesis may break: a worker, a bridge, a Kafka broker or a Redis data
node of the Sentinel set, each in a node of the test network of its own (so a partition can cut it
alone). :class:`Nemesis` applies a scheduled :class:`~.schedule.Fault` and heals it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from orders.stack.kafka_cluster import KafkaCluster, KafkaNode
from orders.stack.processes import healthz
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.redis_ha import RedisNode, wait_until
from orders.stack.redis_sentinel import SentinelSet
from orders.stack.supervisor import Service
from tests.checker.history import Event, History
from tests.harness.netns import Node, TestNetwork
from tests.reliability.nemesis.schedule import Fault

log = logging.getLogger(__name__)
RESTART_TIMEOUT = 60.0


@dataclass(frozen=True)
class Member:
    name: str
    node: Node
    kill: Callable[[], None]
    restart: Callable[[], None]
    pause: Callable[[], None]
    resume: Callable[[], None]


def pipeline_member(name: str, service: Service, node: Node) -> Member:
    """A worker or a bridge: restarted in place (same node, port and log), up once /healthz answers at
    all (it may say 503 while another fault lasts)."""
    port = int((service.env or {})["METRICS_PORT"])

    def restart() -> None:
        service.start(lambda: healthz(port, host=node.address)[0] is not None, timeout=RESTART_TIMEOUT)

    return Member(name, node, service.kill, restart, service.pause, service.resume)


def kafka_member(name: str, cluster: KafkaCluster, broker: KafkaNode, node: Node) -> Member:
    """A broker: restarted on its data (it catches up and rejoins every ISR on its own)."""
    return Member(
        name, node, broker.kill, broker.start, lambda: cluster.pause(broker), lambda: cluster.resume(broker)
    )


def redis_member(name: str, ha: SentinelSet, data: RedisNode, node: Node) -> Member:
    """A data node of the Sentinel set: restarted as a replica of whichever node is the primary by then,
    as an operator (or a container's entrypoint) would; Sentinel keeps promoting and demoting."""

    def restart() -> None:
        def someone_else() -> str | None:
            try:
                return None if ha.primary() is not data else f"Sentinels still name {data}"
            except LookupError as exc:
                return str(exc)

        wait_until(someone_else, 30, f"a failover from the dead {data}")
        primary = ha.primary()
        data.set_line("replicaof", f"{primary.host.address} {primary.port}")
        data.start()

    return Member(name, node, data.kill, restart, data.pause, data.resume)


class Nemesis:
    """Applies and heals faults on ``members``; every step goes into ``history``."""

    def __init__(self, members: dict[str, Member], network: TestNetwork, history: History) -> None:
        self.members, self.network, self.history = members, network, history
        self.active: list[Fault] = []

    def begin(self, fault: Fault) -> Event:
        member = self.members[fault.target]
        if fault.kind == "kill":
            member.kill()
        elif fault.kind == "pause":
            member.pause()
        elif fault.kind == "isolate":
            self.network.isolate(member.node)
        else:
            self.network.cut(member.node, self.members[str(fault.server)].node)
        self.active.append(fault)
        return self.history.record(fault.kind, fault.target, _note(fault))

    def heal(self, fault: Fault) -> Event:
        member = self.members[fault.target]
        if fault.kind == "kill":
            member.restart()
        elif fault.kind == "pause":
            member.resume()
        elif fault.kind == "isolate":
            self.network.heal(member.node)
        else:
            self.network.restore(member.node, self.members[str(fault.server)].node)
        self.active.remove(fault)
        return self.history.record(_HEALS[fault.kind], fault.target, _note(fault))

    def heal_all(self) -> None:
        """Heal what is still active (a run cut short by a failure): the next test starts clean."""
        for fault in list(self.active):
            try:
                self.heal(fault)
            except Exception:  # the fixtures' restore undoes the rest before the next test, and says why
                log.exception("nemesis: could not heal %s", fault.label())


_HEALS = {"kill": "restart", "pause": "resume", "isolate": "heal", "cut": "restore"}


def _note(fault: Fault) -> str:
    return f"from {fault.server}" if fault.server else ""


def rabbit_member(name: str, rabbit: RabbitMQ, node: Node) -> Member:
    """A RabbitMQ node: restarted from its data (it rejoins the cluster); a pause is of its whole
    process group (the Erlang VM)."""

    def signal(how: str) -> Callable[[], None]:
        return lambda: getattr(rabbit.service, how)()  # the node's current process

    return Member(name, node, rabbit.kill, lambda: rabbit.restart(), signal("pause"), signal("resume"))
