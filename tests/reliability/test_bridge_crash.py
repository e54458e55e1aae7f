"""Scenario 2: the bridge SIGKILLed mid-batch and restarted; two bridges in a group, one leaves, rejoins."""

from __future__ import annotations

import signal
import time

import pytest

from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.kafka

# Small batches and a paced producer keep hand-offs in flight whenever the bridge is hit.
BATCH = "100"


def test_bridge_sigkilled_mid_batch_and_restarted(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows
) -> None:
    n = profile.bridge_orders
    s = Scenario("2a", pipeline, profile, reliability_report, seed=202, BRIDGE_BATCH_SIZE=BATCH)
    s.worker()
    bridge = s.bridge()
    producer = s.produce(n, rate=n / (5 + 5 * profile.bridge_kills))
    aggregate = s.aggregate
    step = n // (profile.bridge_kills + 1)
    for kill in range(1, profile.bridge_kills + 1):
        wait_for(lambda k=kill: consumed(aggregate) >= k * step, 120, f"{kill * step} records consumed")
        bridge.kill()
        killed_at = time.monotonic()
        bridge = s.bridge()
        s.recovery.measure(f"kill {kill}", killed_at, lambda: consumed(aggregate), 60, s.drained(producer))

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    reread = consumed(aggregate) - n
    s.finish(figures, f"{profile.bridge_kills} kills; {reread} records read again after the kills (deduped)")


def test_two_bridges_one_leaves_and_rejoins(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows
) -> None:
    n = profile.bridge_orders
    s = Scenario("2b", pipeline, profile, reliability_report, seed=203, BRIDGE_BATCH_SIZE=BATCH)
    s.worker()
    steady, leaving = s.bridge(), s.bridge()
    # Outlasts the rounds below (a bridge joins in 2-7 s): hand-offs are in flight at every rebalance.
    producer = s.produce(n, rate=n / (2.5 + 12.5 * profile.rebalance_rounds))  # 15 s short, 40 s long
    aggregate = s.aggregate
    rebalances = 0
    for round_ in range(1, profile.rebalance_rounds + 1):
        wait_for(
            lambda r=round_: consumed(aggregate) >= r * n // (profile.rebalance_rounds + 2), 120, "progress"
        )
        leaving.signal(signal.SIGTERM)  # leaves the group: its partitions move to the steady bridge
        left_at = time.monotonic()
        assert leaving.proc is not None and leaving.proc.wait(30) == 0, leaving.tail()
        s.recovery.measure(f"leave {round_}", left_at, lambda: consumed(aggregate), 60, s.drained(producer))
        rejoined_at = time.monotonic()
        leaving = s.bridge()  # rejoins: the partitions are shared again
        s.recovery.measure(
            f"rejoin {round_}", rejoined_at, lambda: consumed(aggregate), 60, s.drained(producer)
        )
        rebalances += 2

    produced = s.produced(producer, n)
    figures = s.settle(produced)
    assert steady.running() and leaving.running()
    revoked = steady.tail(100_000).count("partitions revoked")
    assert revoked >= profile.rebalance_rounds, steady.tail()  # each round moved its partitions at least once
    s.finish(
        figures, f"{rebalances} rebalances; the steady bridge had its partitions revoked {revoked} times"
    )
