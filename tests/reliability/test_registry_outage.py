"""Scenario 5: the schema registry down for 30 s while a freshly started bridge has orders to decode.

The bridge caches writer schemas by id, so it needs the registry only for an id it has not seen:
it is started while the registry is down, with every order still to decode. The registry is one
of the test's own (the session's serves other tests); its state lives in Redis, so it comes back
with the same schema ids.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from orders.stack.supervisor import port_open, wait_for
from tests.conftest import Pipeline
from tests.harness import services
from tests.reliability.accounting import read_to_end
from tests.reliability.probes import consumed
from tests.reliability.profiles import Profile
from tests.reliability.report import ScenarioRows
from tests.reliability.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.lanes(short=("tansu",))]

RETRY_LINE = re.compile(r"decode failed \(schema registry unreachable[^\n]*\); retrying in ([\d.]+)s")


def test_registry_down_30s_bridge_waits_and_drops_nothing(
    pipeline: Pipeline,
    profile: Profile,
    reliability_report: ScenarioRows,
    spare_redis_db: str,
    service_logs: Path,
) -> None:
    n = profile.registry_orders
    registry = services.start_registry(service_logs, spare_redis_db)
    try:
        s = Scenario("5", pipeline, profile, reliability_report, seed=505, SCHEMA_REGISTRY_URL=registry.url)
        s.worker()
        produced = s.produced(s.produce(n), n)  # the registry is up while the orders are produced

        registry.service.kill()
        down_at = time.monotonic()
        bridge = s.bridge()  # a fresh bridge: no writer schema cached
        aggregate = s.aggregate
        outage = profile.registry_outage
        wait_for(
            lambda: time.monotonic() - down_at >= outage and RETRY_LINE.search(bridge.tail()) is not None,
            outage + 30, "the outage, with the bridge retrying",
        )  # fmt: skip
        assert consumed(aggregate) == 0 and aggregate.snapshot().count == 0  # waited, skipped nothing
        assert read_to_end(s.bootstrap, pipeline.dlq_topic) == []  # and dead-lettered nothing
        assert bridge.running()

        registry.service.start(lambda: port_open(registry.port), timeout=30)
        back_at = time.monotonic()
        s.recovery.measure("registry back", down_at, lambda: consumed(aggregate), 120, lambda: False)
        after_return = time.monotonic() - back_at
        figures = s.settle(produced)
    finally:
        registry.service.stop()

    delays = [float(d) for d in RETRY_LINE.findall(bridge.tail(100_000))]
    assert delays == sorted(delays) and len(set(delays)) >= 4, delays  # backing off, doubling
    s.finish(
        figures,
        f"registry down {back_at - down_at:.0f}s; the bridge logged {len(delays)} decode retries, "
        f"back-off {', '.join(f'{d:g}' for d in delays)} s; "
        f"moving again {after_return:.1f}s after the registry returned",
    )
