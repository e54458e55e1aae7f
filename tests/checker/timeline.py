"""When each order was produced (its record's timestamp) and settled: counted (dated by its seen
marker's TTL) or dead-lettered (its first letter's timestamp).

Recovery and latency figures come from these, not from the pipeline's own metrics: how long after a
fault (or a heal) orders were counted again, and the worst wait of an order that lived through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Times:
    partition: int
    produced: float  # Unix seconds
    settled: float
    dead: bool = False  # dead-lettered rather than counted


@dataclass
class Timeline:
    orders: dict[str, Times] = field(default_factory=dict)

    def latencies(self) -> list[tuple[float, str]]:
        return sorted((t.settled - t.produced, order_id) for order_id, t in self.orders.items())

    def resumed(self, after: float, partition: int | None = None, dead: bool | None = None) -> float | None:
        """Seconds from ``after`` (Unix time) until the first order produced after it was settled
        (on ``partition`` only, or only dead-lettered / counted ones, if given): how soon orders
        flowed again. None if none was."""
        settled = [
            t.settled
            for t in self.orders.values()
            if t.produced >= after
            and (partition is None or t.partition == partition)
            and (dead is None or t.dead == dead)
        ]
        return round(min(settled) - after, 3) if settled else None

    def worst(self, start: float, end: float) -> tuple[float, str] | None:
        """The longest produce-to-settle wait of an order in flight at some moment of [start, end]:
        produced before ``end`` and settled after ``start``."""
        waits = [
            (t.settled - t.produced, order_id)
            for order_id, t in self.orders.items()
            if t.produced <= end and t.settled >= start
        ]
        return max(waits) if waits else None
