"""What a reliability run produced, counted, dead-lettered, lost or counted twice, from what can be observed.

Sources: the orders topic read back (orderId -> exact price), the DLQ topic, and Redis (the aggregate
snapshot and the per-order dedupe markers the Lua script sets in the same step as it counts).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from redis.exceptions import RedisClusterException

from orders.core.aggregate import Aggregate, Snapshot, seen_key
from orders.core.codec import OrderCodec
from orders.core.dead_letter import HEADER_EXC_CLASS, HEADER_EXC_MESSAGE, HEADER_STAGE
from orders.core.errors import PermanentError, TransientError
from orders.core.redis_client import connect
from orders.core.shards import read_layout
from tests.harness.kafka_io import headers_of
from worker.faults import FailureInjector

INJECTED_CLASSES = {"orders.core.errors.TransientError", "orders.core.errors.PermanentError"}


DRAIN_SECONDS = 2.0


def read_to_end(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record of ``topic`` up to its current end (high watermarks), in partition order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"audit-{uuid.uuid4().hex[:8]}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = {p for p, end in ends.items() if end > 0}
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error() is not None:
                    continue
                messages.append(message)
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    pending.discard(message.partition() or 0)
        assert not pending, f"{topic}: partitions {sorted(pending)} not read to their end in {timeout}s"
        # Tansu reports a partition's end as its last batch's base offset + 1, so the rest of that
        # batch lies past the "end" (a 12,000-order run once read back short). It was delivered
        # before we got here and comes with the next fetch; bounded, as a scenario may still be
        # producing (its own records, which callers filter out).
        drain_until = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < drain_until and (tail := consumer.consume(5000, timeout=0.5)):
            messages.extend(m for m in tail if m.error() is None)
        return messages
    finally:
        consumer.close()


def decode_orders(messages: Iterable[Message], registry_url: str, topic: str) -> dict[str, Decimal]:
    """orderId -> exact price of produced records (the float32 price rounded to cents, as the bridge does)."""
    codec = OrderCodec(SchemaRegistryClient({"url": registry_url}), topic)
    prices: dict[str, Decimal] = {}
    for message in messages:
        record = codec.decode(message.value())
        prices[record["orderId"]] = Decimal(round(record["price"] * 100)).scaleb(-2)
    return prices


def predicted_dead_letters(order_ids: Iterable[str], injector: FailureInjector, max_retries: int) -> set[str]:
    """The orders the seeded injector fails for good: permanently, or on every attempt."""
    dead = set()
    for order_id in order_ids:
        for attempt in range(max_retries + 1):
            try:
                injector.check(order_id, attempt)
            except PermanentError:
                dead.add(order_id)
                break
            except TransientError:
                if attempt == max_retries:
                    dead.add(order_id)
                continue
            break
    return dead


def aggregate_of(redis_url: str) -> Aggregate:
    return Aggregate(connect(redis_url))


def counted_ids(client: redis.Redis, order_ids: Iterable[str]) -> set[str]:
    """The orders the aggregate counted: each has the dedupe marker the counting script set."""
    ids = list(order_ids)
    layout = read_layout(client)  # each marker lives in its order's shard
    pipe = client.pipeline(transaction=False)
    for order_id in ids:
        pipe.exists(seen_key(order_id, layout))
    return {order_id for order_id, hit in zip(ids, pipe.execute(), strict=True) if hit}


def exact_mean(prices: Iterable[Decimal]) -> Decimal | None:
    values = list(prices)
    if not values:
        return None
    return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)


@dataclass
class Accounting:
    """The figures of one run and anything that contradicts the delivery guarantees."""

    produced: int
    succeeded: int
    dlq: int
    lost: int
    counted_twice: int
    problems: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)

    def assert_exact(self) -> None:
        """lost = 0, counted twice = 0, the average exactly the mean of the succeeded prices."""
        detail = f"{self}; first lost: {self.lost_ids[:10]}"
        assert self.lost == 0, detail
        assert self.counted_twice == 0, detail
        assert not self.problems, detail


def account(
    produced: dict[str, Decimal],
    letters: list[Message],
    client: redis.Redis,
    snapshot: Snapshot,
    expected_dlq: set[str],
) -> Accounting:
    """Audit the pipeline's end state against the produced orders and the injector's verdicts.

    An order may be in the DLQ only at stage ``process`` with the injected failure as its reason,
    and only if the seeded injector fails it for good; every other order must be counted once.
    """
    problems = []
    dead: set[str] = set()
    for letter in letters:
        order_id = (letter.key() or b"").decode(errors="replace")
        headers = headers_of(letter)
        if order_id not in produced:
            continue  # a bad record of the scenario's own; checked by the scenario
        dead.add(order_id)
        reason = (
            headers.get(HEADER_STAGE),
            headers.get(HEADER_EXC_CLASS),
            headers.get(HEADER_EXC_MESSAGE, ""),
        )
        if reason[0] != "process" or reason[1] not in INJECTED_CLASSES or "injected" not in reason[2]:
            problems.append(f"{order_id} dead-lettered for a reason not injected: {reason}")
    if dead != expected_dlq:
        problems.append(
            f"DLQ differs from the injector's verdicts: unexpected {sorted(dead - expected_dlq)[:5]}, "
            f"missing {sorted(expected_dlq - dead)[:5]}"
        )
    counted = counted_ids(client, produced)
    both = counted & dead
    if both:
        problems.append(f"{len(both)} orders both counted and dead-lettered, e.g. {sorted(both)[:5]}")
    lost = sorted(set(produced) - counted - dead)
    counted_prices = [produced[i] for i in counted]
    if snapshot.sum != sum(counted_prices, Decimal(0)):
        problems.append(f"aggregate sum {snapshot.sum} != exact sum {sum(counted_prices, Decimal(0))}")
    if snapshot.average != exact_mean(counted_prices):
        problems.append(f"running average {snapshot.average} != exact mean {exact_mean(counted_prices)}")
    return Accounting(
        produced=len(produced),
        succeeded=snapshot.count,
        dlq=len(dead),
        lost=len(lost),
        counted_twice=max(0, snapshot.count - len(counted)),
        problems=problems,
        lost_ids=lost,
    )


def count_or_zero(aggregate: Aggregate) -> int:
    """The count, or 0 while its Redis does not answer (a scenario's failover may still be settling;
    redis-py's Cluster client raises RedisClusterException, not a RedisError, while no node serves a
    slot)."""
    try:
        return aggregate.snapshot().count
    except (redis.RedisError, RedisClusterException):
        return 0


def settle(
    redis_url: str,
    produced: dict[str, Decimal],
    expected_dlq: set[str],
    read_dlq: Callable[[], list[Message]],
    timeout: float,
) -> Accounting:
    """Wait until every order is counted or dead-lettered as predicted (or the deadline), then audit."""
    target = len(produced) - len(expected_dlq)
    aggregate = aggregate_of(redis_url)
    client = connect(redis_url)
    deadline = time.monotonic() + timeout
    letters: list[Message] = []
    while time.monotonic() < deadline:
        if count_or_zero(aggregate) >= target:
            letters = read_dlq()
            ids = {(m.key() or b"").decode(errors="replace") for m in letters}
            if expected_dlq <= ids:
                break
        time.sleep(0.5)
    else:
        letters = read_dlq()
    return account(produced, letters, client, aggregate.snapshot(), expected_dlq)
