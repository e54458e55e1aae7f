"""Scenario 15: a bridge frozen (SIGSTOP) past its group session timeout while it holds records; its
partitions move to the other bridge; then it wakes up (SIGCONT) still holding them: a zombie.

What must hold: the zombie commits no offset of a partition it no longer owns (the group's committed
offsets, sampled from outside every 250 ms, never move back), and whatever it hands off after waking
is counted once (the aggregate's dedupe); nothing is lost. Measured: how soon the frozen bridge's
partitions flowed again on the other bridge, and the worst wait of an order in flight.
"""

from __future__ import annotations

import re
import time

from orders.stack.supervisor import Service, wait_for
from tests.checker.fixtures import CheckerRun
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.netns import Node
from tests.harness.services import REPO_ROOT
from tests.reliability.cluster.offset_watch import OffsetWatch
from tests.reliability.cluster.run import KAFKA_FAULTS, Fault, finish
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

SCHEMA_V2 = REPO_ROOT / "schemas" / "order-v2.avsc"
PAUSE_SECONDS = 12.0  # past the tests' 6 s session timeout, and the rebalance after it
ASSIGNED = re.compile(r"partitions assigned: (.*)$")


def assigned(bridge: Service, topic: str) -> set[int]:
    """The partitions of ``topic`` in the bridge's latest assignment, from its log."""
    lines = [m.group(1) for line in bridge.tail(400).splitlines() if (m := ASSIGNED.search(line))]
    if not lines or lines[-1] == "none":
        return set()
    return {int(part.split("[")[1].rstrip("]")) for part in lines[-1].split(", ") if part.startswith(topic)}


HANDED_OFF = re.compile(r"^(\S+ \S+) DEBUG bridge.consumer: handed off \d+, dead-lettered \d+: (.*)$")


def handed_off_after(bridge: Service, since: str) -> list[str]:
    """The batches the bridge logged as handed off (LOG_LEVEL=DEBUG) at or after ``since`` (its log's
    time format), as ``topic[partition]@first-last``."""
    found = []
    for line in bridge.tail(1_000_000).splitlines():
        match = HANDED_OFF.match(line)
        if match and match.group(1) >= since:
            found.append(match.group(2))
    return found


def test_a_bridge_paused_past_its_session_timeout_wakes_up_a_harmless_zombie(
    cluster_pipeline: NetworkPipeline, profile: Profile, reliability_report: ScenarioRows,
    checker: CheckerRun, net_node,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    p = cluster_pipeline
    topic, group, network = p.orders_topic, p.env["CONSUMER_GROUP"], p.network
    rate = profile.cluster_rate
    warm, paced = rate * 3, int(rate * (PAUSE_SECONDS + 6))
    s = Scenario("15", p, profile, reliability_report, seed=1515, **KAFKA_FAULTS)
    s.worker()
    zombie_node: Node = net_node("zombie")
    zombie = p.start_bridge(node=zombie_node, **{**s.env, "LOG_LEVEL": "DEBUG"})
    other = s.bridge()
    watch = OffsetWatch(p.broker.bootstrap, topic, group, partitions=3).start()
    first = s.produce(warm, rate)
    wait_for(lambda: bool(assigned(zombie, topic) and handed_off_after(zombie, "")), 60, "the zombie busy")
    held = assigned(zombie, topic)
    # Records in hand, for sure: cut off from the registry, the zombie cannot decode the first record
    # written with a schema version it has not seen, and waits with its batch (offsets not stored).
    network.cut(zombie_node, network.host)
    cut = checker.history.record("cut", zombie.name, "from the registry (the host's address)")
    producer = s.produce(paced, rate, 1516, "--schema", str(SCHEMA_V2))
    wait_for(lambda: _stuck(zombie, checker.history.log_time(cut)), 30, "the zombie stuck in a batch")

    zombie.pause()
    frozen = checker.history.record("pause", zombie.name, f"SIGSTOP holding a batch of {topic}{sorted(held)}")
    network.restore(zombie_node, network.host)
    checker.history.record("restore", zombie.name, "reaches the registry again, frozen")
    wait_for(
        lambda: held <= assigned(other, topic), 30, "the frozen bridge's partitions to move", interval=0.2
    )
    moved = checker.history.record("observed", other.name, f"assigned {sorted(assigned(other, topic))}")
    time.sleep(max(0.0, PAUSE_SECONDS - checker.history.since(frozen)))
    zombie.resume()
    woke = checker.history.record("resume", zombie.name, "SIGCONT")

    produced = s.produced(producer, paced, total=warm + paced)
    assert f"delivered {warm}, failed 0" in first.tail(5), first.tail()
    figures = s.settle(produced)
    watch.stop()
    assert zombie.running() and other.running()
    stale = handed_off_before_revoke(zombie, checker.history.log_time(woke))
    notes = (
        f"{zombie.name} frozen {woke.at - frozen.at:.0f}s with a batch of {sorted(held)} in hand; its "
        f"partitions moved to {other.name} {moved.at - frozen.at:.1f}s after the freeze; on waking it "
        f"handed off {stale or 'nothing'} before it learnt it had lost them; committed offsets sampled "
        f"{watch.samples} times, moved back {len(watch.backwards)} times"
    )
    finish(s, checker, figures, warm + paced, notes, Fault(frozen, woke, partitions=tuple(held)))
    assert not watch.backwards, f"a committed offset moved back: {watch.backwards}"
    # It knows it lost them: no commit is attempted for partitions the group gave away (it failed with
    # _ASSIGNMENT_LOST and logged a commit failure before).
    log_text = zombie.tail(1_000_000)
    assert "partitions lost" in log_text and "commit failed" not in log_text, zombie.tail(30)


def _stuck(bridge: Service, since: str) -> bool:
    """No batch handed off for a second, a second or more after ``since``."""
    last = max([since, *(t for t, _ in _batches(bridge))])
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 1.0)) > last[:19]


def _batches(bridge: Service) -> list[tuple[str, str]]:
    return [
        (m.group(1), m.group(2)) for line in bridge.tail(5000).splitlines() if (m := HANDED_OFF.match(line))
    ]


def handed_off_before_revoke(bridge: Service, since: str) -> list[str]:
    """The batches the bridge handed off after ``since`` and before it heard its partitions were gone."""
    found: list[str] = []
    for line in bridge.tail(1_000_000).splitlines():
        stamp = line[:23]
        if stamp < since:
            continue
        if "partitions lost" in line or "partitions revoked" in line:
            break
        match = HANDED_OFF.match(line)
        if match:
            found.append(match.group(2))
    return found
