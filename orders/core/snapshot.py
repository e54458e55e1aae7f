"""One read of the aggregate in money (:class:`Snapshot`), and how the shards' reads combine into it exactly.

Across shards (orders/core/shards.py): counts, sums and every counter add up; min and max combine; a
product's figures add per name. "The last 100" are the 100 orders most recently counted across all
shards, ordered by the Redis server's clock (``TIME``, µs) when each shard's script counted them, ties
by shard number. Each shard keeps its own newest 100, so the union holds the global newest 100 and the
merge is exact, assuming the nodes' clocks agree to within the gap between two orders (one server: one
clock; several machines: NTP). Within a shard the list's own order stands, and at one shard the window
is exactly that shard's list, today's figure.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any, Final, get_args

from orders.core.errors import Stage

WINDOW: Final = 100
# `succeeded` is written by the script alone, so it always agrees with the orders counted.
COUNTERS: Final[tuple[str, ...]] = ("consumed", "succeeded", "retry_attempts", "dlq", "products_folded")
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
STAGE_EVENTS: Final[dict[str, str]] = {
    "decode": "dlq:decode", "validate": "dlq:validate", "process": "dlq:process"
}  # fmt: skip


def cents_to_money(cents: int) -> Decimal:
    """1999 -> Decimal('19.99'), exactly."""
    return Decimal(cents).scaleb(-2)


def average_of(sum_cents: int, count: int) -> Decimal | None:
    """The mean in money, rounded half-even to 0.0001; None for no orders.

    Integer division, so the result never depends on the decimal context's precision.
    """
    if count <= 0:
        return None
    quotient, remainder = divmod(sum_cents * 100, count)  # in units of 0.0001
    if 2 * remainder > count or (2 * remainder == count and quotient % 2):
        quotient += 1
    return Decimal(quotient).scaleb(-4)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def window_entry(raw: bytes | str) -> tuple[int, int]:
    """A last-100 entry -> (cents, µs): ``"<cents>:<usec>"`` with several shards, plain cents with one
    (today's format, read as time 0)."""
    cents, _, usec = _text(raw).partition(":")
    return int(cents), int(usec or 0)


@dataclass(frozen=True)
class ShardRead:
    """One shard's hashes and window, read in one MULTI/EXEC (orders/core/aggregate.py)."""

    totals: Mapping[str, int]
    window: list[tuple[int, int]]  # (cents, µs), newest first
    product_counts: Mapping[str, int]
    product_sums: Mapping[str, int]
    counters: Mapping[str, int]


def newest(windows: list[list[tuple[int, int]]], size: int = WINDOW) -> list[int]:
    """The ``size`` newest prices of all windows (each newest first), by time, ties by shard number."""
    keyed = [[(-usec, shard, cents) for cents, usec in window] for shard, window in enumerate(windows)]
    return [cents for _, _, cents in islice(heapq.merge(*keyed), size)]


def _add(hashes: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for values in hashes:
        for name, n in values.items():
            total[name] = total.get(name, 0) + n
    return total


def combine(reads: list[ShardRead]) -> Snapshot:
    """The shards' reads as one snapshot; one shard's read gives exactly that shard's figures."""
    totals = _add(read.totals for read in reads)
    lows = [read.totals["min_cents"] for read in reads if "min_cents" in read.totals]
    highs = [read.totals["max_cents"] for read in reads if "max_cents" in read.totals]
    if len(reads) == 1:  # the script's own running sum: exactly today's figure
        last100 = reads[0].totals.get("last100_sum_cents", 0), len(reads[0].window)
    else:
        window = newest([read.window for read in reads])
        last100 = sum(window), len(window)
    return Snapshot.from_cents(
        count=totals.get("count", 0),
        sum_cents=totals.get("sum_cents", 0),
        low=min(lows) if lows else None,
        high=max(highs) if highs else None,
        last100=last100,
        product_counts=_add(read.product_counts for read in reads),
        product_sums=_add(read.product_sums for read in reads),
        counters=_add(read.counters for read in reads),
    )


@dataclass(frozen=True, slots=True)
class ProductStats:
    count: int
    sum: Decimal
    average: Decimal | None

    @classmethod
    def from_cents(cls, count: int, sum_cents: int) -> ProductStats:
        return cls(count, cents_to_money(sum_cents), average_of(sum_cents, count))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent read of the aggregate; money as exact Decimals."""

    count: int
    sum: Decimal
    average: Decimal | None
    min: Decimal | None
    max: Decimal | None
    last100_size: int
    last100_sum: Decimal
    last100_average: Decimal | None
    products: Mapping[str, ProductStats] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    # Dead letters by stage (decode, validate, process); they add up to counters["dlq"].
    dlq_stages: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_hashes(
        cls,
        totals: Mapping[str, int],
        last100_size: int,
        product_counts: Mapping[str, int],
        product_sums: Mapping[str, int],
        counters: Mapping[str, int],
    ) -> Snapshot:
        """Build from the integer-cent hashes one shard's script keeps (missing fields read as empty)."""
        return cls.from_cents(
            count=totals.get("count", 0),
            sum_cents=totals.get("sum_cents", 0),
            low=totals.get("min_cents"),
            high=totals.get("max_cents"),
            last100=(totals.get("last100_sum_cents", 0), last100_size),
            product_counts=product_counts,
            product_sums=product_sums,
            counters=counters,
        )

    @classmethod
    def from_cents(
        cls,
        *,
        count: int,
        sum_cents: int,
        low: int | None,
        high: int | None,
        last100: tuple[int, int],
        product_counts: Mapping[str, int],
        product_sums: Mapping[str, int],
        counters: Mapping[str, int],
    ) -> Snapshot:
        last100_cents, last100_size = last100
        products = {
            name: ProductStats.from_cents(n, product_sums.get(name, 0))
            for name, n in sorted(product_counts.items())
        }
        return cls(
            count=count,
            sum=cents_to_money(sum_cents),
            average=average_of(sum_cents, count),
            min=None if low is None else cents_to_money(low),
            max=None if high is None else cents_to_money(high),
            last100_size=last100_size,
            last100_sum=cents_to_money(last100_cents),
            last100_average=average_of(last100_cents, last100_size),
            products=products,
            counters={name: counters.get(name, 0) for name in COUNTERS},
            dlq_stages={stage: counters.get(STAGE_EVENTS[stage], 0) for stage in STAGES},
        )

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: money as decimal strings (never floats), None as null."""
        return {
            "count": self.count,
            "sum": str(self.sum),
            "average": _money(self.average),
            "min": _money(self.min),
            "max": _money(self.max),
            "last100": {
                "size": self.last100_size,
                "sum": str(self.last100_sum),
                "average": _money(self.last100_average),
            },
            "products": {
                name: {"count": p.count, "sum": str(p.sum), "average": _money(p.average)}
                for name, p in self.products.items()
            },
            "counters": dict(self.counters),
            "dlq_stages": dict(self.dlq_stages),
        }
