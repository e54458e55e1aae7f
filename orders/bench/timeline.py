"""Per-order timing of a probed run: exact latency quantiles, intake and settling after retries.

Latency runs from each order's *intended* send time (the producer's schedule: the first send plus
sequence / rate), not from when it was actually sent, so a producer held back by a busy machine does
not hide the wait (no coordinated omission). Quantiles are exact: the nearest-rank value of all
orders' latencies, not an interpolation inside histogram buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orders.bench.probe import Attempt

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1.0}
SETTLED_STATES = ("SUCCESS", "FAILURE")


def exact_quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile of sorted values: the smallest value at least q of them do not exceed."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def quantiles_ms(latencies: Iterable[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {name: exact_quantile(ordered, q) * 1000 for name, q in QUANTILES.items()}


def sequence_of(order_id: str) -> int:
    """The producer's sequence number, the suffix of ``<prefix>-<sequence>`` (1 for the first order)."""
    return int(order_id.rsplit("-", 1)[1])


@dataclass(frozen=True)
class Timeline:
    """When each order's first attempt ended, and when the attempt that settled it ended."""

    first: Mapping[str, float]
    settled: Mapping[str, float]
    record_ms: Mapping[str, int]

    @classmethod
    def of(cls, attempts: Iterable[Attempt]) -> Timeline:
        first: dict[str, float] = {}
        settled: dict[str, float] = {}
        record_ms: dict[str, int] = {}
        for a in attempts:
            if a.retries == 0:
                first[a.order_id] = min(a.ended, first.get(a.order_id, a.ended))
                record_ms[a.order_id] = a.record_ms
            if a.state in SETTLED_STATES:
                settled[a.order_id] = max(a.ended, settled.get(a.order_id, a.ended))
        return cls(first, settled, record_ms)

    def missing(self, order_ids: Iterable[str]) -> list[str]:
        return [oid for oid in order_ids if oid not in self.settled]

    def intake_rate(self, started: float) -> float:
        """Orders first processed per second, from the first send to the last order's first attempt."""
        return len(self.first) / max(max(self.first.values()) - started, 1e-3)

    def settling_after_intake(self) -> float:
        """Seconds from the last order's first attempt to the last order settling (retries included)."""
        return max(self.settled.values()) - max(self.first.values())

    def result_rate(self, started: float) -> float:
        """Orders settled per second, from the first send to the last order settling."""
        return len(self.settled) / max(max(self.settled.values()) - started, 1e-3)

    def latencies_from_schedule(self, started: float, rate: float) -> list[float]:
        """Seconds from each order's intended send time (``started`` + (sequence - 1) / rate) to settled."""
        return [at - (started + (sequence_of(oid) - 1) / rate) for oid, at in self.settled.items()]

    def waits_from_record(self) -> list[float]:
        """Seconds from each record's Kafka timestamp to settled: at full speed, the time in the backlog."""
        return [
            at - self.record_ms[oid] / 1000 for oid, at in self.settled.items() if self.record_ms.get(oid)
        ]
