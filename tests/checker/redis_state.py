"""What Redis holds of the aggregate, read with plain commands on the layout README documents.

The key names are written out here, not imported from the product: a product writing under another
name than the one documented would show as orders missing, not pass unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import redis

SEEN = "{orders}:seen:"  # one marker per counted orderId, set in the same atomic step as the count
DEAD = "{orders}:dead:"  # an order claimed for the DLQ
TOTALS = "{orders}:totals"  # hash: count, sum_cents, ...


@dataclass(frozen=True)
class RedisState:
    count: int
    sum: Decimal
    counted: frozenset[str]  # orderIds with a seen marker
    claimed: frozenset[str]  # orderIds with a dead-letter claim


def read_state(redis_url: str) -> RedisState:
    client = redis.Redis.from_url(redis_url, socket_timeout=10, decode_responses=True)
    try:
        totals = client.hgetall(TOTALS)
        return RedisState(
            count=int(totals.get("count", 0)),
            sum=Decimal(int(totals.get("sum_cents", 0))).scaleb(-2),
            counted=frozenset(_ids(client, SEEN)),
            claimed=frozenset(_ids(client, DEAD)),
        )
    finally:
        client.close()


def _ids(client: redis.Redis, prefix: str) -> set[str]:
    # MATCH takes a glob: the braces of the hash tag are not special in it, "*" and "[" would be.
    return {key[len(prefix) :] for key in client.scan_iter(match=prefix + "*", count=2000)}


def counted_at(redis_url: str, order_ids: list[str], dedupe_ttl: int) -> dict[str, float]:
    """When each counted order was counted (Unix seconds): its seen marker was set with ``dedupe_ttl``
    seconds to live at that moment, so the time left dates it to the millisecond (Redis' own clock,
    the machine's: the producer stamped its records with the same)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.time()
        for order_id in order_ids:
            pipe.pttl(SEEN + order_id)
        (seconds, micros), *left = pipe.execute()
    finally:
        client.close()
    now_ms = seconds * 1000 + micros / 1000
    return {
        order_id: (now_ms - (dedupe_ttl * 1000 - ms)) / 1000
        for order_id, ms in zip(order_ids, left, strict=True)
        if ms is not None and ms > 0
    }
