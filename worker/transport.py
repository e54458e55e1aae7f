"""kombu's Redis transport, minus one redis client object built per publish, fetch and ack, and
minus the window in which a SIGKILLed worker loses the message it was fetching.

Part of the fast path: worker/fast_path.py lists every kombu internal this module relies on (K1-K13)
and the contract test of each; docs/benchmarks.md has what it measured.

The stock channel's ``conn_or_acquire`` makes a new ``redis.Redis`` around the channel's pool for
every operation. A client object only borrows connections from its pool per command, so one per
channel does the same work. It is rebuilt when the channel replaces its pool (after a connection
error), so recovery behaves as before.

kombu fetches with BRPOP, then records the message as unacknowledged with a second command: a
worker killed between the two loses it (celery/kombu#305). Here a message is taken off the queue and
recorded as unacknowledged by one Lua script (fetch.lua); the worker still blocks in Redis while the
queue is empty, with a ``BLMOVE q q RIGHT RIGHT`` that waits for a message without taking it. That
needs one list per queue, so priority steps are off (``celery_config`` sets ``priority_steps`` to
``[0]``); with several queues or a key prefix the stock BRPOP path is used.

Round trips are most of a worker's cost on Redis, so the fetch does more per trip: it takes up to
the prefetch budget in one go (``FETCH_BATCH`` at most), kombu's own unacked bookkeeping is not
written a second time for messages the script recorded, and an ack made in the worker's event loop
rides along with the fetch that loop tick sends. An ack no fetch took by the end of the tick
(prefetch full, a blocking wait in flight) is sent on its own then, and pending acks are sent before
the channel closes. If a worker dies with an ack unsent, that message comes back after the
visibility timeout and runs again, which the aggregate's dedupe absorbs: the same at-least-once
contract as kombu's own ack.

A worker renews the delivery time of every message it holds (``LEASE_RENEW_SECONDS``), so no
message passes the visibility timeout while a live worker holds it (a retry waiting out its
countdown, prefetched messages behind a slow task) and the timeout can be short: it only decides how
soon a dead worker's messages come back. Messages of no-ack consumers (control replies) are not
recorded as unacknowledged at all, as kombu does not record them.

Selected with Celery's ``broker_transport`` setting ("worker.transport:Transport"), the way kombu
resolves any transport class by path; ``ORDERS_STOCK_CELERY=true`` goes back to kombu's own.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic, sleep, time
from typing import Any, Literal

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from orders.core.celery_config import FAST_TRANSPORT, LEASE_RENEW_SECONDS
from orders.core.redis_client import refuses_writes
from worker import group_commit
from worker.acks import QoS
from worker.publish_wait import wait_for_replicas_in

log = logging.getLogger(__name__)

TRANSPORT_PATH = FAST_TRANSPORT
FETCH_SCRIPT = Path(__file__).with_name("fetch.lua").read_text(encoding="utf-8")
Empty = kombu_redis.Empty
FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode()).hexdigest()
# Most messages one fetch takes; the prefetch budget (prefetch multiplier x concurrency) limits it too.
FETCH_BATCH = 16
COMMANDS = {"take": "EVALSHA", "wait": "BLMOVE"}
# After Redis answered that it will not write now (a replica after a failover, maxmemory with noeviction,
# NOREPLICAS, MASTERDOWN: orders/core/redis_client.py's refuses_writes), the next fetch waits this long.
UNWRITABLE_PAUSE = 0.5


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS
    _reused_client: Any = None
    _reused_for_pool: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
        else:
            yield self._sync_client()

    def _sync_client(self) -> Any:
        if self._pool is None and getattr(self.connection, "client", None) is None:
            # Closing after the broker connection was lost: kombu's close restores unacked messages
            # through a new pool built from a connection that is gone, and the AttributeError that
            # follows is no connection error, so it stopped the worker. Say what it is instead; the
            # messages stay unacknowledged in Redis and come back after the visibility timeout.
            raise redis.ConnectionError("the channel's broker connection is closed")
        pool = self.pool
        if self._reused_client is None or self._reused_for_pool is not pool:
            self._reused_client, self._reused_for_pool = self._create_client(), pool
        return self._reused_client

    # -- fetching: take and record as unacknowledged atomically ----------------------------------

    _fetch: Literal["take", "wait"] | None = None  # the command in flight, None for kombu's BRPOP
    _take_next = True
    _script_loaded = False  # EVALSHA once Redis has seen the script (EVAL loads it)
    _fetched_by_script = False  # True while delivering messages fetch.lua took

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Delivery tags acknowledged in memory, for the next fetch to remove from Redis.
        self._pending_acks: list[str] = []
        self._acks_in_flight: list[str] = []  # sent with the fetch whose reply is awaited
        self._handed_back: set[str] = set()  # by the group commit: their acks, when made, are dropped
        self._no_ack_queues: set[str] = set()  # kombu records no unacked entry for these: neither do we
        self._renewed_at = monotonic()
        super().__init__(*args, **kwargs)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _brpop_start(self, timeout: float | None = None) -> None:  # K5: how kombu's poller fetches
        key = self._single_key()
        if key is None:
            self._send_pending_acks()
            self._fetch = None
            return super()._brpop_start(timeout)  # type: ignore[no-any-return]
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        if self._take_next:
            self._fetch = "take"
            self._acks_in_flight, self._pending_acks = self._pending_acks, []
            script = ("EVALSHA", FETCH_SHA) if self._script_loaded else ("EVAL", FETCH_SCRIPT)
            keys = (key, self.unacked_key, self.unacked_index_key)
            record = "0" if key in self._no_ack_queues else "1"
            connection.send_command(*script, 3, *keys, self._take_count(), record, *self._acks_in_flight)
        else:
            self._fetch = "wait"
            wait = self.brpop_timeout if timeout is None else timeout
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", wait or 0)
        return None

    def _single_key(self) -> str | None:
        """The one Redis list to fetch from, or None where kombu's BRPOP must serve."""
        if self.global_keyprefix or len(self.active_queues) != 1 or list(self.priority_steps) != [0]:
            return None
        [queue] = self.active_queues
        return str(self._q_for_pri(queue, 0))

    def _take_count(self) -> int:
        budget = self.qos.can_consume_max_estimate()
        return FETCH_BATCH if budget is None else max(1, min(FETCH_BATCH, budget))

    def _brpop_read(self, **options: Any) -> bool:
        fetch, self._fetch = self._fetch, None
        if fetch is None:
            return bool(super()._brpop_read(**options))
        try:
            reply = self._read_fetch_reply(fetch, **options)
            # Messages seen waiting are taken next round; after a take, try to take more.
            self._take_next = bool(reply)
            if fetch == "wait" or not reply:
                raise Empty()
            queue, *items = reply
            self._deliver_fetched(bytes_to_str(queue), items)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _read_fetch_reply(self, fetch: Literal["take", "wait"], **options: Any) -> Any:
        try:
            reply = self.client.parse_response(self.client.connection, COMMANDS[fetch], **options)
        except self.connection_errors:
            self._retry_acks_in_flight(fetch)
            self.client.connection.disconnect()  # the next round reconnects
            raise
        except redis.exceptions.NoScriptError as exc:
            # Redis restarted (or its script cache was flushed): load the script again with EVAL.
            self._script_loaded, self._take_next = False, True
            self._retry_acks_in_flight(fetch)
            raise Empty() from exc
        except redis.ResponseError as exc:
            if not refuses_writes(exc):
                raise
            # The script ran nothing: try again with the same acks.
            self._retry_acks_in_flight(fetch)
            self._refused(exc)
        if fetch == "take":
            self._script_loaded, self._acks_in_flight = True, []
        return reply

    def _refused(self, exc: redis.ResponseError) -> None:
        """The broker answered but will not write (a replica, full, short of replicas): wait a little
        rather than spin, and fetch again (raises Empty). A Sentinel channel looks for the primary anew."""
        log.warning("broker Redis refuses writes (%s); fetching again in %.1fs", exc, UNWRITABLE_PAUSE)
        sleep(UNWRITABLE_PAUSE)
        raise Empty() from exc

    def create_publish_batch(self, max_size: int) -> Any:
        """kombu's batched publish (the bridge's hand-off), which waits for replicas when the bridge asks
        (``publish_wait_replicas``): worker/publish_wait.py."""
        return wait_for_replicas_in(super().create_publish_batch(max_size), self)

    def _retry_acks_in_flight(self, fetch: str) -> None:
        """A fetch whose reply never came may not have run: its acks go out again (HDEL is idempotent)."""
        if fetch == "take" and self._acks_in_flight:
            self._pending_acks[:0] = self._acks_in_flight
            self._acks_in_flight = []

    def _deliver_fetched(self, queue: str, items: list[bytes]) -> None:
        self._queue_cycle.rotate(queue)
        self._fetched_by_script = True
        # On a solo worker with group commit each task runs inside _deliver, its ack deferred to the
        # loop's next turn (C8): the tick's writes are flushed below, before (worker/group_commit.py).
        tick = group_commit.open_tick()
        try:
            for item in items:
                message = loads(bytes_to_str(item))
                if tick is not None:
                    tick.deliver(message)
                self.connection._deliver(message, queue)
        finally:
            self._fetched_by_script = False
            if tick is not None:
                group_commit.close_tick(tick)
                self._settle(tick)

    def _settle(self, tick: group_commit.Tick) -> None:
        """Flush the tick's writes before the loop turns and Celery's deferred acks go (C8); hand back
        what the flush could not settle, and drop the acks Celery will still make for those."""
        for tag in tick.commit():
            self._handed_back.add(tag)
            if tag in self._pending_acks:  # should Celery ever ack during the delivery
                self._pending_acks.remove(tag)
            self.qos.hand_back(tag)
        tick.settled()

    def _send_pending_acks(self) -> None:
        """Remove acknowledged messages from kombu's unacked hash and index, in one round trip.

        If Redis does not answer, the acks stay pending for the next tick (HDEL and ZREM are
        idempotent): dropped, the orders would come back after the visibility timeout and run again.
        """
        tags, self._pending_acks = self._pending_acks, []
        if not tags:
            return
        try:
            with self.conn_or_acquire() as client, client.pipeline() as pipe:
                pipe.hdel(self.unacked_key, *tags)
                pipe.zrem(self.unacked_index_key, *tags)
                pipe.execute()
        except BaseException:
            self._pending_acks[:0] = tags
            raise

    def _renew_leases(self) -> None:
        """Keep every message this worker holds visible to it alone, every ``LEASE_RENEW_SECONDS``.

        kombu hands a message to another worker once it has sat unacknowledged for the visibility
        timeout; a retry waiting out its countdown, or prefetched messages queued behind slow tasks,
        would be run twice. Renewing their delivery time while the worker lives lets the timeout be
        short (a dead worker's orders come back soon) without a live worker's ever expiring.
        """
        now = monotonic()
        if now - self._renewed_at < LEASE_RENEW_SECONDS:
            return
        self._renewed_at = now
        held = [tag for tag in self.qos._delivered if tag not in self.qos._dirty]  # K2
        if held:
            with self.conn_or_acquire() as client:
                client.zadd(self.unacked_index_key, dict.fromkeys(held, time()), xx=True)

    def close(self) -> None:
        unsent = len(self._pending_acks)
        try:
            self._send_pending_acks()
        except self.connection_errors as exc:
            # They come back after the visibility timeout and run again; the aggregate dedupes.
            log.warning("could not send %d acks before closing (%s)", unsent, exc)
        super().close()


class MultiChannelPoller(kombu_redis.MultiChannelPoller):  # type: ignore[misc]
    """kombu's poller, which also makes sure no ack outlives the event-loop tick it was made in."""

    in_event_loop = False  # acks are deferred only where a tick follows (a worker's event loop)

    def on_poll_init(self, poller: Any) -> Any:
        self.in_event_loop = True
        return super().on_poll_init(poller)

    def on_poll_start(self) -> None:
        super().on_poll_start()  # the fetches it sends carry the acks made since the last tick
        for channel in self._channels:
            try:
                channel._send_pending_acks()  # the acks no fetch took (prefetch full, a wait in flight)
                channel._renew_leases()
            except redis.ResponseError as exc:  # kept for the next tick (acks) or interval (leases)
                if not refuses_writes(exc):
                    raise
                log.warning("broker Redis refuses writes (%s); acks and leases wait", exc)


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = MultiChannelPoller()  # type: ignore[assignment]  # as kombu's own __init__ does (K10)
