"""What the replicated-Kafka scenarios (13-17) share: the checker's verdict beside the suite's audit,
and the recovery figures the checker's timeline gives for the report row."""

from __future__ import annotations

from dataclasses import dataclass

from tests.checker.fixtures import CheckerRun
from tests.checker.history import Event
from tests.checker.timeline import Timeline
from tests.checker.verdict import Target, Verdict
from tests.reliability.accounting import Accounting
from tests.reliability.scenario import Scenario

# No transient failures in the Kafka scenarios: an order's wait is then the fault's doing, not its
# retries' (1, 2, 4 s). A few permanent ones keep dead letters going out through the fault.
KAFKA_FAULTS = {"FAILURE_RATE": "0", "PERMANENT_FAILURE_RATE": "0.01"}


@dataclass(frozen=True)
class Fault:
    """When a fault began and (if it was healed or resumed) ended; ``partitions``: those of `orders` it
    stopped, when not all (recovery is then the time until each of them flowed again)."""

    began: Event
    healed: Event | None = None
    partitions: tuple[int, ...] | None = None
    dead: bool | None = None  # True: the fault stops dead letters only; recovery is theirs

    def resumed(self, timeline: Timeline, after: Event) -> float | None:
        """Seconds from ``after`` until orders flowed again (on every partition the fault stopped)."""
        if self.partitions is None:
            return timeline.resumed(after.unix, dead=self.dead)
        each = [timeline.resumed(after.unix, partition, self.dead) for partition in self.partitions]
        return None if None in each else max(t for t in each if t is not None)


def target(s: Scenario, acknowledged: int | None) -> Target:
    p = s.pipeline
    return Target(
        p.broker.bootstrap,
        p.orders_topic,
        p.dlq_topic,
        s.registry_url,
        s.redis_url,
        acknowledged=acknowledged,
    )


def recovery_notes(verdict: Verdict, fault: Fault) -> tuple[float | None, str]:
    """(seconds from the fault until orders flowed again, the notes with every figure)."""
    timeline = verdict.timeline
    resumed = fault.resumed(timeline, fault.began)
    end = fault.healed or fault.began
    worst = timeline.worst(fault.began.unix, end.unix)
    what = "dead letters" if fault.dead else "orders"
    notes = [
        f"{what} flowing again {resumed:.1f}s after the fault"
        if resumed is not None
        else f"no {what} after it"
    ]
    if fault.healed is not None:
        after_heal = fault.resumed(timeline, fault.healed)
        notes.append(f"{after_heal:.1f}s after the heal" if after_heal is not None else "none after the heal")
    if worst is not None:
        notes.append(f"worst wait of an order in flight {worst[0]:.1f}s")
    return resumed, "; ".join(notes)


def finish(
    s: Scenario, checker: CheckerRun, figures: Accounting, acknowledged: int | None, notes: str, fault: Fault
) -> Verdict:
    """The checker's verdict, then the row (the audit's figures, the checker's recovery and notes), then
    both asserted: the audit's lost 0 and counted twice 0, and the checker's clean verdict."""
    verdict = checker.check(target(s, acknowledged), settle=30)
    recovery, timing = recovery_notes(verdict, fault)
    checker.history.record("observed", "checker", timing)
    if verdict.problems():
        notes = f"CHECKER: {'; '.join(verdict.problems())[:200]}; {notes}"
    s.finish(figures, f"{notes}; {timing}", recovery)
    verdict.assert_clean()
    return verdict
