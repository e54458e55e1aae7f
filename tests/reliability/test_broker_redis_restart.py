"""Scenario 22d: Celery's broker on a Redis of its own refuses writes, then is SIGKILLed and restarted,
while the workers hand orders back; the aggregate's Redis stays up.

The README's known problem: a task that hands its order back (Reject, requeue) while the broker's Redis
refuses writes (READONLY after a failover, NOREPLICAS while a restarted primary waits for its replica,
LOADING, OOM) had its reject refused, and Celery stopped the worker ("Unrecoverable error"); a reject
refused for want of a connection was only logged. Here the aggregate refuses writes (NOREPLICAS: it asks
for a replica it does not have), so every task hands its order back; then the broker refuses them too,
dies and comes back. The worker must live on, and every order come back: a reject the broker refuses
leaves the message unacknowledged in Redis, where the visibility sweep returns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from orders.stack.services import Running
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.accounting import count_or_zero
from tests.reliability.ha import VISIBILITY
from tests.reliability.probes import handed_back
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]
DOWN_SECONDS = 2.0


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("pool", ["prefork", pytest.param("solo", marks=pytest.mark.long)])
def test_broker_redis_restarted_while_orders_are_handed_back(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, pool: str,
    own_redis: Callable[..., Running],
) -> None:  # fmt: skip
    aggregate_server, broker_server = own_redis(), own_redis("--appendonly", "yes")
    s = Scenario("22d", pipeline, profile, reliability_report, seed=2204,
                 REDIS_URL=f"{aggregate_server.url}/0", CELERY_BROKER_URL=f"{broker_server.url}/0",
                 VISIBILITY_TIMEOUT=VISIBILITY)  # fmt: skip
    workers = [s.worker(pool=pool)]
    s.bridge()
    n = profile.ha_orders // 2
    producer = s.produce(n, rate=profile.ha_rate)
    aggregate, refusing = s.aggregate, redis.Redis(port=aggregate_server.port)
    wait_for(lambda: count_or_zero(aggregate) > n // 4, 60, "orders flowing")

    refusing.config_set("min-replicas-to-write", 1)  # no replica: NOREPLICAS, every order handed back
    wait_for(lambda: handed_back(workers[0].tail(200)) > 0, 30, "orders handed back")
    redis.Redis(port=broker_server.port).config_set("min-replicas-to-write", 1)  # the hand-backs refused
    time.sleep(DOWN_SECONDS)
    broker_server.service.kill()
    killed_at = time.monotonic()
    time.sleep(DOWN_SECONDS)
    broker_server.service.start(lambda: _answers(redis.Redis(port=broker_server.port)), timeout=30)
    refusing.config_set("min-replicas-to-write", 0)
    assert all(w.running() for w in workers), f"a worker stopped:\n{workers[0].tail(40)}"

    produced = s.produced(producer, n)
    to_count = n - len(s.expected_dlq(list(produced)))
    s.recovery.measure("broker back", killed_at, lambda: count_or_zero(aggregate), 120,
                       lambda: count_or_zero(aggregate) >= to_count)  # fmt: skip
    figures = s.settle(produced)
    assert all(w.running() for w in workers), f"a worker stopped:\n{workers[0].tail(40)}"
    refused = sum(w.tail(1_000_000).count("reject not taken") for w in workers)
    s.finish(
        figures,
        f"{pool} pool; broker Redis refused writes {DOWN_SECONDS:.0f}s, then down {DOWN_SECONDS:.0f}s, while "
        f"the aggregate refused them; {refused} hand-backs the broker refused, returned by the sweep",
    )
