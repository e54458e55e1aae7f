"""Scenario 4: the pipeline's Redis (AOF on) SIGKILLed and restarted during a run.

Redis is the Celery broker (queue, unacknowledged messages) and the aggregate (sums, dedupe markers)
at once. A SIGKILLed redis-server loses no acknowledged write under `appendfsync everysec` or
`always`: it writes the AOF before replying. What `everysec` can lose on a machine crash (not
testable here) is bounded in docs/reliability.md; this test reports the figures that bound it.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.reliability.probes import consumed, settled
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]
NOTICED = ("failed (", "cannot read")  # the bridge's hand-off or queue-depth read failed


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("fsync", ["everysec", pytest.param("always", marks=pytest.mark.long)])
def test_redis_sigkilled_and_restarted_with_aof(
    pipeline: Pipeline, profile: Profile, reliability_report: ScenarioRows, own_redis, fsync: str, pool: str
) -> None:  # type: ignore[no-untyped-def]
    n = profile.redis_orders
    server = own_redis("--appendonly", "yes", "--appendfsync", fsync)
    client = redis.Redis(port=server.port)
    s = Scenario("4", pipeline, profile, reliability_report, seed=404, REDIS_URL=f"{server.url}/0")
    worker = s.worker(pool=pool)
    bridge = s.bridge()
    started = time.monotonic()
    producer = s.produce(n, rate=n / 15)  # still producing while Redis is down
    aggregate = s.aggregate
    downtimes = []
    for restart in range(1, profile.redis_restarts + 1):
        wait_for(
            lambda r=restart: settled(aggregate) >= r * n // (profile.redis_restarts + 2), 120, "progress"
        )
        server.service.kill()
        killed_at = time.monotonic()
        # Down until the bridge has noticed (its hand-off or queue-depth read failed), then back.
        wait_for(
            lambda: not bridge.running() or any(word in bridge.tail(50) for word in NOTICED),
            30, "the bridge to notice",
        )  # fmt: skip
        assert bridge.running(), f"the bridge died while Redis was down:\n{bridge.tail(60)}"
        server.service.start(lambda: _ping(client), timeout=30)
        downtimes.append(time.monotonic() - killed_at)
        s.recovery.measure(
            f"restart {restart}", killed_at, lambda: settled(aggregate), 120, lambda: settled(aggregate) >= n
        )

    produced = s.produced(producer, n)
    rate = consumed(aggregate) / (time.monotonic() - started)
    figures = s.settle(produced, timeout=240)
    persistence = client.info("persistence")
    assert bridge.running() and worker.running()
    s.finish(
        figures,
        f"{pool} pool; appendfsync {fsync}; {len(downtimes)} SIGKILLs, down {max(downtimes):.1f}s at most; "
        f"aof_delayed_fsync {persistence['aof_delayed_fsync']}; a machine crash could lose "
        + (
            "nothing"
            if fsync == "always"
            else f"<= 2 s of hand-offs (~{2 * rate:.0f} orders at {rate:.0f}/s)"
        ),
    )


@pytest.mark.lanes("tansu")
def test_order_is_handed_back_not_dead_lettered_while_the_aggregate_is_unreachable(
    pipeline: Pipeline,
) -> None:
    """A Redis outage is no fault of the order: the worker must hand it back, not dead-letter it."""
    from orders.core.order import Order
    from orders.stack.processes import healthz
    from orders.stack.supervisor import free_port
    from tests.harness.kafka_io import produce_raw
    from tests.integration.test_pipeline import codec_for
    from tests.reliability.accounting import read_to_end, settle

    pipeline.start_bridge()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # the aggregate's Redis; the broker is up
    broken = pipeline.start_worker(
        REDIS_URL=unreachable, CELERY_BROKER_URL=pipeline.env["REDIS_URL"], healthy=False
    )
    status, health = healthz(int(broken.env["METRICS_PORT"]))
    assert status == 503 and health["redis"]["aggregate"].startswith(f"waiting for {unreachable}"), health
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic,
                [(b"o", codec_for(pipeline).encode(Order("outage-1", "Mouse", 700)))])  # fmt: skip
    wait_for(lambda: "outage-1" in broken.tail(400), 30, "the worker to try the order")
    wait_for(lambda: broken.tail(400).count("outage-1") >= 3, 30, "the worker to try it again")
    broken.stop()
    assert read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic) == []

    pipeline.start_worker()
    figures = settle(
        pipeline.env["REDIS_URL"], {"outage-1": Decimal("7.00")}, set(),
        lambda: read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic), 60,
    )  # fmt: skip
    figures.assert_exact()
