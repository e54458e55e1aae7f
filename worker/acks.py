"""The fast path's acknowledgements (kombu's ack emulation on Redis): what fetch.lua already recorded is not
written again, acks ride with the next fetch, and a broker that refuses a write never stops the worker.

Part of worker/transport.py (its Channel's ``QoS``); worker/fast_path.py lists the kombu internals (K1,
K2, K4, K16).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from orders.core.redis_client import refuses_writes

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's ack emulation, minus the writes fetch.lua already made or the next fetch will make."""

    channel: Any  # worker/transport.py's Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel._fetched_by_script:
            # fetch.lua recorded it in Redis; keep kombu's in-memory bookkeeping only (K1).
            super(kombu_redis.QoS, self).append(message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag in self.channel._handed_back:
            # The group commit put the message back on its queue (hand_back): a copy with this tag may be
            # fetched again, whose record an HDEL now would erase. Forget it in memory only (K1).
            self.channel._handed_back.discard(delivery_tag)
            super(kombu_redis.QoS, self).ack(delivery_tag)
        elif self.channel.connection.cycle.in_event_loop:
            # Sent with the fetch this loop tick issues, or on their own at the end of the tick (K1).
            self.channel._pending_acks.append(delivery_tag)
            super(kombu_redis.QoS, self).ack(delivery_tag)
        else:
            super().ack(delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        self.channel._send_pending_acks()  # acked messages must not be restored with the rest
        super().restore_unacked(client)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """kombu's sweep for expired messages, skipped for a tick while Redis refuses writes.

        Its lock is a SET: on a full (noeviction) or read-only Redis it raised out of the event
        loop and stopped the worker. The next tick sweeps again.
        """
        try:
            super().restore_visible(*args, **kwargs)
        except redis.ResponseError as exc:
            if not refuses_writes(exc):
                raise
            log.warning("broker Redis refuses writes (%s); sweeping for expired messages later", exc)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """kombu's reject, except that one the broker does not take leaves the message where it is.

        A requeue (a task handing its order back) writes to Redis; kombu let a refusal (READONLY after
        the broker failed over, NOREPLICAS, OOM) out of the event loop, and Celery stopped the worker
        ("Unrecoverable error"); a lost connection was only logged. Either way the message is still
        recorded as unacknowledged in Redis: forgotten here (no lease renewal), it comes back after the
        visibility timeout, as a dead worker's would (K4).
        """
        try:
            super().reject(delivery_tag, requeue)  # K16: writes to Redis first, forgets in memory last
        except (*self.channel.connection_errors, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not refuses_writes(exc):
                raise
            log.warning(
                "reject not taken by the broker (%s); message %s stays unacknowledged and comes back "
                "after the visibility timeout", exc, delivery_tag,
            )  # fmt: skip
            super(kombu_redis.QoS, self).ack(delivery_tag)  # K1: forgotten in memory only

    def hand_back(self, delivery_tag: str) -> None:
        """Put a message the group commit could not settle back on its queue (worker/group_commit.py), as a
        requeue does, from its unacknowledged entry in Redis (K4: ``restore_by_tag``; the tag is already
        forgotten in memory). If the broker does not take it now, it stays unacknowledged in Redis and
        comes back after the visibility timeout, as in :meth:`reject`."""
        try:
            self.restore_by_tag(delivery_tag, leftmost=True)
        except (*self.channel.connection_errors, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not refuses_writes(exc):
                raise
            log.warning("message %s not handed back (%s); it returns after the visibility timeout",
                        delivery_tag, exc)  # fmt: skip
