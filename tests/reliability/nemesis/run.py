"""The nemesis run: walk a schedule in real time, beginning and healing each fault on the dot; then, from
the checker's timeline, what each fault did to the orders in flight."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.checker.history import Event
from tests.checker.timeline import Timeline
from tests.reliability.nemesis.actions import Nemesis
from tests.reliability.nemesis.schedule import Fault


@dataclass(frozen=True)
class Injected:
    fault: Fault
    began: Event
    healed: Event

    def after_heal(self, timeline: Timeline) -> float | None:
        """Seconds from the heal until the first order produced after it was settled."""
        return timeline.resumed(self.healed.unix)

    def worst(self, timeline: Timeline) -> float | None:
        """The longest wait of an order in flight during the fault."""
        found = timeline.worst(self.began.unix, self.healed.unix)
        return None if found is None else found[0]


def drive(nemesis: Nemesis, schedule: Sequence[Fault]) -> list[Injected]:
    """Begin and heal every fault at its time (heals first when they coincide); whatever is active
    when this stops early is healed too."""
    steps = sorted(
        [(f.at, 1, i, f) for i, f in enumerate(schedule)]
        + [(f.heal_at, 0, i, f) for i, f in enumerate(schedule)]
    )
    began: dict[int, Event] = {}
    done: list[Injected] = []
    start = time.monotonic()
    try:
        for at, is_begin, index, fault in steps:
            time.sleep(max(0.0, start + at - time.monotonic()))
            if is_begin:
                began[index] = nemesis.begin(fault)
            else:
                done.append(Injected(fault, began[index], nemesis.heal(fault)))
    finally:
        nemesis.heal_all()
    return sorted(done, key=lambda injected: injected.began.at)


def recovery_by_kind(injected: Sequence[Injected], timeline: Timeline) -> dict[str, tuple[float, float]]:
    """Per fault kind: (the longest time from a heal until orders flowed again, the worst wait of an
    order in flight during one), seconds."""
    out: dict[str, tuple[float, float]] = {}
    for item in injected:
        after, worst = item.after_heal(timeline) or 0.0, item.worst(timeline) or 0.0
        seen = out.get(item.fault.kind, (0.0, 0.0))
        out[item.fault.kind] = (max(seen[0], after), max(seen[1], worst))
    return out
