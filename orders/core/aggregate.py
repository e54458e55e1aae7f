"""The running average's Redis layout and its reads, shared by every process.

Workers write orders with one atomic Lua script (``worker/aggregate.py``); the bridge and the worker
hooks add to the pipeline counters; the tools read snapshots. All of them use the keys defined here,
spread over the aggregate's logical shards (orders/core/shards.py); the constants below are shard 0's,
which is the whole aggregate with one shard (today's layout).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any, Final, Literal, get_args

import redis

from orders.core.errors import Stage
from orders.core.redis_client import ROUTING_ERRORS, AnyRedis, node_for, refresh_routes
from orders.core.shards import LAYOUT_KEY, Layout, ShardKeys, read_layout
from orders.core.snapshot import (
    COUNTERS,
    STAGE_EVENTS,
    WINDOW,
    ProductStats,
    ShardRead,
    Snapshot,
    average_of,
    cents_to_money,
    combine,
    window_entry,
)

__all__ = ["COUNTERS", "WINDOW", "ProductStats", "Snapshot", "average_of", "cents_to_money"]

# One hash tag for every key of a shard: Redis Cluster hashes only the text between the first "{" and
# "}", so they share a slot and the script may touch them together (whatever the orderId holds).
ONE_SHARD: Final = Layout(1)
HOME: Final = ONE_SHARD.home
PREFIX: Final = HOME.prefix
TOTALS_KEY: Final = HOME.totals
LATEST_KEY: Final = HOME.latest
PRODUCT_COUNTS_KEY: Final = HOME.product_counts
PRODUCT_SUMS_KEY: Final = HOME.product_sums
COUNTERS_KEY: Final = HOME.counters
RECENT_KEY: Final = HOME.recent
RECENT_SIZE: Final = 200

# Products past the MAX_PRODUCTS-th distinct name of a shard are counted under this one in that shard.
OTHER_PRODUCT: Final = "(other)"
# Redis integers are signed 64-bit; a price outside that would fail inside the script.
MAX_ABS_CENTS: Final = 2**63 - 1

# "dlq" counts every dead letter; "dlq:<stage>" the ones of each stage (decode, validate, process).
Event = Literal["consumed", "retry_attempts", "dlq", "dlq:decode", "dlq:validate", "dlq:process"]
Status = Literal["succeeded", "retrying", "dlq"]
EVENTS: Final[tuple[str, ...]] = get_args(Event)
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)


def dead_letter_event(stage: Stage) -> Event:
    """The counter of dead letters at ``stage`` (besides "dlq", which counts them all)."""
    return STAGE_EVENTS[stage]  # type: ignore[return-value]  # the values are Events


def recent_entry(
    order_id: str, product: str, price: Decimal, status: Status, detail: str = "", trace_id: str | None = None
) -> str:
    """One recent-activity entry; ``trace`` is the order's trace id where it carried one (dead letters)."""
    entry = {"orderId": order_id, "product": product, "price": str(price), "status": status,
             "detail": detail, "at": round(time.time(), 3)}  # fmt: skip
    if trace_id:
        entry["trace"] = trace_id
    return json.dumps(entry)


def seen_key(order_id: str, layout: Layout = ONE_SHARD) -> str:
    """The dedupe marker of one orderId, in its shard; it expires after the dedupe TTL."""
    return layout.of_order(order_id).seen(order_id)


