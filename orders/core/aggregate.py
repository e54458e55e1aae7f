"""The running average's Redis layout and its reads, shared by every process.

Workers write orders with one atomic Lua script (``worker/aggregate.py``); the bridge and the worker
hooks add to the pipeline counters; the tools read snapshots. All of them use the keys defined here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, get_args

import redis

from orders.core.errors import Stage
from orders.core.redis_client import AnyRedis

# One hash tag for every key: Redis Cluster hashes only the text between the first "{" and "}",
# so all of them share a slot and the script may touch them together (whatever the orderId holds).
PREFIX: Final = "{orders}:"
SEEN_PREFIX: Final = PREFIX + "seen:"
# An order claimed for the dead-letter queue (worker/claim.lua): never counted after that.
DEAD_PREFIX: Final = PREFIX + "dead:"
TOTALS_KEY: Final = PREFIX + "totals"
LATEST_KEY: Final = PREFIX + "last100"
PRODUCT_COUNTS_KEY: Final = PREFIX + "product:count"
PRODUCT_SUMS_KEY: Final = PREFIX + "product:sum_cents"
COUNTERS_KEY: Final = PREFIX + "counters"
RECENT_KEY: Final = PREFIX + "recent"
RECENT_SIZE: Final = 200

WINDOW: Final = 100
# Products past the MAX_PRODUCTS-th distinct name are counted under this one.
OTHER_PRODUCT: Final = "(other)"
# Redis integers are signed 64-bit; a price outside that would fail inside the script.
MAX_ABS_CENTS: Final = 2**63 - 1

# "dlq" counts every dead letter; "dlq:<stage>" the ones of each stage (decode, validate, process).
Event = Literal["consumed", "retry_attempts", "dlq", "dlq:decode", "dlq:validate", "dlq:process"]
Status = Literal["succeeded", "retrying", "dlq"]
EVENTS: Final[tuple[str, ...]] = get_args(Event)
# `succeeded` is written by the script alone, so it always agrees with the orders counted.
COUNTERS: Final[tuple[str, ...]] = ("consumed", "succeeded", "retry_attempts", "dlq", "products_folded")
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
_STAGE_EVENTS: Final[dict[str, Event]] = {
    "decode": "dlq:decode", "validate": "dlq:validate", "process": "dlq:process"
}  # fmt: skip


def dead_letter_event(stage: Stage) -> Event:
    """The counter of dead letters at ``stage`` (besides "dlq", which counts them all)."""
    return _STAGE_EVENTS[stage]


def recent_entry(
    order_id: str, product: str, price: Decimal, status: Status, detail: str = "", trace_id: str | None = None
) -> str:
    """One recent-activity entry; ``trace`` is the order's trace id where it carried one (dead letters)."""
    entry = {"orderId": order_id, "product": product, "price": str(price), "status": status,
             "detail": detail, "at": round(time.time(), 3)}  # fmt: skip
    if trace_id:
        entry["trace"] = trace_id
    return json.dumps(entry)


def seen_key(order_id: str) -> str:
    """The dedupe marker of one orderId; it expires after the dedupe TTL."""
    return SEEN_PREFIX + order_id


def dead_key(order_id: str) -> str:
    """The dead-letter claim of one orderId (state, error class, message); it expires with the dedupe."""
    return DEAD_PREFIX + order_id


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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ints(reply: Mapping[Any, Any]) -> dict[str, int]:
    """A hash reply (bytes or str, as the client decodes) -> {field: int}."""
    return {_text(key): int(value) for key, value in reply.items()}


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


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
        """Build from the integer-cent hashes the script keeps (missing fields read as empty)."""
        count, sum_cents = totals.get("count", 0), totals.get("sum_cents", 0)
        low, high = totals.get("min_cents"), totals.get("max_cents")
        last100_cents = totals.get("last100_sum_cents", 0)
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
            dlq_stages={stage: counters.get(_STAGE_EVENTS[stage], 0) for stage in STAGES},
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


class Aggregate:
    """Reads of the shared aggregate and its pipeline counters; safe from any number of processes.

    Orders themselves are written by the workers only (``worker.aggregate.AggregateWriter``).
    """

    def __init__(self, client: AnyRedis) -> None:
        self._client = client

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest activity, newest first: orderId, product, price, status, detail, at (epoch s)."""
        return [json.loads(raw) for raw in self._client.lrange(RECENT_KEY, 0, limit - 1)]

    def count_event(self, name: Event, amount: int = 1) -> None:
        """Add to a pipeline counter (consumed, retry_attempts, dlq); ValueError for other names."""
        self.count_events({name: amount})

    def count_events(self, counts: Mapping[Event, int]) -> None:
        """Add to several pipeline counters in one round trip; ValueError for other names, or below 0."""
        if any(n < 0 for n in counts.values()):
            raise ValueError(f"amounts must not be negative, got {dict(counts)}")
        pipe = self._client.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(COUNTERS_KEY, checked_event(name), n)
        pipe.execute()

    def release_dead_letter_claims(self, order_ids: Sequence[str]) -> None:
        """Let dead-lettered orders be counted again: a replay re-publishes them on purpose."""
        if order_ids:
            self._client.delete(*(dead_key(order_id) for order_id in order_ids))

    def snapshot(self) -> Snapshot:
        """Read everything in one round trip; MULTI/EXEC, so no order lands half-way through it.

        A Redis at its maxmemory refuses transactions even of reads: then the reads go without one
        (nothing is being written then anyway).
        """
        try:
            replies = self._read_all(transaction=True)
        except (redis.exceptions.OutOfMemoryError, redis.exceptions.ExecAbortError):
            replies = self._read_all(transaction=False)
        totals, size, product_counts, product_sums, counters = replies
        return Snapshot.from_hashes(
            _ints(totals), int(size), _ints(product_counts), _ints(product_sums), _ints(counters)
        )

    def _read_all(self, transaction: bool) -> list[Any]:
        pipe = self._client.pipeline(transaction=transaction)
        pipe.hgetall(TOTALS_KEY)
        pipe.llen(LATEST_KEY)
        pipe.hgetall(PRODUCT_COUNTS_KEY)
        pipe.hgetall(PRODUCT_SUMS_KEY)
        pipe.hgetall(COUNTERS_KEY)
        return list(pipe.execute())


def clear_aggregate(client: AnyRedis, keep: frozenset[str] = frozenset(), batch: int = 500) -> int:
    """Delete every key of the aggregate (everything under PREFIX but ``keep``); returns how many.

    Counts, sums, averages, products, counters, recent activity and the dedupe markers alike, so the
    figures start afresh. Keys are found with SCAN and unlinked in batches: not one atomic step, so
    an order a worker counts meanwhile may survive in part. Nothing outside PREFIX is touched (the
    Celery queue, the registry's schemas in their own database).
    """
    deleted = 0
    pending: list[str] = []
    for raw in client.scan_iter(match=f"{PREFIX}*", count=batch):
        key = _text(raw)
        if key not in keep:
            pending.append(key)
        if len(pending) >= batch:
            deleted += int(client.unlink(*pending))
            pending.clear()
    if pending:
        deleted += int(client.unlink(*pending))
    return deleted


def checked_event(name: str) -> str:
    """The counter's name, or ValueError: the success counter is the aggregate script's alone."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; expected one of {EVENTS}")
    return name
