"""The workers' writes to the running average: one atomic Lua script per order, and retry/DLQ notes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Final

import redis

from orders.core.aggregate import (
    COUNTERS_KEY,
    LATEST_KEY,
    MAX_ABS_CENTS,
    PRODUCT_COUNTS_KEY,
    PRODUCT_SUMS_KEY,
    RECENT_KEY,
    RECENT_SIZE,
    TOTALS_KEY,
    WINDOW,
    Aggregate,
    Event,
    Status,
    cents_to_money,
    checked_event,
    recent_entry,
    seen_key,
)

SCRIPT: Final = Path(__file__).with_name("aggregate.lua").read_text(encoding="utf-8")


class AggregateWriter(Aggregate):
    """The aggregate as a worker uses it: counts an order exactly once (idempotent on orderId)."""

    def __init__(self, client: redis.Redis, dedupe_ttl_seconds: int) -> None:
        if dedupe_ttl_seconds < 1:
            raise ValueError(f"dedupe_ttl_seconds must be at least 1, got {dedupe_ttl_seconds}")
        super().__init__(client)
        self._ttl = dedupe_ttl_seconds
        self._record = client.register_script(SCRIPT)

    def record_order(self, order_id: str, product: str, price_cents: int) -> bool:
        """Count one order; False if its orderId was already counted within the dedupe TTL.

        Raises ValueError for a price that is not a 64-bit integer of cents; redis errors propagate.
        """
        if isinstance(price_cents, bool) or not isinstance(price_cents, int):
            raise ValueError(f"price_cents must be an int, got {price_cents!r}")
        if abs(price_cents) > MAX_ABS_CENTS:
            raise ValueError(f"price_cents out of the 64-bit range: {price_cents}")
        keys = [
            seen_key(order_id),
            TOTALS_KEY,
            LATEST_KEY,
            PRODUCT_COUNTS_KEY,
            PRODUCT_SUMS_KEY,
            COUNTERS_KEY,
            RECENT_KEY,
        ]
        entry = recent_entry(order_id, product, cents_to_money(price_cents), "succeeded")
        args: list[str | int] = [str(price_cents), product, self._ttl, WINDOW, entry, RECENT_SIZE]
        return bool(self._record(keys=keys, args=args))

    def note_status(
        self,
        order_id: str,
        product: str,
        price: Decimal,
        status: Status,
        detail: str = "",
        counts: Event | None = None,
    ) -> None:
        """Add a retry or dead letter to the recent-activity list (successes are added by the script).

        ``counts`` also adds one to that pipeline counter in the same round trip: a retry's hook
        pays one round trip instead of two.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.lpush(RECENT_KEY, recent_entry(order_id, product, price, status, detail))
        pipe.ltrim(RECENT_KEY, 0, RECENT_SIZE - 1)
        if counts is not None:
            pipe.hincrby(COUNTERS_KEY, checked_event(counts), 1)
        pipe.execute()
