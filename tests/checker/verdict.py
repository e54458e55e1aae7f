"""The checker's verdict: every order on the topic ends counted once or dead-lettered, never both."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction

from tests.checker.decode import SchemaFetcher, Undecodable, decode_order
from tests.checker.reader import Record, read_topic
from tests.checker.redis_state import RedisState, counted_at, read_state
from tests.checker.timeline import Timeline, Times

# Kafka Connect's dead-letter headers, which the pipeline's letters carry: where the record came from.
ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET = (
    "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset",
)  # fmt: skip
SAMPLE = 10


@dataclass(frozen=True)
class Target:
    """Where a run's orders, dead letters and aggregate are; ``acknowledged``: orders the producers had
    acknowledged by Kafka (None: unknown), compared with what the topic holds."""

    bootstrap: str
    orders_topic: str
    dlq_topic: str
    registry_url: str
    redis_url: str
    acknowledged: int | None = None
    dedupe_ttl: int = 86400  # DEDUPE_TTL_SECONDS of the workers: dates each count (redis_state.counted_at)


@dataclass
class Verdict:
    on_topic: int  # distinct orders on the orders topic
    duplicates_on_topic: int  # records of an orderId already on the topic (a producer retry's copy)
    undecodable: int  # records that are no order; each must be dead-lettered
    counted: int
    dead_lettered: int
    lost: list[str] = field(default_factory=list)  # on the topic, neither counted nor dead-lettered
    counted_twice: int = 0  # the aggregate's count above the distinct orders it marked counted
    counted_not_produced: list[str] = field(default_factory=list)
    dead_and_counted: list[str] = field(default_factory=list)
    dead_twice: int = 0  # letters beyond the first for one order (at-least-once to the DLQ: no error)
    bad_records_not_dead_lettered: list[str] = field(default_factory=list)  # "partition@offset"
    missing_from_topic: int = 0  # acknowledged to a producer, not on the topic: Kafka lost it
    sum_exact: bool = True
    average_exact: bool = True
    detail: list[str] = field(default_factory=list)
    # From each order's record timestamp (produced) to its count in Redis, over the counted orders.
    latency_p50: float | None = None
    latency_max: float | None = None
    slowest: str | None = None
    timeline: Timeline = field(default_factory=Timeline, repr=False)  # not in to_json: one entry per order

    def problems(self) -> list[str]:
        found = [
            f"{name}: {value if isinstance(value, int) else len(value)}"
            + (f" e.g. {value[:SAMPLE]}" if isinstance(value, list) else "")
            for name, value in (
                ("lost", self.lost), ("counted twice", self.counted_twice),
                ("counted but never produced", self.counted_not_produced),
                ("dead-lettered and counted", self.dead_and_counted),
                ("bad records not dead-lettered", self.bad_records_not_dead_lettered),
                ("acknowledged but not on the topic", self.missing_from_topic),
            )
            if value
        ]  # fmt: skip
        if not self.sum_exact or not self.average_exact:
            found.append("aggregate not exact: " + "; ".join(self.detail))
        return found

    def assert_clean(self) -> None:
        assert not self.problems(), f"checker: {self.problems()} ({self.summary()})"

    def summary(self) -> str:
        latency = (
            ""
            if self.latency_max is None
            else f", latency p50 {self.latency_p50:.2f}s max {self.latency_max:.2f}s"
        )
        return (
            f"on topic {self.on_topic}, counted {self.counted}, dead-lettered {self.dead_lettered}, "
            f"lost {len(self.lost)}, counted twice {self.counted_twice}, topic duplicates "
            f"{self.duplicates_on_topic}, DLQ duplicates {self.dead_twice}{latency}"
        )

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "timeline"}, indent=2)


@dataclass
class _Topics:
    prices: dict[str, Decimal]
    first: dict[str, Record]  # each order's first record
    duplicates: int
    bad: list[Record]


def _orders(target: Target, schemas: SchemaFetcher) -> _Topics:
    topics = _Topics({}, {}, 0, [])
    for record in read_topic(target.bootstrap, target.orders_topic):
        try:
            order_id, price = decode_order(record.value, schemas)
        except Undecodable:
            topics.bad.append(record)
            continue
        if order_id in topics.prices:
            topics.duplicates += 1
            continue
        topics.prices[order_id] = price
        topics.first[order_id] = record
    return topics


@dataclass
class _Letters:
    per_order: Counter[str]  # letters per orderId (from the original bytes, or none when dropped)
    first_at: dict[str, float]  # each order's first letter's timestamp, Unix seconds
    origins: set[str]  # "partition@offset" on the orders topic each letter points back at


def _dead_letters(target: Target, schemas: SchemaFetcher) -> _Letters:
    letters = _Letters(Counter(), {}, set())
    for letter in read_topic(target.bootstrap, target.dlq_topic):
        if letter.header(ORIGIN_TOPIC) == target.orders_topic:
            letters.origins.add(f"{letter.header(ORIGIN_PARTITION)}@{letter.header(ORIGIN_OFFSET)}")
        try:
            order_id, _ = decode_order(letter.value, schemas)
        except Undecodable:
            continue  # a bad record's letter: matched by its origin above
        letters.per_order[order_id] += 1
        letters.first_at.setdefault(order_id, letter.timestamp_ms / 1000)
    return letters


def judge(topics: _Topics, letters: _Letters, state: RedisState, target: Target) -> Verdict:
    """Every order on the topic against Redis and the DLQ; then the sums and the timings."""
    produced = set(topics.prices)
    dead = set(letters.per_order) & produced
    counted = state.counted & produced
    unmatched = [f"{r.partition}@{r.offset}" for r in topics.bad]
    verdict = Verdict(
        on_topic=len(produced), duplicates_on_topic=topics.duplicates, undecodable=len(topics.bad),
        counted=len(counted), dead_lettered=len(dead),
        lost=sorted(produced - counted - dead), counted_twice=max(0, state.count - len(state.counted)),
        counted_not_produced=sorted(state.counted - produced), dead_and_counted=sorted(dead & counted),
        dead_twice=sum(n - 1 for n in letters.per_order.values() if n > 1),
        bad_records_not_dead_lettered=[origin for origin in unmatched if origin not in letters.origins],
    )  # fmt: skip
    if target.acknowledged is not None:
        verdict.missing_from_topic = max(0, target.acknowledged - len(produced))
    _exactness(verdict, topics, counted, state)
    _timeline(verdict, topics, letters, counted, dead - counted, target)
    return verdict


def _exactness(verdict: Verdict, topics: _Topics, counted: AbstractSet[str], state: RedisState) -> None:
    exact_sum = sum((topics.prices[i] for i in counted), Decimal(0))
    verdict.sum_exact = state.sum == exact_sum
    if not verdict.sum_exact:
        verdict.detail.append(f"sum {state.sum} in Redis, {exact_sum} counted")
    if counted:
        stored = Fraction(state.sum) / state.count if state.count else None
        exact = Fraction(exact_sum) / len(counted)
        verdict.average_exact = stored == exact
        if not verdict.average_exact:
            verdict.detail.append(f"average {stored} in Redis, {exact} exact")


def _timeline(
    verdict: Verdict,
    topics: _Topics,
    letters: _Letters,
    counted: AbstractSet[str],
    dead: AbstractSet[str],
    target: Target,
) -> None:
    """When each order was settled: counted (its marker's TTL) or dead-lettered (its first letter)."""
    settled = {**counted_at(target.redis_url, sorted(counted), target.dedupe_ttl)}
    for order_id, at in settled.items():
        record = topics.first[order_id]
        verdict.timeline.orders[order_id] = Times(record.partition, record.timestamp_ms / 1000, at)
    for order_id in dead:
        record = topics.first[order_id]
        at = letters.first_at[order_id]
        verdict.timeline.orders[order_id] = Times(record.partition, record.timestamp_ms / 1000, at, dead=True)
    waits = verdict.timeline.latencies()
    if waits:
        verdict.latency_p50 = round(waits[len(waits) // 2][0], 3)
        verdict.latency_max, verdict.slowest = round(waits[-1][0], 3), waits[-1][1]


def check(target: Target, settle: float = 60.0) -> Verdict:
    """Read the orders topic once, then Redis and the DLQ until no order is missing (or ``settle`` s)."""
    schemas = SchemaFetcher(target.registry_url)
    topics = _orders(target, schemas)
    deadline = time.monotonic() + settle
    while True:
        verdict = judge(topics, _dead_letters(target, schemas), read_state(target.redis_url), target)
        if not (verdict.lost or verdict.bad_records_not_dead_lettered) or time.monotonic() > deadline:
            return verdict
        time.sleep(1.0)
