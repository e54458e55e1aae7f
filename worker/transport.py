"""kombu's Redis transport, minus one redis client object built per publish, fetch and ack, and
minus the window in which a SIGKILLed worker loses the message it was fetching.

The stock channel's ``conn_or_acquire`` makes a new ``redis.Redis`` around the channel's pool for
every operation; a worker profile showed ~16% of its time there. A client object only borrows
connections from its pool per command, so one per channel does the same work. It is rebuilt when
the channel replaces its pool (after a connection error), so recovery behaves as before.

kombu fetches with BRPOP, then records the message as unacknowledged with a second command: a
worker killed between the two loses it (celery/kombu#305; the reliability suite's worker-kill
scenario lost about one order in three runs). Here a message is taken off the queue and recorded
as unacknowledged by one Lua script (fetch.lua); the worker still blocks in Redis while the queue is
empty, with a ``BLMOVE q q RIGHT RIGHT`` that waits for a message without taking it. That needs one
list per queue, so priority steps are off (``celery_config`` sets ``priority_steps`` to ``[0]``);
with several queues or a key prefix the stock BRPOP path is used.

Selected with Celery's ``broker_transport`` setting ("worker.transport:Transport"), the way kombu
resolves any transport class by path; ``ORDERS_STOCK_TRANSPORT=1`` goes back to kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic
from typing import Any, Literal

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

TRANSPORT_PATH = "worker.transport:Transport"
FETCH_SCRIPT = Path(__file__).with_name("fetch.lua").read_text(encoding="utf-8")
Empty = kombu_redis.Empty
COMMANDS = {"take": "EVAL", "wait": "BLMOVE"}


class Channel(kombu_redis.Channel):  # type: ignore[misc]
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

    def _brpop_start(self, timeout: float | None = None) -> None:
        key = self._single_key()
        if key is None:
            self._fetch = None
            return super()._brpop_start(timeout)  # type: ignore[no-any-return]
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        if self._take_next:
            self._fetch = "take"
            connection.send_command("EVAL", FETCH_SCRIPT, 3, key, self.unacked_key, self.unacked_index_key)
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

    def _brpop_read(self, **options: Any) -> bool:
        fetch, self._fetch = self._fetch, None
        if fetch is None:
            return bool(super()._brpop_read(**options))
        try:
            try:
                reply = self.client.parse_response(self.client.connection, COMMANDS[fetch], **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next round reconnects
                raise
            # A message seen waiting is taken next round; after a take, try to take another.
            self._take_next = bool(reply)
            if fetch == "wait" or not reply:
                raise Empty()
            queue, item = reply
            dest = bytes_to_str(queue)
            self._queue_cycle.rotate(dest)
            self.connection._deliver(loads(bytes_to_str(item)), dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
