"""The workers' writes to the running average: one atomic Lua script per order, dead-letter claims,
and the retry/DLQ notes of the activity list, each in the order's shard (orders/core/shards.py) on the
server that owns it (``node_for``).

Durability: with ``replicas`` set (REDIS_WAIT_REPLICAS, orders/core/replication.py), the order's script
and a ``WAIT replicas timeout`` go in one pipeline on one connection (one round trip: WAIT covers only
its own connection's writes). Fewer replicas than asked acknowledged in time is :class:`ReplicasBehind`:
the task hands its order back, and the redelivered copy finds it counted, refreshes the marker and
waits again. Every write of an order goes to the server owning its shard (``node_for``), with the WAIT
on that server's connection: under Redis Cluster, the node that took the write. A MOVED, ASK,
CLUSTERDOWN or a lost connection (``ROUTING_ERRORS``) forgets the routes (``refresh_routes``) and is
raised: the task hands its order back and the redelivered copy finds the new owner. A shard stamped for
another number of shards (the aggregate was re-sharded under this worker) answers STALELAYOUT
(:class:`StaleLayout`), handed back the same way: nothing is ever counted into a shard the order's
marker no longer lives in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import redis
from redis.commands.core import Script

from orders.core.aggregate import (
    MAX_ABS_CENTS,
    ONE_SHARD,
    OTHER_PRODUCT,
    RECENT_SIZE,
    WINDOW,
    Aggregate,
    Event,
    Status,
    cents_to_money,
    checked_event,
    recent_entry,
    rerouted,
)
from orders.core.redis_client import (
    ROUTING_ERRORS,
    AnyRedis,
    ReplicasBehind,
    Unwritable,
    as_unwritable,
    node_for,
    reconnect,
    refuses_writes,
    wait_for_replicas,
)
from orders.core.shards import Layout, StaleLayout, as_stale_layout

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SCRIPT: Final = (HERE / "aggregate.lua").read_text(encoding="utf-8")
CLAIM_SCRIPT: Final = (HERE / "claim.lua").read_text(encoding="utf-8")
DEFAULT_MAX_PRODUCTS: Final = 1000
# One order's write as a batch carries it: orderId, product, price in cents.
OrderWrite = tuple[str, str, int]
# aggregate.lua's keys and arguments for one order.
Call = tuple[list[str], list[str | int]]


class ClaimedForDeadLetter(Exception):
    """The order was claimed for the DLQ by an earlier attempt, so it is not counted now."""


@dataclass(frozen=True)
class Claim:
    """An order's dead-letter claim: ``counted`` (none made), ``claimed`` or ``published``, and why."""

    state: str
    error_class: str
    error_message: str


