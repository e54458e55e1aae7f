"""Scenario 9: task payloads enqueued directly, not by the bridge, with what the bridge would never send.

Anything that can reach the Celery queue can enqueue `orders.process_order` (Flower's task API, a
Redis client). The worker must check each payload by the bridge's rules: the aggregate stays
untouched and each bad payload is dead-lettered at stage ``validate``. One carries a 999 KB original
record, so its letter must go without the value rather than be requeued forever.
"""

from __future__ import annotations

import base64
import time

import pytest
import redis

from bridge.handoff import create_sender
from orders.core.aggregate import seen_key
from orders.core.dead_letter import HEADER_EXC_MESSAGE, HEADER_STAGE, HEADER_VALUE_DROPPED
from orders.core.order import PROCESS_ORDER_TASK
from orders.core.shards import read_layout
from tests.conftest import Pipeline
from tests.harness.kafka_io import headers_of
from tests.reliability.accounting import Accounting, read_to_end
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]


def origin(offset: int, value: bytes = b"raw") -> dict[str, object]:
    return {"topic": "orders", "partition": 0, "offset": offset, "timestamp": 0, "key": None,
            "value": base64.b64encode(value).decode(), "group": "g"}  # fmt: skip


# orderId -> (price text, what the letter must say)
BAD = {
    "neg": ("-5.00", "must be positive"),
    "nan": ("NaN", "must be finite"),
    "huge": ("92233720368547758.07", "exceeds the maximum"),
    "tiny": ("0.001", "more than two decimals"),
    "text": ("abc", "not a decimal number"),
}


def test_payloads_the_bridge_would_refuse_never_reach_the_aggregate(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str
) -> None:
    s = Scenario(
        "9", pipeline, profile, reliability_report, seed=909, FAILURE_RATE="0", PERMANENT_FAILURE_RATE="0"
    )
    worker = s.worker(pool=pool)
    sender = create_sender(pipeline.settings())
    queue = pipeline.env["CELERY_QUEUE"]
    run = pipeline.orders_topic
    for n, (name, (price, _)) in enumerate(BAD.items()):
        value = b"x" * 999_000 if name == "text" else b"raw"  # a letter over the producer's limit
        payload = {"orderId": f"{run}-{name}", "product": "Camera", "price": price}
        sender.send_task(PROCESS_ORDER_TASK, args=(payload, origin(n, value)), queue=queue)
    sender.send_task(PROCESS_ORDER_TASK, args=("not a payload", "nor an origin"), queue=queue)
    good = {"orderId": f"{run}-good", "product": "Camera", "price": "12.34"}
    sender.send_task(PROCESS_ORDER_TASK, args=(good, origin(99)), queue=queue)

    expected = len(BAD) + 1
    deadline = time.monotonic() + 60
    letters: list = []  # type: ignore[type-arg]
    while time.monotonic() < deadline and len(letters) < expected:
        letters = read_to_end(s.bootstrap, pipeline.dlq_topic)
        time.sleep(1)
    problems = audit(letters, run)
    snapshot = s.aggregate.snapshot()
    client = redis.Redis.from_url(s.redis_url)
    if (snapshot.count, str(snapshot.sum)) != (1, "12.34"):
        problems.append(f"the aggregate moved: count {snapshot.count}, sum {snapshot.sum}")
    layout = read_layout(client)
    problems += [f"{name} marked as seen" for name in BAD if client.exists(seen_key(f"{run}-{name}", layout))]
    assert worker.running()
    figures = Accounting(produced=expected + 1, succeeded=snapshot.count, dlq=len(letters), lost=0,
                         counted_twice=max(0, snapshot.count - 1), problems=problems)  # fmt: skip
    s.finish(figures, f"{pool} pool; {expected} bad payloads enqueued directly, one with a 999 KB record")


def audit(letters: list, run: str) -> list[str]:  # type: ignore[type-arg]
    problems = []
    by_key = {(m.key() or b"").decode(errors="replace"): headers_of(m) for m in letters}
    if len(letters) != len(BAD) + 1:
        problems.append(f"{len(letters)} dead letters, expected {len(BAD) + 1}: {sorted(by_key)}")
    for name, (_, reason) in BAD.items():
        headers = by_key.get(f"{run}-{name}")
        if headers is None:
            problems.append(f"{name}: not dead-lettered")
        elif headers.get(HEADER_STAGE) != "validate" or reason not in headers.get(HEADER_EXC_MESSAGE, ""):
            problems.append(
                f"{name}: {headers.get(HEADER_STAGE)} {headers.get(HEADER_EXC_MESSAGE, '')[:100]!r}"
            )
    if by_key.get(f"{run}-text", {}).get(HEADER_VALUE_DROPPED) != "true":
        problems.append("the 999 KB record's letter does not say its value was dropped")
    return problems
