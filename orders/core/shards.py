"""The aggregate's logical shards: each shard's hash tag and keys, which shard an order lives in, and
the layout (how many shards) stored with the data.

One shard is today's layout, byte for byte: shard 0's tag is ``{orders}``, so existing data IS shard 0.
With N shards, every order's writes, its dedupe marker and its dead-letter claim live under the tag of
shard ``shard_of(orderId, N)``, so one Lua script still touches all of them atomically. N is fixed
(adding Redis nodes moves slots, with their keys, between nodes, never an order between shards) and is
stored in Redis (:data:`LAYOUT_KEY`, plus a stamp in every shard), so readers need no setting and a
writer laid out for another N is refused (README: "A sharded aggregate").
"""

from __future__ import annotations

import binascii
import functools
import re
import zlib
from dataclasses import dataclass
from itertools import count
from typing import Final

import redis

from orders.core.redis_client import AnyRedis

SLOTS: Final = 16384
MAX_SHARDS: Final = 64
HOME_TAG: Final = "orders"
# The home shard's stamp is the layout itself: N of the whole aggregate (missing = 1, today's layout).
LAYOUT_KEY: Final = "{orders}:layout"


class LayoutMismatch(Exception):
    """This process was configured (AGGREGATE_SHARDS) for another number of shards than the aggregate has."""


class StaleLayout(redis.ResponseError):
    """A shard's stamp disagreed with the N a script was called with: the aggregate was re-sharded under
    a running process. Nothing was written; the order goes back to its queue (worker/hooks.py)."""


def slot_of(tag: str) -> int:
    """Redis Cluster's slot of a hash tag: CRC16 (XMODEM, which binascii.crc_hqx computes) mod 16384."""
    return binascii.crc_hqx(tag.encode("utf-8"), 0) % SLOTS


