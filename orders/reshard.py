"""`orders reshard N`: move the aggregate to N logical shards (orders/core/shards.py), pipeline stopped.

Every dedupe marker and dead-letter claim moves to the shard its orderId maps to under N, keeping its
remaining TTL (DUMP / RESTORE, so the value is byte for byte the same); the figures of all old shards
(totals, products, counters, the last-100 window, recent activity) are combined exactly and written to the
new home shard (shard 0): readers add the shards, so where a figure sits does not change any sum, and an
order's dedupe only needs its marker in the order's shard. Then the stamps and the layout key. Not one
atomic step: run it with no bridge or worker running (it refuses when the counters moved a moment ago).
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import click
import redis

from orders.core.aggregate import RECENT_SIZE, Aggregate
from orders.core.redis_client import AnyRedis, connect, node_for
from orders.core.settings import Settings, redact_url
from orders.core.shards import LAYOUT_KEY, MAX_SHARDS, Layout, ShardKeys, read_layout
from orders.core.snapshot import WINDOW, Snapshot, window_entry

BATCH = 500


@dataclass
class Moved:
    """What a re-shard did."""

    before: Layout
    after: Layout
    markers: list[int] = field(default_factory=lambda: [0, 0])  # moved, seen
    claims: list[int] = field(default_factory=lambda: [0, 0])
    snapshot_before: Snapshot | None = None
    snapshot_after: Snapshot | None = None

    def lines(self) -> Iterator[str]:
        yield f"shards: {self.before.shards} -> {self.after.shards}"
        yield f"dedupe markers moved: {self.markers[0]} of {self.markers[1]}"
        yield f"dead-letter claims moved: {self.claims[0]} of {self.claims[1]}"
        for name, snap in (("before", self.snapshot_before), ("after", self.snapshot_after)):
            if snap is not None:
                yield (f"totals {name}: count {snap.count}, sum {snap.sum}, min {snap.min}, "
                       f"max {snap.max}, last {snap.last100_size} sum {snap.last100_sum}, "
                       f"counters {dict(snap.counters)}")  # fmt: skip

    @property
    def exact(self) -> bool:
        return self.snapshot_before == self.snapshot_after


def counters_moving(client: AnyRedis, seconds: float = 2.0) -> bool:
    """Whether any shard's counters changed within ``seconds``: a bridge or a worker is still running."""
    first = Aggregate(client).snapshot().counters
    time.sleep(seconds)
    return Aggregate(client).snapshot().counters != first


def reshard_aggregate(client: AnyRedis, shards: int) -> Moved:
    """Move the aggregate in ``client`` to ``shards`` shards; what was done, with both snapshots."""
    before, after = read_layout(client), Layout(shards)
    moved = Moved(before, after, snapshot_before=Aggregate(client, before).snapshot())
    if before == after:
        moved.snapshot_after = moved.snapshot_before
        return moved
    for old in before.all():
        _move(client, old, "seen:", after, moved.markers)
        _move(client, old, "dead:", after, moved.claims)
    _write_figures(client, [_read_figures(client, old) for old in before.all()], before, after)
    _restamp(client, before, after)
    moved.snapshot_after = Aggregate(client, after).snapshot()
    return moved


def _move(client: AnyRedis, old: ShardKeys, kind: str, after: Layout, tally: list[int]) -> None:
    """Each marker (or claim) of shard ``old`` to its order's shard under ``after``, TTL kept."""
    node = node_for(client, old.totals)
    batch: list[str] = []
    for raw in node.scan_iter(match=old.pattern(kind), count=BATCH):
        batch.append(raw.decode() if isinstance(raw, bytes) else raw)
        if len(batch) >= BATCH:
            _move_batch(client, node, batch, old, kind, after, tally)
    _move_batch(client, node, batch, old, kind, after, tally)


def _move_batch(
    client: AnyRedis, node: redis.Redis, keys: list[str], old: ShardKeys, kind: str, after: Layout,
    tally: list[int],
) -> None:  # fmt: skip
    tally[1] += len(keys)
    order_ids = [key.removeprefix(old.key(kind)) for key in keys]
    targets = [after.of_order(order_id).key(kind + order_id) for order_id in order_ids]
    moving = [(key, target) for key, target in zip(keys, targets, strict=True) if key != target]
    keys.clear()
    if not moving:
        return
    pipe = node.pipeline(transaction=False)
    for key, _ in moving:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    for (key, target), value, ttl in zip(moving, replies[::2], replies[1::2], strict=True):
        if value is None or ttl == -2:  # expired meanwhile
            continue
        node_for(client, target).restore(target, max(int(ttl), 0), value, replace=True)
        node.delete(key)
        tally[0] += 1


@dataclass
class Figures:
    """One shard's figures as stored (windows raw, so their entries keep their times)."""

    totals: dict[str, int]
    window: list[str]
    products: tuple[dict[str, int], dict[str, int]]
    counters: dict[str, int]
    recent: list[str]


