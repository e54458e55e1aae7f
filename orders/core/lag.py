"""The bridge group's consumer lag as the tools read it: committed offsets against high watermarks.

The dashboard, `orders top` and `orders stats` read it this way, without joining the group. (The
bridge exports librdkafka's own per-partition figure as ``orders_bridge_consumer_lag``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaException, TopicPartition

from orders.core.kafka import create_consumer
from orders.core.settings import Settings

KAFKA_TIMEOUT: Final = 1.0


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    high: int
    committed: int | None
    lag: int


def partition_lags(
    high: Mapping[int, int], low: Mapping[int, int], committed: Mapping[int, int]
) -> list[PartitionLag]:
    """Lag per partition: high watermark minus the group's committed offset, by partition number.

    A partition the group never committed (librdkafka reports a negative offset) lags by everything
    still retained (high - low). Some brokers (Tansu) report a multi-record batch's base offset + 1
    as the high watermark, below what the group already committed; the watermark is taken to be at
    least the committed offset so the lag is never negative and `produced` never falls behind.
    """
    lags = []
    for partition in sorted(high):
        offset = committed.get(partition, -1)
        start = offset if offset >= 0 else low.get(partition, 0)
        end = max(high[partition], start)
        lags.append(PartitionLag(partition, end, offset if offset >= 0 else None, end - start))
    return lags


def produced_total(lags: Iterable[PartitionLag]) -> int:
    """Records ever written to the topic: the sum of its partitions' high watermarks."""
    return sum(lag.high for lag in lags)


def lag_json(lags: Sequence[PartitionLag] | None) -> dict[str, Any]:
    if lags is None:
        return {"total": None, "partitions": []}
    rows = [{"partition": p.partition, "high": p.high, "committed": p.committed, "lag": p.lag} for p in lags]
    return {"total": sum(p.lag for p in lags), "partitions": rows}


class LagReader:
    """High watermarks of the orders topic and the bridge group's committed offsets."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.orders_topic
        # The bridge's group id, but never subscribed: it reads the group's offsets without joining it.
        self._consumer = create_consumer(settings, settings.consumer_group, **{"enable.auto.commit": False})

    def read(self) -> list[PartitionLag]:
        """Lag per partition; raises KafkaException when the broker does not answer in time."""
        metadata = self._consumer.list_topics(self._topic, timeout=KAFKA_TIMEOUT)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise KafkaException(f"topic {self._topic}: {topic.error if topic else 'not found'}")
        partitions = [TopicPartition(self._topic, p) for p in sorted(topic.partitions)]
        committed = self._consumer.committed(partitions, timeout=KAFKA_TIMEOUT)
        low, high = {}, {}
        for tp in partitions:
            low[tp.partition], high[tp.partition] = self._consumer.get_watermark_offsets(
                tp, timeout=KAFKA_TIMEOUT, cached=False
            )
        return partition_lags(high, low, {tp.partition: tp.offset for tp in committed})

    def close(self) -> None:
        self._consumer.close()