class AggregateWriter(Aggregate):
    """The aggregate as a worker uses it: counts an order exactly once, or claims it for the DLQ."""

    def __init__(
        self,
        client: AnyRedis,
        dedupe_ttl_seconds: int,
        max_products: int = DEFAULT_MAX_PRODUCTS,
        replicas: int = 0,
        wait_timeout: float = 1.0,
        layout: Layout = ONE_SHARD,
    ) -> None:
        if dedupe_ttl_seconds < 1:
            raise ValueError(f"dedupe_ttl_seconds must be at least 1, got {dedupe_ttl_seconds}")
        super().__init__(client, layout)
        self._shards = layout
        self._ttl = dedupe_ttl_seconds
        self._max_products = max_products
        self._replicas = replicas
        self._wait_ms = max(1, round(wait_timeout * 1000))
        self._record = client.register_script(SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)

    def record_order(self, order_id: str, product: str, price_cents: int) -> bool:
        """Count one order; False if its orderId was already counted within the dedupe TTL.

        Raises ValueError for a price that is not a 64-bit integer of cents, ClaimedForDeadLetter
        if an earlier attempt claimed the order for the DLQ; redis errors propagate.
        """
        keys, args = self._order_call(order_id, product, price_cents)
        return _counted(order_id, int(self._run(self._record, keys, args)))

    def record_orders(self, orders: Sequence[OrderWrite]) -> list[bool | Exception]:
        """Count a batch of orders (the group commit of worker/group_commit.py): per server owning any
        of their shards, one pipeline of their scripts and (with ``replicas``) one WAIT covering them,
        so 1 round trip per server touched (one server: 1, as with a single shard).

        One result per order, in order: counted (True), a duplicate (False), or the exception that order
        alone met (ClaimedForDeadLetter, a script error such as an overflow). A refusal by any server
        (Unwritable, READONLY, OOM, STALELAYOUT), a short WAIT or a routing error raises for the whole
        batch, even when another server's part was written: every message of the tick is handed back,
        and the redelivered copies of orders already written are found counted (dedupe), so the rule
        stays simple and exact.
        """
        results: list[bool | Exception] = []
        calls: list[Call] = []
        for order in orders:
            try:
                calls.append(self._order_call(*order))
            except ValueError as exc:  # this order alone: never sent
                results.append(exc)
            else:
                results.append(True)  # replaced by its reply below
        replies = iter(self._write_per_node(calls))
        return [
            result if isinstance(result, Exception) else _outcome(order[0], next(replies))
            for order, result in zip(orders, results, strict=True)
        ]

    def _write_per_node(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's reply, in order: one pipeline per server that owns any of the calls' shards."""
        groups: dict[int, tuple[redis.Redis, list[int]]] = {}
        for index, (keys, _) in enumerate(calls):
            node = node_for(self._client, keys[0])
            groups.setdefault(id(node), (node, []))[1].append(index)
        replies: list[Any] = [None] * len(calls)
        for node, indexes in groups.values():
            with self._recovering(node):
                answered = self._pipeline_once_loaded(node, [calls[i] for i in indexes])
            for index, reply in zip(indexes, answered, strict=True):
                replies[index] = reply
        return replies

    def _order_call(self, order_id: str, product: str, price_cents: int) -> Call:
        """The keys and arguments of aggregate.lua for one order (its shard's keys); ValueError for a
        price out of range."""
        if isinstance(price_cents, bool) or not isinstance(price_cents, int):
            raise ValueError(f"price_cents must be an int, got {price_cents!r}")
        if abs(price_cents) > MAX_ABS_CENTS:
            raise ValueError(f"price_cents out of the 64-bit range: {price_cents}")
        shard = self._shards.of_order(order_id)
        keys = [shard.seen(order_id), shard.totals, shard.latest, shard.product_counts, shard.product_sums,
                shard.counters, shard.recent, shard.dead(order_id), shard.stamp]  # fmt: skip
        entry = recent_entry(order_id, product, cents_to_money(price_cents), "succeeded")
        args: list[str | int] = [str(price_cents), product, self._ttl, WINDOW, entry, RECENT_SIZE,
                                 self._max_products, OTHER_PRODUCT, self._shards.shards]  # fmt: skip
        return keys, args

    def _pipeline_once_loaded(
        self, node: redis.Redis, calls: Sequence[Call], script: Script | None = None
    ) -> list[Any]:
        """One server's part of the batch, its scripts (+ WAIT) in one pipeline; once more after loading
        the script (a new or restarted Redis answers NOSCRIPT to every EVALSHA of the batch). Per-order
        errors come back as replies; a refusal, a stale layout or a short WAIT raises. ``script``:
        aggregate.lua unless said (claim.lua)."""
        script = script or self._record
        for _ in range(2):
            pipe = node.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            if self._replicas:
                pipe.wait(self._replicas, self._wait_ms)
            replies = pipe.execute(raise_on_error=False)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                node.script_load(script.script)
                continue
            rerouted = [r for r in replies if isinstance(r, ROUTING_ERRORS)]
            if rerouted:  # MOVED, ASK, CLUSTERDOWN: the whole batch, after forgetting the routes
                raise rerouted[0]
            refused = [r for r in replies if isinstance(r, redis.ResponseError) and _refuses(r)]
            if refused:  # the whole batch: READONLY, OOM, NOREPLICAS, MASTERDOWN, STALELAYOUT
                raise _classified(refused[0])
            if self._replicas:
                wait_for_replicas(replies, self._replicas)
                replies = replies[:-1]
            return list(replies)
        raise redis.exceptions.NoScriptError(f"script {script.sha} not found after loading it")

    def claim_dead_letter(self, order_id: str, error_class: str, error_message: str) -> Claim:
        """Claim the order for the DLQ unless it was counted (worker/claim.lua).

        With ``replicas`` set, returns only once the claim (or what it found) is on them: a letter
        published on a claim the failover lost would let a redelivered copy count the order too.
        Raises ReplicasBehind (the order is handed back and nothing published) and redis errors.
        """
        shard = self._shards.of_order(order_id)
        keys = [shard.seen(order_id), shard.dead(order_id), shard.stamp]
        args: list[str | int] = [self._ttl, error_class, error_message[:2000], self._shards.shards]
        state, cls, message = self._run(self._claim, keys, args)
        return Claim(_text(state), _text(cls), _text(message))

    def mark_dead_lettered(self, order_id: str) -> None:
        """The DLQ acknowledged the order's letter: a later copy of its message must not send another.

        A mark the replicas miss costs at most a second letter of the same order (never a count), so a
        short WAIT here is logged, not raised: the letter is out, and the order must not be tried again.
        """
        claim = self._shards.of_order(order_id).dead(order_id)
        pipe = node_for(self._client, claim).pipeline(transaction=False)
        pipe.hset(claim, "state", "published")
        pipe.expire(claim, self._ttl)  # had the claim expired, HSET would keep it forever
        if self._replicas:
            pipe.wait(self._replicas, self._wait_ms)
        replies = pipe.execute()
        try:
            if self._replicas:
                wait_for_replicas(replies, self._replicas)
        except ReplicasBehind as exc:
            log.warning("order %s: its published mark is not on the replicas yet (%s)", order_id, exc)

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run one of the order's scripts on the server owning its shard, then (with ``replicas``) WAIT
        there, in one round trip.

        Raises Unwritable (NOREPLICAS, MASTERDOWN) or ReplicasBehind after dropping that server's
        connections, so the next attempt asks the Sentinels where the primary is (a primary cut off from
        its replicas answers so on every command and never drops a connection itself); StaleLayout;
        routing errors after forgetting the routes.
        """
        node = node_for(self._client, keys[0])
        with self._recovering(node):
            try:
                if not self._replicas:
                    return script(keys=keys, args=args, client=node)
                (reply,) = self._pipeline_once_loaded(node, [(list(keys), list(args))], script)
            except redis.ResponseError as exc:  # NOREPLICAS, MASTERDOWN, STALELAYOUT by name
                classified = _classified(exc)
                if classified is exc:
                    raise
                raise classified from exc
        if isinstance(reply, Exception):
            raise reply
        return reply

    @contextlib.contextmanager
    def _recovering(self, node: redis.Redis) -> Iterator[None]:
        """What a failed write leaves for the next attempt: a server that would not write (Unwritable, a
        short WAIT) loses its connections, so the next one asks the Sentinels where the primary is; a
        routing error (MOVED, ASK, CLUSTERDOWN, a lost node) makes the Cluster's slot map be read again."""
        try:
            with rerouted(self._client):
                yield
        except (ReplicasBehind, Unwritable):
            reconnect(node)
            raise

    def note_status(
        self,
        order_id: str,
        product: str,
        price: Decimal,
        status: Status,
        detail: str = "",
        counts: Event | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Add a retry or dead letter to the recent-activity list (successes are added by the script).

        ``counts`` also adds one to that pipeline counter in the same round trip: a retry's hook
        pays one round trip instead of two. Both go to the order's shard (readers add the shards).
        """
        shard = self._shards.of_order(order_id)
        pipe = node_for(self._client, shard.recent).pipeline(transaction=False)
        pipe.lpush(shard.recent, recent_entry(order_id, product, price, status, detail, trace_id))
        pipe.ltrim(shard.recent, 0, RECENT_SIZE - 1)
        if counts is not None:
            pipe.hincrby(shard.counters, checked_event(counts), 1)
        pipe.execute()


def _refuses(exc: redis.ResponseError) -> bool:
    """The server will not write this batch now: refuses_writes, or a shard stamped for another layout."""
    return refuses_writes(exc) or isinstance(as_stale_layout(exc), StaleLayout)


def _classified(exc: redis.ResponseError) -> redis.ResponseError:
    """Unwritable or StaleLayout where the reply says so, else ``exc`` itself."""
    unwritable = as_unwritable(exc)
    return unwritable if unwritable is not exc else as_stale_layout(exc)


def _counted(order_id: str, outcome: int) -> bool:
    """aggregate.lua's answer: 1 counted, 0 a duplicate, -1 claimed for the DLQ (raised)."""
    if outcome < 0:
        raise ClaimedForDeadLetter(f"order {order_id} was claimed for the dead-letter queue")
    return outcome == 1


def _outcome(order_id: str, reply: Any) -> bool | Exception:
    """One order's reply in a batch: counted, a duplicate, or the exception that order met."""
    if isinstance(reply, Exception):
        return reply
    try:
        return _counted(order_id, int(reply))
    except ClaimedForDeadLetter as exc:
        return exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
