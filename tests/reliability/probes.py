"""Observing a running pipeline: progress and recovery time, resident memory, consumer lag."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from confluent_kafka import Consumer, TopicPartition

from orders.core.aggregate import Aggregate, seen_key
from orders.core.shards import read_layout
from orders.stack.supervisor import wait_for

# A worker's lines for orders handed back to the queue: one task's (worker/tasks.py, hooks.py), or a
# refused group commit's, which hands back its whole batch at once (worker/group_commit.py).
HANDED_BACK = re.compile(r"handing it back|group commit of (\d+) orders refused")


def handed_back(log: str) -> int:
    """Orders a worker's log says it handed back: one per task's line, a batch's size per refused flush."""
    return sum(int(match.group(1) or 1) for match in HANDED_BACK.finditer(log))


def settled(aggregate: Aggregate) -> int:
    """Orders the workers finished with: counted, or dead-lettered (the dlq counter)."""
    snap = aggregate.snapshot()
    return snap.count + snap.counters["dlq"]


def consumed(aggregate: Aggregate) -> int:
    """Records the bridges read and handed on (they add to this counter after each batch)."""
    return aggregate.snapshot().counters["consumed"]


@dataclass
class Recovery:
    """Times from each disruption until the pipeline moved again."""

    seconds: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def measure(
        self,
        what: str,
        disrupted_at: float,
        metric: Callable[[], int],
        timeout: float,
        done: Callable[[], bool],
        margin: int = 0,
    ) -> float:
        """Call once the disrupted service is back: waits for ``metric`` to pass its current value
        (by more than ``margin``: work already in hand when the fault struck is not "moving again").

        ``done`` ends the wait early when no work is left (nothing could move any more).
        """
        baseline = metric() + margin
        wait_for(lambda: metric() > baseline or done(), timeout, f"progress after {what}", interval=0.1)
        elapsed = time.monotonic() - disrupted_at
        self.seconds.append(elapsed)
        self.events.append(f"{what}: {elapsed:.1f}s")
        return elapsed

    @property
    def worst(self) -> float | None:
        return max(self.seconds) if self.seconds else None


def counted_latencies(client: redis.Redis, produced_at_ms: dict[str, int], dedupe_ttl: int) -> list[float]:
    """Seconds from each order's Kafka timestamp to the moment it was counted, for the orders counted.

    When it was counted comes from its dedupe marker, which the counting script sets with an expiry of
    ``dedupe_ttl`` seconds in the same step (Redis keeps expiries to the millisecond): independent of
    the workers' own figures.
    """
    ids = list(produced_at_ms)
    layout = read_layout(client)
    pipe = client.pipeline(transaction=False)
    for order_id in ids:
        pipe.pttl(seen_key(order_id, layout))
    now_ms = time.time() * 1000
    latencies = []
    for order_id, remaining in zip(ids, pipe.execute(), strict=True):
        if remaining > 0:
            counted_ms = now_ms + remaining - dedupe_ttl * 1000
            latencies.append((counted_ms - produced_at_ms[order_id]) / 1000)
    return latencies


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def consumer_lag(bootstrap: str, topic: str, group: str) -> int:
    """Records on ``topic`` the group has not committed yet (end offset - committed offset, summed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )  # reads the group's offsets without joining it
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += end - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()
