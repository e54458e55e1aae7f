"""Watching a consumer group's committed offsets from outside: a commit that moves one back is a member
committing what it no longer owns (a zombie), or what it read before someone else moved on."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition


class OffsetWatch:
    """Samples the group's committed offsets every ``interval`` s in a thread, until :meth:`stop`."""

    def __init__(
        self, bootstrap: str, topic: str, group: str, partitions: int, interval: float = 0.25
    ) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "client.id": f"offset-watch-{uuid.uuid4().hex[:6]}", "log_level": 0,
        })  # fmt: skip  # reads the group's offsets without joining it
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._interval = interval
        self._stop = threading.Event()
        self.last: dict[int, int] = {}
        self.backwards: list[str] = []  # "partition: from -> to"
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="offset-watch", daemon=True)

    def start(self) -> OffsetWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                committed = self._consumer.committed(self._partitions, timeout=5)
            except KafkaException:
                continue  # the coordinator moving: the next sample sees where it went
            self.samples += 1
            for tp in committed:
                if tp.offset < 0:
                    continue
                before = self.last.get(tp.partition, -1)
                if tp.offset < before:
                    self.backwards.append(f"[{tp.partition}]: {before} -> {tp.offset}")
                self.last[tp.partition] = max(before, tp.offset)
