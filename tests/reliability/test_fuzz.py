"""Scenario 6: bad input fuzzed with hypothesis, interleaved with good orders, produced in one go.

Hypothesis generates the records (derandomized, a bounded number, no example database); they go to
Kafka together and the pipeline is audited once: every bad record dead-lettered with its reason,
every good order counted exactly once, no process dead.
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from collections import Counter
from decimal import Decimal

import pytest
import redis
from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, Phase, given, settings

from orders.core.codec import OrderCodec
from orders.core.dead_letter import HEADER_EXC_MESSAGE, HEADER_OFFSET, HEADER_PARTITION, HEADER_STAGE
from orders.core.order import Order
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of, produce_raw
from tests.reliability.accounting import Accounting, account, read_to_end
from tests.reliability.fuzz_cases import Case, boundary_cases, cases
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = pytest.mark.kafka
KINDS = 11  # good orders and ten kinds of bad record (fuzz_cases.py)


def generate(schema_id: int, run: str, count: int) -> list[Case]:
    collected: list[Case] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])  # fmt: skip
    @given(cases(schema_id, run))
    def collect(case: Case) -> None:
        collected.append(case)

    collect()
    middle = len(collected) // 2
    return collected[:middle] + boundary_cases(schema_id, run) + collected[middle:]


def audit_bad_records(
    records: list[Message], letters: list[Message], expected: dict
) -> tuple[int, list[str]]:  # type: ignore[type-arg]
    """(bad records without a dead letter, problems): each needs one at its stage, giving its reason."""
    by_origin = {(headers_of(m)[HEADER_PARTITION], headers_of(m)[HEADER_OFFSET]): m for m in letters}
    missing, problems = 0, []
    for record in records:
        case = expected[(record.key(), record.value())]
        if case.good:
            continue
        letter = by_origin.get((str(record.partition()), str(record.offset())))
        if letter is None:
            missing += 1
            problems.append(f"{case.kind} at {record.partition()}@{record.offset()} not dead-lettered")
            continue
        headers = headers_of(letter)
        if headers[HEADER_STAGE] != case.stage or not re.search(case.reason, headers[HEADER_EXC_MESSAGE]):
            got = f"{headers[HEADER_STAGE]} {headers[HEADER_EXC_MESSAGE][:200]!r}"
            problems.append(f"{case.kind}: expected {case.stage} /{case.reason}/, got {got}")
        if letter.value() != (record.value() or b""):
            problems.append(f"{case.kind}: dead letter does not carry the original bytes")
    return missing, problems


def test_fuzzed_bad_input_dead_lettered_and_good_orders_counted(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows
) -> None:
    s = Scenario(
        "6", pipeline, profile, reliability_report, seed=606, FAILURE_RATE="0", PERMANENT_FAILURE_RATE="0"
    )
    worker, bridge = s.worker(), s.bridge()
    codec = OrderCodec(SchemaRegistryClient({"url": s.registry_url}), pipeline.orders_topic)
    schema_id = struct.unpack(">I", codec.encode(Order("probe", "Camera", 100))[1:5])[0]  # registers it
    generated = generate(schema_id, uuid.uuid4().hex[:8], profile.fuzz_records)
    kinds = Counter(case.kind for case in generated)
    assert len(kinds) == KINDS, kinds
    produce_raw(s.bootstrap, pipeline.orders_topic, [(case.key, case.value) for case in generated])

    good = {c.order_id: Decimal(c.cents).scaleb(-2) for c in generated if c.good}
    aggregate = s.aggregate
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the audit below says what is missing if the deadline passes
        if consumed(aggregate) >= len(generated) and aggregate.snapshot().count >= len(good):
            break
        time.sleep(0.5)
    records = read_to_end(s.bootstrap, pipeline.orders_topic)
    letters = read_to_end(s.bootstrap, pipeline.dlq_topic)
    expected = {(case.key, case.value): case for case in generated}
    missing, problems = audit_bad_records(records, letters, expected)
    orders = account(good, letters, redis.Redis.from_url(s.redis_url), aggregate.snapshot(), set())
    figures = Accounting(
        produced=len(records), succeeded=orders.succeeded, dlq=len(letters), lost=orders.lost + missing,
        counted_twice=orders.counted_twice, problems=orders.problems + problems, lost_ids=orders.lost_ids,
    )  # fmt: skip
    assert bridge.running() and worker.running()
    mix = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    s.finish(figures, f"hypothesis, derandomized: {mix}; no process died")
