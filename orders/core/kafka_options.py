"""Which librdkafka options a consumer alone takes and which a producer alone takes.

Copied from librdkafka's own property table (the C/P column of its CONFIGURATION.md, printed by
``rd_kafka_conf_properties_show``; global and topic properties, aliases included) for librdkafka 2.16.
``tests/unit/test_kafka_config.py`` reads that table from the librdkafka confluent-kafka loads and fails
when these sets no longer match it. Every other option (``*``) applies to all clients.
"""

from __future__ import annotations

from typing import Final, Literal

CONSUMER_ONLY: Final = frozenset({
    "auto.commit.enable", "auto.commit.interval.ms", "auto.offset.reset", "check.crcs",
    "consume.callback.max.messages", "consume_cb", "coordinator.query.interval.ms", "enable.auto.commit",
    "enable.auto.offset.store", "enable.partition.eof", "fetch.error.backoff.ms", "fetch.max.bytes",
    "fetch.message.max.bytes", "fetch.min.bytes", "fetch.queue.backoff.ms", "fetch.wait.max.ms",
    "group.id", "group.instance.id", "group.protocol", "group.protocol.type", "group.remote.assignor",
    "heartbeat.interval.ms", "isolation.level", "max.partition.fetch.bytes", "max.poll.interval.ms",
    "max.poll.records", "offset.store.method", "offset.store.path", "offset.store.sync.interval.ms",
    "offset_commit_cb", "partition.assignment.strategy", "queued.max.messages.kbytes",
    "queued.min.messages", "rebalance_cb", "session.timeout.ms", "share.acknowledgement.mode",
})  # fmt: skip

PRODUCER_ONLY: Final = frozenset({
    "acks", "batch.num.messages", "batch.size", "compression.codec", "compression.level",
    "compression.type", "delivery.report.only.error", "delivery.timeout.ms", "dr_cb", "dr_msg_cb",
    "enable.gapless.guarantee", "enable.idempotence", "linger.ms", "message.send.max.retries",
    "message.timeout.ms", "msg_order_cmp", "partitioner", "partitioner_cb", "produce.offset.report",
    "queue.buffering.backpressure.threshold", "queue.buffering.max.kbytes", "queue.buffering.max.messages",
    "queue.buffering.max.ms", "queuing.strategy", "request.required.acks", "request.timeout.ms", "retries",
    "sticky.partitioning.linger.ms", "transaction.timeout.ms", "transactional.id",
})  # fmt: skip

Role = Literal["producer", "consumer", "admin"]


def applies_to(option: str, role: Role) -> bool:
    """Whether ``option`` is meant for a client of ``role``.

    An admin client takes neither kind (librdkafka runs it as a producer and would warn about consumer
    options). An option in neither set, a misspelt one included, goes to every client, so librdkafka
    still refuses a name it does not know.
    """
    if option in CONSUMER_ONLY:
        return role == "consumer"
    if option in PRODUCER_ONLY:
        return role == "producer"
    return True


def options_for(options: dict[str, str], role: Role) -> dict[str, str]:
    """The ``KAFKA_*`` options a client of ``role`` takes, without librdkafka's CONFWARN for the rest."""
    return {name: value for name, value in options.items() if applies_to(name, role)}
