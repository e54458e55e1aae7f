"""Notices a consumer that stays out of its group while the cluster is up, from librdkafka's statistics.

After its group session times out (a broker restart longer than session.timeout.ms), librdkafka
revokes the assignment and rejoins on its own. Once in CI the bridge never sent the JoinGroup:
it sat without partitions for minutes while the broker was back and other clients worked. A
consumer in that state looks healthy from the outside (polls return nothing, no error), so the
bridge watches for it and replaces the consumer (bridge/consumer.py).

The signal is librdkafka's own: ``cgrp.join_state`` is "steady" once a member has its assignment
(even an empty one, when there are more bridges than partitions). Anything else for longer than
the limit, while a broker connection is up, is a stall. A legitimate rebalance can keep a member
waiting up to the group's rebalance timeout (the slowest member's max.poll.interval.ms, 300 s by
default), so the default limit is above that; an outage (no broker up) is never a stall, as a new
consumer could not do better.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

STEADY = "steady"


class GroupWatch:
    """Fed librdkafka's statistics JSON; :meth:`stalled` says why the group looks stuck, if it does."""

    def __init__(self, limit_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit_seconds
        self._clock = clock
        self._since: float | None = clock()  # a new consumer is not in its group yet
        self._last: tuple[str, str] = ("init", "init")
        self._cluster_up = False

    def observe(self, stats_json: str) -> None:
        """librdkafka's stats_cb (runs inside poll/consume on the bridge's thread)."""
        stats = json.loads(stats_json)
        group = stats.get("cgrp") or {}
        state, join_state = group.get("state", "?"), group.get("join_state", "?")
        self._last = (state, join_state)
        if join_state == STEADY:
            self._since = None
        elif self._since is None:
            self._since = self._clock()
        # librdkafka's internal pseudo-broker is always listed; any real connection that is up counts.
        brokers = stats.get("brokers", {}).values()
        self._cluster_up = any(b.get("state") == "UP" and b.get("source") != "internal" for b in brokers)

    def stalled(self) -> str | None:
        if self._since is None or not self._cluster_up:
            return None
        waited = self._clock() - self._since
        if waited < self._limit:
            return None
        state, join_state = self._last
        return (
            f"consumer group not rejoined for {waited:.0f}s with a broker up "
            f"(group state {state}, join state {join_state})"
        )
