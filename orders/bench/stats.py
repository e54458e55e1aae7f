"""The arithmetic of `orders bench`: summaries of repeated runs, and quantiles from Prometheus histograms."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# (upper bound, cumulative count), sorted by bound, +Inf last: a histogram as PromQL sees it.
Buckets = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of repeated runs, with their min and max."""

    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: Iterable[float]) -> Summary:
        """Raises ValueError for no runs."""
        values = tuple(float(v) for v in runs)
        if not values:
            raise ValueError("a summary needs at least one run")
        return cls(statistics.median(values), min(values), max(values), values)

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "runs": list(self.runs)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """PromQL's ``histogram_quantile``: linear interpolation inside the bucket holding the q-th rank.

    As in Prometheus: NaN without observations or without a +Inf bucket; a rank falling in the
    +Inf bucket answers the highest finite bound; the first bucket is taken to start at 0.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    total = ordered[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, (_, count) in enumerate(ordered) if count >= rank)
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper, count = ordered[index]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if index == 0 else ordered[index - 1]
    in_bucket = count - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * ((rank - below) / in_bucket)


def parse_histogram(exposition: str, name: str) -> dict[float, float]:
    """The cumulative buckets {upper bound: count} of histogram ``name`` in a /metrics page.

    Series with other labels are added together (one histogram per process, unlabelled in ours).
    """
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def merge_histograms(histograms: Iterable[Mapping[float, float]]) -> list[tuple[float, float]]:
    """Sum bucket counts bound by bound across processes (what ``sum by (le)`` does)."""
    merged: dict[float, float] = {}
    for histogram in histograms:
        for bound, count in histogram.items():
            merged[bound] = merged.get(bound, 0.0) + count
    return sorted(merged.items())


def observations(buckets: Buckets) -> float:
    """How many observations a histogram holds (its +Inf bucket)."""
    return max((count for bound, count in buckets if math.isinf(bound)), default=0.0)
