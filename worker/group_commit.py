"""Group commit on the solo pool: the aggregate writes of the tasks one fetch delivered go to Redis in one
pipeline at the end of that tick, before any of the tick's acks can reach Redis.

A solo worker runs each task inside the transport's delivery of its message (worker/transport.py,
``Channel._deliver_fetched``), and Celery defers each late ack to the event loop's next turn
(``call_soon``), which then sends it with the next fetch (contract C8). So a tick is one fetch's
messages, at most the prefetch budget (``worker_prefetch_multiplier`` x concurrency); during it a
task's write joins the batch (:func:`join`) instead of making its own round trip, and at its end, still
inside the delivery, :meth:`Tick.commit` sends the batch. Only after it answered does the loop turn, run
the deferred acks and send them. A message the flush hands back is restored to its queue first, and its
ack, when Celery makes it, is dropped (worker/acks.py).

Round trips per tick: one fetch (fetch.lua, which also carries the previous tick's acks) and one flush
(every order's aggregate.lua, then ``WAIT`` when REDIS_WAIT_REPLICAS is set, on the same connection, so
it covers them all): 2 for up to a prefetch budget of orders, where per-task writes take 1 + one per
order. With a sharded aggregate on several servers (a Redis Cluster) the flush is one pipeline per server
its orders' shards live on, each with its own WAIT (worker/aggregate.py): 1 + one per server touched.
The aggregate on another Redis than the broker changes nothing (one trip to each); a handed-back
message costs one more (its restore), a NOSCRIPT one more (the script loaded, the batch sent again).

What each window leaves (tests/reliability/test_group_commit.py reaches each with ORDERS_TEST_KILL_AT):
- killed before the flush: nothing written, no ack sent; the messages come back after the visibility
  timeout and are counted then;
- killed after the writes (and the WAIT), or after the flush settled but before the acks were sent: the
  acks never reach Redis; the messages come back and their orders are found counted (the dedupe
  marker is written in the same script as the count), so they are counted once;
- a write refused (READONLY, OOM, NOREPLICAS), a WAIT short of its count or Redis unreachable: the
  batch's messages are handed back (requeued), after a pause;
- an order the flush finds claimed for the DLQ, or whose script failed alone: that message is handed
  back. A redelivered message never joins a batch (:func:`join`): it writes on its own, so the task's
  own error handling (a dead letter, a hand-back) applies to it.

Outcomes (counted or duplicate) and their metrics come from the flush, after Celery has already reported
the task's success (events, Flower, ``task_success``). Nothing here imports Celery or the worker's
runtime: the bridge loads the same transport, and there no tick is ever opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import redis

log = logging.getLogger(__name__)

KillPoint = Literal["before_flush", "after_writes", "after_wait"]
# Seconds before a batch Redis refused is handed back, so a worker does not spin on it (as a task does).
HAND_BACK_PAUSE = 1.0
OrderWrite = tuple[str, str, int]  # orderId, product, price in cents (worker/aggregate.py)


class BatchWriter(Protocol):
    def record_orders(self, orders: Sequence[OrderWrite]) -> list[bool | Exception]: ...


@dataclass(frozen=True)
class Tracing:
    """worker/tracing.py's part: the flush's write under each traced attempt, and each attempt's end."""

    flush_spans: Callable[[list[Any]], AbstractContextManager[None]]
    end_attempt: Callable[[Any, str, BaseException | None], None]


@dataclass(frozen=True)
class Setup:
    """How this worker group-commits: its aggregate, and (tests only) where to SIGKILL itself."""

    writer: Callable[[], BatchWriter]
    kill_at: KillPoint | None = None
    tracing: Tracing | None = None
    observe: Callable[[int, int], None] | None = None  # orders flushed, messages handed back: metrics


@dataclass
class Write:
    """One task's write waiting for the flush, and what to do with its outcome."""

    tag: str  # the delivery tag of the message it belongs to
    order: OrderWrite
    on_done: Callable[[bool], None]  # counted (True) or duplicate: the outcome's metrics
    attempt: Any = None  # the attempt's span, left open for the flush to end (traced only)