@functools.cache
def tags(shards: int) -> tuple[str, ...]:
    """The hash tags of ``shards`` shards, shard 0 first (``orders``).

    Shard k's tag is the first ``orders.<k>of<N>.<i>`` (i = 0, 1, ...) whose slot lies within
    SLOTS / (16 N) of slot 105 + k SLOTS / N: the N tags sit evenly around the slot ring from
    ``orders``' own slot, so any even split of slots over M nodes gives each about N / M shards.
    Changing this search (or its format) moves every order of a shard k >= 1 to another key: data
    written under the old tags would no longer be read. tests/unit/test_shards.py pins the tags.
    """
    check_shards(shards)
    found = [HOME_TAG]
    home = slot_of(HOME_TAG)
    width = max(1, SLOTS // (16 * shards))
    for k in range(1, shards):
        target = (home + round(k * SLOTS / shards)) % SLOTS
        for i in count():
            tag = f"{HOME_TAG}.{k}of{shards}.{i}"
            gap = abs(slot_of(tag) - target)
            if min(gap, SLOTS - gap) <= width:
                found.append(tag)
                break
    return tuple(found)


def check_shards(shards: int) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be an integer from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def shard_of(order_id: str, shards: int) -> int:
    """The shard an order lives in: CRC-32 of its orderId (UTF-8) mod N.

    The orderId is the dedupe identity: every way an order arrives again (a Celery redelivery, the
    bridge re-reading after a crash, ``orders dlq replay``, a producer's retry) carries the same
    orderId, so its marker, its claim and its writes always land in the same shard, and one script
    decides "counted or not" for all copies. CRC-32, not ``hash()``: Python salts str hashes per
    process, and every process (and every version) must agree.
    """
    return zlib.crc32(order_id.encode("utf-8")) % shards


@dataclass(frozen=True)
class ShardKeys:
    """One shard's keys: all under one hash tag, so a script or MULTI may touch them together."""

    tag: str

    @property
    def prefix(self) -> str:
        return "{" + self.tag + "}:"

    def key(self, name: str) -> str:
        return self.prefix + name

    def pattern(self, name: str = "") -> str:
        """A SCAN pattern of this shard's keys starting ``name`` (the tag's text taken literally)."""
        literal = "".join("\\" + c if c in "*?[]\\" else c for c in self.key(name))
        return literal + "*"

    @property
    def figures(self) -> tuple[str, ...]:
        """The keys holding the shard's figures (not its markers, claims or stamp)."""
        return (self.totals, self.latest, self.product_counts, self.product_sums, self.counters, self.recent)

    @property
    def totals(self) -> str:
        return self.key("totals")

    @property
    def latest(self) -> str:
        return self.key("last100")

    @property
    def product_counts(self) -> str:
        return self.key("product:count")

    @property
    def product_sums(self) -> str:
        return self.key("product:sum_cents")

    @property
    def counters(self) -> str:
        return self.key("counters")

    @property
    def recent(self) -> str:
        return self.key("recent")

    @property
    def stamp(self) -> str:
        """The N this shard was laid out for (shard 0's is :data:`LAYOUT_KEY`)."""
        return self.key("layout")

    def seen(self, order_id: str) -> str:
        return self.key("seen:" + order_id)

    def dead(self, order_id: str) -> str:
        return self.key("dead:" + order_id)


@dataclass(frozen=True)
class Layout:
    """N logical shards and their keys."""

    shards: int = 1

    def __post_init__(self) -> None:
        check_shards(self.shards)

    def keys(self, shard: int) -> ShardKeys:
        return ShardKeys(tags(self.shards)[shard])

    def all(self) -> list[ShardKeys]:
        return [self.keys(k) for k in range(self.shards)]

    def shard_of(self, order_id: str) -> int:
        return shard_of(order_id, self.shards)

    def of_order(self, order_id: str) -> ShardKeys:
        return self.keys(self.shard_of(order_id))

    @property
    def home(self) -> ShardKeys:
        """Shard 0: the pipeline counters that belong to no order (the bridge's ``consumed``)."""
        return self.keys(0)


def read_layout(client: AnyRedis) -> Layout:
    """The aggregate's layout as stored (no layout key: one shard, today's layout)."""
    stored = client.get(LAYOUT_KEY)
    return Layout(1 if stored is None else int(stored))


def ensure_layout(client: AnyRedis, wanted: int | None) -> Layout:
    """The layout a writer configured for ``wanted`` shards (AGGREGATE_SHARDS; None: as stored) may use.

    A fresh aggregate (nothing counted, no layout) is laid out for ``wanted`` here, stamps first and the
    layout key last (SET NX, so two workers starting at once agree or one is refused). Otherwise a
    different N raises LayoutMismatch naming the migration command.
    """
    stored = client.get(LAYOUT_KEY)
    if wanted is None or (stored is None and wanted == 1):
        return Layout(1 if stored is None else int(stored))
    layout = Layout(check_shards(wanted))
    if stored is None and not client.exists(layout.home.totals):
        for shard in layout.all()[1:]:
            client.set(shard.stamp, wanted)
        client.set(LAYOUT_KEY, wanted, nx=True)
        stored = client.get(LAYOUT_KEY)
    have = 1 if stored is None else int(stored)
    if have != wanted:
        raise LayoutMismatch(
            f"the aggregate has {have} shard(s) but AGGREGATE_SHARDS={wanted}: stop the pipeline and run "
            f"`orders reshard {wanted}` to move it, or set AGGREGATE_SHARDS={have}"
        )
    return layout


_STALE_LAYOUT = re.compile(r"(?:^|of pipeline caused error: )STALELAYOUT\b")


def as_stale_layout(exc: redis.ResponseError) -> redis.ResponseError:
    """A script's STALELAYOUT reply as :class:`StaleLayout`, so ``except`` clauses can name it."""
    if isinstance(exc, StaleLayout) or not _STALE_LAYOUT.search(str(exc)):
        return exc
    return StaleLayout(str(exc))
