"""Scenario 10: the DLQ unreachable while orders use up their retries; the orders topic stays up.

The worker's only Kafka client is its DLQ producer, so a worker given a bootstrap address where no
broker listens cannot dead-letter anything while the bridge, on the real broker, keeps handing orders
over. After the outage a worker that can reach Kafka takes over. On either pool (solo, what `orders up`
and compose run; prefork, what `celery -A worker worker` runs by default) every order must end
counted once or dead-lettered once, and none both: no dead letter lost to a killed pool child, none
written twice, no copies multiplying while the DLQ is away.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from orders.stack.supervisor import free_port
from tests.conftest import Pipeline
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("apache",))]
ORDERS = 40
OUTAGE = 45.0  # longer than the old hook's 30 s + 5 s wait and the 30 s time limit that killed it


def test_dlq_unreachable_while_orders_use_up_their_retries(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str
) -> None:
    s = Scenario("10", pipeline, profile, reliability_report, seed=1010, FAILURE_RATE="0.5",
                 PERMANENT_FAILURE_RATE="0.6", MAX_RETRIES="1")  # fmt: skip
    cut_off = s.worker(pool=pool, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    s.bridge()
    produced = s.produced(s.produce(ORDERS), ORDERS)
    outage_started = time.monotonic()
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_started)))
    assert cut_off.running(), cut_off.tail()
    requeued = cut_off.tail(100_000).count("requeueing it")
    cut_off.stop()
    s.worker(pool=pool)
    figures = s.settle(produced, timeout=120)
    letters = Counter((m.key() or b"").decode() for m in s.read_dlq())
    twice = sorted(order_id for order_id, n in letters.items() if n > 1)
    if twice:
        figures.problems.append(f"{len(twice)} orders dead-lettered more than once, e.g. {twice[:5]}")
    s.finish(figures, f"{pool} pool; DLQ unreachable {OUTAGE:.0f}s; {requeued} requeues while it was away")
