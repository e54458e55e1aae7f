"""The dashboard's figures as one JSON-able state: rates, consumer lag and capped history (pure logic)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from orders.core.aggregate import Snapshot
from orders.core.lag import PartitionLag, lag_json, produced_total

HISTORY_POINTS: Final = 300  # five minutes at one sample per second
RATE_WINDOW: Final = 5.0  # seconds a rate is averaged over, so one late sample does not make it jump
RECENT_ROWS: Final = 20
# MAX_PRODUCTS bounds the aggregate; the page needs far fewer rows each second.
PRODUCT_ROWS: Final = 20
SERIES: Final = ("average", "last100", "succeeded_rate", "produced_rate")

HealthStatus = Literal["ok", "down", "unknown"]


def windowed_rate(points: Sequence[tuple[float, int]], window: float = RATE_WINDOW) -> float:
    """Per-second increase from the oldest point within ``window`` seconds of the newest one to it.

    ``points`` are (monotonic seconds, counter value), oldest first. 0.0 with fewer than two points,
    and 0.0 (never negative) when the counter went down: a flushed Redis database, a recreated topic.
    """
    if len(points) < 2:
        return 0.0
    newest_t, newest_v = points[-1]
    oldest_t, oldest_v = next((t, v) for t, v in points if newest_t - t <= window)
    if newest_t <= oldest_t:
        oldest_t, oldest_v = points[-2]
    elapsed = newest_t - oldest_t
    if elapsed <= 0 or newest_v < oldest_v:
        return 0.0
    return (newest_v - oldest_v) / elapsed


@dataclass(frozen=True, slots=True)
class Sample:
    """One second's figures, as the history keeps them."""

    at: float  # wall clock, for the chart's time axis
    monotonic: float  # for rates, immune to clock changes
    succeeded: int
    produced: int | None
    average: float | None
    last100: float | None


@dataclass
class History:
    """The last ``cap`` samples, oldest first, with the rates derived from them."""

    cap: int = HISTORY_POINTS
    samples: deque[Sample] = field(default_factory=deque)
    _rates: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, sample: Sample) -> None:
        """Append ``sample``; the oldest falls off once ``cap`` are held."""
        self.samples.append(sample)
        self._rates.append((self._rate(lambda s: s.succeeded), self._rate(lambda s: s.produced)))
        while len(self.samples) > self.cap:
            self.samples.popleft()
            self._rates.popleft()

    def _rate(self, value: Callable[[Sample], int | None]) -> float:
        newest = self.samples[-1].monotonic
        points: list[tuple[float, int]] = []
        for sample in reversed(self.samples):
            if newest - sample.monotonic > RATE_WINDOW:
                break
            figure = value(sample)
            if figure is not None:
                points.append((sample.monotonic, figure))
        return windowed_rate(points[::-1])

    @property
    def succeeded_rate(self) -> float:
        return self._rates[-1][0] if self._rates else 0.0

    @property
    def produced_rate(self) -> float:
        return self._rates[-1][1] if self._rates else 0.0

    def to_json(self) -> dict[str, list[Any]]:
        """Column lists for the charts: t (epoch s) and one list per series in SERIES."""
        return {
            "t": [round(s.at, 3) for s in self.samples],
            "average": [s.average for s in self.samples],
            "last100": [s.last100 for s in self.samples],
            "succeeded_rate": [round(r[0], 2) for r in self._rates],
            "produced_rate": [round(r[1], 2) for r in self._rates],
        }


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


UNKNOWN_HEALTH: Final = {
    name: Health("unknown", "not checked yet") for name in ("kafka", "redis", "registry", "workers")
}


def money(value: Any) -> float | None:
    """A Decimal (or None) as a float for charts; the exact figures travel as strings beside it."""
    return None if value is None else float(value)


def processing_json(
    snapshot: Snapshot, queued: int | None, in_flight: int | None, rate: float
) -> dict[str, Any]:
    counters = snapshot.counters
    return {
        "consumed": counters.get("consumed", 0),
        "succeeded": counters.get("succeeded", snapshot.count),
        "retry_attempts": counters.get("retry_attempts", 0),
        "dlq": counters.get("dlq", 0),
        "dlq_stages": dict(snapshot.dlq_stages),
        "queued": queued,
        "in_flight": in_flight,
        "rate": round(rate, 2),
    }


def average_json(snapshot: Snapshot) -> dict[str, Any]:
    def shown(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "count": snapshot.count,
        "all_time": shown(snapshot.average),
        "last100": shown(snapshot.last100_average),
        "last100_size": snapshot.last100_size,
        "min": shown(snapshot.min),
        "max": shown(snapshot.max),
    }


@dataclass(frozen=True, slots=True)
class Figures:
    """What one sampling pass read; None where its source could not be read (see ``errors``)."""

    snapshot: Snapshot | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)
    queued: int | None = None
    in_flight: int | None = None
    failure_rate: float | None = None
    lags: list[PartitionLag] | None = None
    errors: tuple[str, ...] = ()

    def sample(self, at: float, monotonic: float) -> Sample:
        snap = self.snapshot
        return Sample(
            at=at,
            monotonic=monotonic,
            succeeded=snap.count if snap else 0,
            produced=None if self.lags is None else produced_total(self.lags),
            average=money(snap.average) if snap else None,
            last100=money(snap.last100_average) if snap else None,
        )


def busiest_products(snapshot: Snapshot, limit: int = PRODUCT_ROWS) -> dict[str, Any]:
    """The ``limit`` busiest products: every browser gets this each second, not the whole table."""
    products = snapshot.to_json_dict()["products"]
    ranked = sorted(products.items(), key=lambda item: (-item[1]["count"], item[0]))
    return dict(ranked[:limit])


def compose_state(
    figures: Figures,
    history: History,
    health: Mapping[str, Health],
    controls: Mapping[str, Any],
    uptime: float,
) -> dict[str, Any]:
    """The one JSON document every client receives each second."""
    snap = figures.snapshot
    produced = None if figures.lags is None else produced_total(figures.lags)
    return {
        "at": history.samples[-1].at if history.samples else None,
        "uptime": round(uptime, 1),
        "producer": {"produced": produced, "rate": round(history.produced_rate, 2)},
        "processing": None
        if snap is None
        else processing_json(snap, figures.queued, figures.in_flight, history.succeeded_rate),
        "average": None if snap is None else average_json(snap),
        "products": {} if snap is None else busiest_products(snap),
        "lag": lag_json(figures.lags),
        "recent": figures.recent[:RECENT_ROWS],
        "health": {name: h.to_json() for name, h in health.items()},
        "controls": {**controls, "failure_rate": figures.failure_rate},
        "history": history.to_json(),
        "errors": list(figures.errors),
    }