@dataclass
class Tick:
    """One fetch's deliveries: the writes that joined, the message being delivered."""

    setup: Setup
    writes: list[Write] = field(default_factory=list)
    delivering: str | None = None
    redelivered: bool = False

    def deliver(self, message: dict[str, Any]) -> None:
        """The transport is about to deliver ``message`` (kombu's Redis message: K3's layout)."""
        properties = message["properties"]
        self.delivering = str(properties["delivery_tag"])
        self.redelivered = bool(properties.get("delivery_info", {}).get("redelivered"))

    def commit(self) -> list[str]:
        """Flush the batch; the delivery tags of the messages to hand back instead of acknowledging."""
        if not self.writes:
            return []
        _kill_if(self.setup, "before_flush")
        try:
            with self._flush_spans():
                results = self.setup.writer().record_orders([w.order for w in self.writes])
        except redis.RedisError as exc:
            log.warning("group commit of %d orders refused (%s); handing them back", len(self.writes), exc)
            self._observe(len(self.writes))
            for write in self.writes:
                self._end_attempt(write, "handed_back", exc)
            time.sleep(HAND_BACK_PAUSE)
            return [w.tag for w in self.writes]
        _kill_if(self.setup, "after_writes")
        hand_back = self._report(results)
        self._observe(len(hand_back))
        return hand_back

    def settled(self) -> None:
        """The channel has handed back what it had to; the tick's acks go from here (next fetch)."""
        _kill_if(self.setup, "after_wait")

    def _observe(self, handed_back: int) -> None:
        if self.setup.observe is not None:
            self.setup.observe(len(self.writes), handed_back)

    def _report(self, results: list[bool | Exception]) -> list[str]:
        """Each order's outcome to its task's metrics; the tags of those to hand back."""
        hand_back = []
        for write, result in zip(self.writes, results, strict=True):
            if isinstance(result, Exception):
                log.warning("order %s not settled by the group commit (%s); handing it back",
                            write.order[0], result)  # fmt: skip
                hand_back.append(write.tag)
                self._end_attempt(write, "handed_back", result)
            else:
                write.on_done(result)
                self._end_attempt(write, "succeeded" if result else "duplicate")
        return hand_back

    def _flush_spans(self) -> AbstractContextManager[None]:
        attempts = [w.attempt for w in self.writes if w.attempt is not None]
        if self.setup.tracing is None or not attempts:
            return contextlib.nullcontext()
        return self.setup.tracing.flush_spans(attempts)

    def _end_attempt(self, write: Write, outcome: str, error: BaseException | None = None) -> None:
        if self.setup.tracing is not None and write.attempt is not None:
            self.setup.tracing.end_attempt(write.attempt, outcome, error)


_SETUP: list[Setup] = []  # set once at worker start (solo pool only)
_OPEN: list[Tick] = []  # the tick being delivered, if any


def enable(setup: Setup) -> None:
    """Group-commit from now on (a solo worker's start: worker/fast_path.py decides)."""
    _SETUP[:] = [setup]


def disable() -> None:
    _SETUP.clear()


def open_tick() -> Tick | None:
    """A new tick, when group commit is on in this process (never in a prefork child or the bridge)."""
    if not _SETUP or _OPEN:
        return None
    tick = Tick(_SETUP[0])
    _OPEN.append(tick)
    return tick


def close_tick(tick: Tick) -> None:
    if tick in _OPEN:
        _OPEN.remove(tick)


def join(
    order: OrderWrite, on_done: Callable[[bool], None], defer_attempt: Callable[[], Any] | None = None
) -> bool:
    """Add the running task's write to the tick's batch; False if it must write now, on its own: no tick
    open (prefork, a retry run from the timer, group commit off) or a redelivered message.
    ``defer_attempt`` (traced workers) leaves the attempt's span open for the flush to end."""
    if not _OPEN:
        return False
    tick = _OPEN[0]
    if tick.delivering is None or tick.redelivered:
        return False
    attempt = defer_attempt() if defer_attempt is not None else None
    tick.writes.append(Write(tick.delivering, order, on_done, attempt))
    return True


def _kill_if(setup: Setup, point: KillPoint) -> None:
    """The reliability tests' window hook: ORDERS_TEST_KILL_AT (never set in production) kills here."""
    if setup.kill_at == point:
        log.warning("ORDERS_TEST_KILL_AT=%s: SIGKILL", point)
        os.kill(os.getpid(), signal.SIGKILL)