def _read_figures(client: AnyRedis, shard: ShardKeys) -> Figures:
    pipe = node_for(client, shard.totals).pipeline(transaction=True)
    pipe.hgetall(shard.totals)
    pipe.lrange(shard.latest, 0, -1)
    pipe.hgetall(shard.product_counts)
    pipe.hgetall(shard.product_sums)
    pipe.hgetall(shard.counters)
    pipe.lrange(shard.recent, 0, -1)
    totals, window, counts, sums, counters, recent = pipe.execute()
    return Figures(_ints(totals), [_text(e) for e in window], (_ints(counts), _ints(sums)), _ints(counters),
                   [_text(e) for e in recent])  # fmt: skip


def _write_figures(client: AnyRedis, old: list[Figures], before: Layout, after: Layout) -> None:
    """Every old shard's figures combined, into the new home shard; the old shards' figures deleted."""
    totals = _sum([f.totals for f in old], skip=("min_cents", "max_cents", "last100_sum_cents"))
    lows = [f.totals["min_cents"] for f in old if "min_cents" in f.totals]
    highs = [f.totals["max_cents"] for f in old if "max_cents" in f.totals]
    if lows:
        totals["min_cents"], totals["max_cents"] = min(lows), max(highs)
    window = _newest_window([f.window for f in old])
    totals["last100_sum_cents"] = sum(window_entry(entry)[0] for entry in window)
    recent = list(islice(heapq.merge(*[f.recent for f in old], key=lambda e: -float(json.loads(e)["at"])),
                         RECENT_SIZE))  # fmt: skip
    for shard in before.all():
        pipe = node_for(client, shard.totals).pipeline(transaction=True)
        pipe.delete(*shard.figures)
        pipe.execute()
    home = after.home
    pipe = node_for(client, home.totals).pipeline(transaction=True)
    _hset(pipe, home.totals, totals if totals.get("count") else {})
    _hset(pipe, home.product_counts, _sum([f.products[0] for f in old]))
    _hset(pipe, home.product_sums, _sum([f.products[1] for f in old]))
    _hset(pipe, home.counters, _sum([f.counters for f in old]))
    if window:
        pipe.rpush(home.latest, *window)
    if recent:
        pipe.rpush(home.recent, *recent)
    pipe.execute()


def _newest_window(windows: list[list[str]]) -> list[str]:
    """The newest WINDOW entries of all windows, as the readers merge them (orders/core/snapshot.py)."""
    keyed = [[(-window_entry(e)[1], shard, e) for e in window] for shard, window in enumerate(windows)]
    return [entry for _, _, entry in islice(heapq.merge(*keyed), WINDOW)]


def _restamp(client: AnyRedis, before: Layout, after: Layout) -> None:
    """The old shards' stamps gone (a writer still routing by them is refused), the new ones set."""
    for shard in before.all()[1:]:
        node_for(client, shard.stamp).delete(shard.stamp)
    for shard in after.all()[1:]:
        node_for(client, shard.stamp).set(shard.stamp, after.shards)
    if after.shards == 1:
        client.delete(LAYOUT_KEY)  # one shard: exactly today's layout
    else:
        client.set(LAYOUT_KEY, after.shards)


def _hset(pipe: Any, key: str, mapping: dict[str, int]) -> None:
    if mapping:
        pipe.hset(key, mapping=mapping)


def _sum(hashes: list[dict[str, int]], skip: tuple[str, ...] = ()) -> dict[str, int]:
    total: dict[str, int] = {}
    for values in hashes:
        for name, n in values.items():
            if name not in skip:
                total[name] = total.get(name, 0) + n
    return total


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ints(reply: dict[Any, Any]) -> dict[str, int]:
    return {_text(k): int(v) for k, v in reply.items()}


@click.command()
@click.argument("shards", type=click.IntRange(1, MAX_SHARDS))
@click.option("--yes", "-y", is_flag=True, help="Do not ask, and go on even if the counters moved just now.")
def reshard(shards: int, yes: bool) -> None:
    """Move the aggregate in REDIS_URL to SHARDS logical shards (then start the workers with
    AGGREGATE_SHARDS=SHARDS, or unset).

    Stop every bridge and worker first: the move is not one atomic step. Markers and dead-letter claims
    move to their orders' shards with their TTLs; the figures are combined exactly; it prints what it did
    and fails if the totals after differ from the totals before.
    """
    from orders.core.process import start_process

    settings = start_process(Settings)
    where = redact_url(settings.redis_url)
    with connect(settings.redis) as client:
        current = read_layout(client).shards
        if current == shards:
            click.echo(f"the aggregate in {where} has {shards} shard(s) already: nothing to do")
            return
        if counters_moving(client) and not yes:
            raise click.ClickException(
                "the aggregate's counters moved in the last 2 s: stop every bridge and worker first "
                "(or --yes)"
            )
        if not yes and not click.confirm(f"Move the aggregate in {where} from {current} to {shards} shards?"):
            raise click.ClickException("nothing moved")
        moved = reshard_aggregate(client, shards)
    for line in moved.lines():
        click.echo(line)
    if not moved.exact:
        raise click.ClickException("the figures after the move differ from those before: see above")
    click.echo(f"done: start the workers with AGGREGATE_SHARDS={shards} (or unset)")