def dead_key(order_id: str, layout: Layout = ONE_SHARD) -> str:
    """The dead-letter claim of one orderId (state, error class, message), in its shard; it expires
    with the dedupe."""
    return layout.of_order(order_id).dead(order_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def per_node(client: AnyRedis, shards: Sequence[ShardKeys]) -> Iterator[tuple[redis.Redis, list[int]]]:
    """The shards (by index into ``shards``) grouped by the server that owns them: one pipeline each."""
    groups: dict[int, tuple[redis.Redis, list[int]]] = {}
    for index, shard in enumerate(shards):
        node = node_for(client, shard.totals)
        groups.setdefault(id(node), (node, []))[1].append(index)
    yield from groups.values()


@contextlib.contextmanager
def rerouted(client: AnyRedis) -> Iterator[None]:
    """Forget a Cluster's slot map when a read through :func:`per_node`'s clients fails on a lost or moved
    node, then re-raise: the next read asks the promoted replica. Without it a reader (stats, the
    dashboard, /metrics) kept asking the dead primary after a failover, for good (scenario 22f)."""
    try:
        yield
    except ROUTING_ERRORS:
        refresh_routes(client)
        raise


class Aggregate:
    """Reads of the shared aggregate and its pipeline counters; safe from any number of processes.

    Orders themselves are written by the workers only (``worker.aggregate.AggregateWriter``). Without a
    ``layout``, each read first reads the stored one (one GET), so tools need no setting.
    """

    def __init__(self, client: AnyRedis, layout: Layout | None = None) -> None:
        self._client = client
        self._layout = layout

    def layout(self) -> Layout:
        return self._layout if self._layout is not None else read_layout(self._client)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest activity, newest first by ``at`` across shards: orderId, product, price, status,
        detail, at (epoch s)."""
        lists = self._per_shard(lambda keys: ("LRANGE", keys.recent, "0", str(limit - 1)))
        entries = [[json.loads(raw) for raw in entries] for entries in lists]
        if len(entries) == 1:
            return entries[0]
        return list(islice(heapq.merge(*entries, key=lambda e: -float(e["at"])), limit))

    def count_event(self, name: Event, amount: int = 1) -> None:
        """Add to a pipeline counter (consumed, retry_attempts, dlq); ValueError for other names."""
        self.count_events({name: amount})

    def count_events(self, counts: Mapping[Event, int]) -> None:
        """Add to several pipeline counters in one round trip; ValueError for other names, or below 0.

        They go to the home shard (shard 0): the bridge's counts belong to no order's shard (a
        record that does not decode has no orderId). Readers add every shard's counters.
        """
        if any(n < 0 for n in counts.values()):
            raise ValueError(f"amounts must not be negative, got {dict(counts)}")
        pipe = self._client.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(COUNTERS_KEY, checked_event(name), n)
        pipe.execute()

    def release_dead_letter_claims(self, order_ids: Sequence[str]) -> None:
        """Let dead-lettered orders be counted again: a replay re-publishes them on purpose."""
        if not order_ids:
            return
        layout = self.layout()
        by_shard: dict[int, list[str]] = {}
        for order_id in order_ids:
            by_shard.setdefault(layout.shard_of(order_id), []).append(order_id)
        claims = [[layout.keys(k).dead(order_id) for order_id in ids] for k, ids in sorted(by_shard.items())]
        shards = [layout.keys(k) for k in sorted(by_shard)]
        with rerouted(self._client):
            for node, indexes in per_node(self._client, shards):
                pipe = node.pipeline(transaction=False)
                for index in indexes:  # one DEL per shard: a shard's keys share a slot
                    pipe.delete(*claims[index])
                pipe.execute()

    def snapshot(self) -> Snapshot:
        """Read every shard, each in one atomic step (:data:`READ_SCRIPT`), one pipeline per server.

        An order lives in one shard, so it is wholly in the snapshot or not at all. The script is
        atomic as MULTI/EXEC is, and a Cluster node runs it (one shard, one slot); it writes nothing
        (flagged ``no-writes``), so a Redis at its maxmemory, which refuses MULTI even of reads, runs it.
        """
        return combine([_shard_read(reply) for reply in self._per_shard(_read_shard)])

    def _per_shard(self, read: Callable[[ShardKeys], tuple[str, ...]]) -> list[Any]:
        """``read``'s reply for every shard, in shard order: one pipeline per server."""
        shards = self.layout().all()
        replies: list[Any] = [None] * len(shards)
        with rerouted(self._client):
            for node, indexes in per_node(self._client, shards):
                calls = [read(shards[k]) for k in indexes]
                for index, reply in zip(indexes, _loaded(node, calls), strict=True):
                    replies[index] = reply
        return replies


def _loaded(node: redis.Redis, calls: list[tuple[str, ...]]) -> list[Any]:
    """Send ``calls`` (EVALSHA of the read script, or plain commands) in one pipeline; once more after
    loading the script, which a new or restarted server lacks."""
    for _ in range(2):
        pipe = node.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call)
        replies = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            node.script_load(READ_SCRIPT)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)
    raise redis.exceptions.NoScriptError("the aggregate's read script was not found after loading it")


# One shard's figures in one atomic step: totals, the last-100 window, product counts and sums, counters.
READ_SCRIPT: Final = """#!lua flags=no-writes
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[3]),
        redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5])}
"""
READ_SHA: Final = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()


def _read_shard(keys: ShardKeys) -> tuple[str, ...]:
    return ("EVALSHA", READ_SHA, "5", keys.totals, keys.latest, keys.product_counts, keys.product_sums,
            keys.counters)  # fmt: skip


def _pairs(flat: list[Any]) -> dict[str, int]:
    """A script's HGETALL reply (field, value, field, value...) -> {field: int}."""
    return {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _shard_read(reply: list[Any]) -> ShardRead:
    totals, window, product_counts, product_sums, counters = reply
    return ShardRead(
        _pairs(totals), [window_entry(raw) for raw in window], _pairs(product_counts), _pairs(product_sums),
        _pairs(counters),
    )  # fmt: skip


def clear_aggregate(client: AnyRedis, keep: frozenset[str] = frozenset(), batch: int = 500) -> int:
    """Delete every key of every shard (everything under a shard's tag but ``keep`` and the layout
    stamps); returns how many.

    Counts, sums, averages, products, counters, recent activity and the dedupe markers alike, so the
    figures start afresh. The layout stays: it says where orders go, and workers running on would
    otherwise be refused. Keys are found with SCAN on each shard's server and unlinked in batches: not
    one atomic step, so an order a worker counts meanwhile may survive in part. Nothing outside the
    shards' tags is touched (the Celery queue, the registry's schemas in their own database).
    """
    layout = read_layout(client)
    deleted = 0
    for shard in layout.all():
        node = node_for(client, shard.totals)
        spared = keep | {shard.stamp, LAYOUT_KEY}
        pending: list[str] = []
        for raw in node.scan_iter(match=shard.pattern(), count=batch):
            if _text(raw) not in spared:
                pending.append(_text(raw))
            if len(pending) >= batch:
                deleted += _unlink(node, pending)
        deleted += _unlink(node, pending)
    return deleted


def _unlink(node: redis.Redis, keys: list[str]) -> int:
    """UNLINK one by one in a pipeline (a Cluster node refuses a multi-key UNLINK across slots)."""
    if not keys:
        return 0
    pipe = node.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    count = sum(int(n) for n in pipe.execute())
    keys.clear()
    return count


def checked_event(name: str) -> str:
    """The counter's name, or ValueError: the success counter is the aggregate script's alone."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; expected one of {EVENTS}")
    return name
