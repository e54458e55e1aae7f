"""Reading a topic from its beginning to the end it had when the read began, partition by partition."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int  # the producer's create time

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every record below each partition's high watermark (read committed data only: acks=all)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"checker-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "enable.partition.eof": True, "log_level": 0,
    })  # fmt: skip
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=20).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        return _consume(consumer, ends, time.monotonic() + timeout, topic)
    finally:
        consumer.close()


def _consume(consumer: Consumer, ends: dict[int, int], deadline: float, topic: str) -> list[Record]:
    records: list[Record] = []
    positions = dict.fromkeys(ends, 0)
    while any(positions[p] < ends[p] for p in ends):
        if time.monotonic() > deadline:
            raise TimeoutError(f"checker: {topic} not read to its end: at {positions}, end {ends}")
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() is not None:
                continue  # end of a partition, or a transient error the consumer retries
            partition, offset = message.partition() or 0, message.offset() or 0
            positions[partition] = offset + 1
            if offset < ends[partition]:
                headers = tuple((k, v or b"") for k, v in (message.headers() or []))
                stamp = message.timestamp()[1]
                records.append(Record(partition, offset, message.key(), message.value(), headers, stamp))
    return records
