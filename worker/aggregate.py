"""The workers' writes to the running average: one atomic Lua script per order, dead-letter claims,
and the retry/DLQ notes of the activity list.

Durability: with ``replicas`` set (REDIS_WAIT_REPLICAS, orders/core/replication.py), the order's script
and a ``WAIT replicas timeout`` go in one pipeline on one connection (one round trip: WAIT covers only
its own connection's writes). Fewer replicas than asked acknowledged in time is :class:`ReplicasBehind`:
the task hands its order back, and the redelivered copy finds it counted, refreshes the marker and
waits again. Every write of the order goes through :meth:`AggregateWriter._run` (the seam where a
Redis Cluster would pick the node that owns the order's keys and send the WAIT there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import redis
from redis.commands.core import Script

from orders.core.aggregate import (
    COUNTERS_KEY,
    LATEST_KEY,
    MAX_ABS_CENTS,
    OTHER_PRODUCT,
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
    dead_key,
    recent_entry,
    seen_key,
)
from orders.core.redis_client import (
    AnyRedis,
    ReplicasBehind,
    Unwritable,
    as_unwritable,
    reconnect,
    refuses_writes,
    wait_for_replicas,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SCRIPT: Final = (HERE / "aggregate.lua").read_text(encoding="utf-8")
CLAIM_SCRIPT: Final = (HERE / "claim.lua").read_text(encoding="utf-8")
DEFAULT_MAX_PRODUCTS: Final = 1000
# One order's write as a batch carries it: orderId, product, price in cents.
OrderWrite = tuple[str, str, int]


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
    ) -> None:
        if dedupe_ttl_seconds < 1:
            raise ValueError(f"dedupe_ttl_seconds must be at least 1, got {dedupe_ttl_seconds}")
        super().__init__(client)
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
        """Count a batch of orders in one round trip: every script, then (with ``replicas``) one WAIT
        that covers them all (the group commit of worker/group_commit.py).

        One result per order, in order: counted (True), a duplicate (False), or the exception that order
        alone met (ClaimedForDeadLetter, a script error such as an overflow). A refusal of the batch
        (Unwritable, READONLY, OOM) or a short WAIT raises, as :meth:`_run` says; so do lost connections.
        """
        results: list[bool | Exception] = []
        calls = []
        for order in orders:
            try:
                calls.append(self._order_call(*order))
            except ValueError as exc:  # this order alone: never sent
                results.append(exc)
            else:
                results.append(True)  # replaced by its reply below
        try:
            replies = iter(self._pipeline_once_loaded(calls) if calls else [])
        except (ReplicasBehind, Unwritable):
            reconnect(self._client)
            raise
        return [
            result if isinstance(result, Exception) else _outcome(order[0], next(replies))
            for order, result in zip(orders, results, strict=True)
        ]

    def _order_call(self, order_id: str, product: str, price_cents: int) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of aggregate.lua for one order; ValueError for a price out of range."""
        if isinstance(price_cents, bool) or not isinstance(price_cents, int):
            raise ValueError(f"price_cents must be an int, got {price_cents!r}")
        if abs(price_cents) > MAX_ABS_CENTS:
            raise ValueError(f"price_cents out of the 64-bit range: {price_cents}")
        keys = [seen_key(order_id), TOTALS_KEY, LATEST_KEY, PRODUCT_COUNTS_KEY, PRODUCT_SUMS_KEY,
                COUNTERS_KEY, RECENT_KEY, dead_key(order_id)]  # fmt: skip
        entry = recent_entry(order_id, product, cents_to_money(price_cents), "succeeded")
        args: list[str | int] = [str(price_cents), product, self._ttl, WINDOW, entry, RECENT_SIZE,
                                 self._max_products, OTHER_PRODUCT]  # fmt: skip
        return keys, args

    def _pipeline_once_loaded(self, calls: Sequence[tuple[list[str], list[str | int]]]) -> list[Any]:
        """The batch's scripts (+ WAIT) in one pipeline; once more after loading the script (a new or
        restarted Redis answers NOSCRIPT to every EVALSHA of the batch). Per-order errors come back as
        replies; a refusal or a short WAIT raises."""
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(self._record.sha, len(keys), *keys, *args)
            if self._replicas:
                pipe.wait(self._replicas, self._wait_ms)
            replies = pipe.execute(raise_on_error=False)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                self._client.script_load(self._record.script)
                continue
            refused = [r for r in replies if isinstance(r, redis.ResponseError) and refuses_writes(r)]
            if refused:  # the whole batch: READONLY, OOM, NOREPLICAS, MASTERDOWN
                raise as_unwritable(refused[0])
            if self._replicas:
                wait_for_replicas(replies, self._replicas)
                replies = replies[:-1]
            return list(replies)
        raise redis.exceptions.NoScriptError(f"script {self._record.sha} not found after loading it")

    def claim_dead_letter(self, order_id: str, error_class: str, error_message: str) -> Claim:
        """Claim the order for the DLQ unless it was counted (worker/claim.lua).

        With ``replicas`` set, returns only once the claim (or what it found) is on them: a letter
        published on a claim the failover lost would let a redelivered copy count the order too.
        Raises ReplicasBehind (the order is handed back and nothing published) and redis errors.
        """
        keys = [seen_key(order_id), dead_key(order_id)]
        args: list[str | int] = [self._ttl, error_class, error_message[:2000]]
        state, cls, message = self._run(self._claim, keys, args)
        return Claim(_text(state), _text(cls), _text(message))

    def mark_dead_lettered(self, order_id: str) -> None:
        """The DLQ acknowledged the order's letter: a later copy of its message must not send another.

        A mark the replicas miss costs at most a second letter of the same order (never a count), so a
        short WAIT here is logged, not raised: the letter is out, and the order must not be tried again.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(dead_key(order_id), "state", "published")
        pipe.expire(dead_key(order_id), self._ttl)  # had the claim expired, HSET would keep it forever
        if self._replicas:
            pipe.wait(self._replicas, self._wait_ms)
        replies = pipe.execute()
        try:
            if self._replicas:
                wait_for_replicas(replies, self._replicas)
        except ReplicasBehind as exc:
            log.warning("order %s: its published mark is not on the replicas yet (%s)", order_id, exc)

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run one of the order's scripts, then (with ``replicas``) WAIT, in one round trip.

        Raises Unwritable (NOREPLICAS, MASTERDOWN) or ReplicasBehind after dropping the client's
        connections, so the next attempt asks the Sentinels where the primary is (a primary cut off from
        its replicas answers so on every command and never drops a connection itself).
        """
        try:
            if not self._replicas:
                return script(keys=keys, args=args)
            return self._run_and_wait(script, keys, args)
        except (ReplicasBehind, Unwritable):
            reconnect(self._client)
            raise
        except redis.ResponseError as exc:
            unwritable = as_unwritable(exc)
            if unwritable is exc:
                raise
            reconnect(self._client)
            raise unwritable from exc

    def _run_and_wait(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        for _ in range(2):  # a second time only after loading the script (a new or restarted primary)
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(self._replicas, self._wait_ms)
            replies = pipe.execute(raise_on_error=False)
            reply = replies[0]
            if isinstance(reply, redis.exceptions.NoScriptError):
                self._client.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            wait_for_replicas(replies, self._replicas)
            return reply
        raise redis.exceptions.NoScriptError(f"script {script.sha} not found after loading it")

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
        pays one round trip instead of two.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.lpush(RECENT_KEY, recent_entry(order_id, product, price, status, detail, trace_id))
        pipe.ltrim(RECENT_KEY, 0, RECENT_SIZE - 1)
        if counts is not None:
            pipe.hincrby(COUNTERS_KEY, checked_event(counts), 1)
        pipe.execute()


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
