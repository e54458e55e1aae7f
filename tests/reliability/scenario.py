"""One reliability scenario: its processes with injected failures, its produced orders, its audit and row."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from decimal import Decimal

from confluent_kafka import Message

from orders.core.aggregate import Aggregate
from orders.stack.supervisor import Service, wait_for
from tests.conftest import Pipeline
from tests.reliability.accounting import (
    Accounting,
    aggregate_of,
    decode_orders,
    predicted_dead_letters,
    read_to_end,
    settle,
)
from tests.reliability.probes import Recovery, consumer_lag
from tests.reliability.profiles import Profile
from tests.reliability.report import Row, ScenarioRows
from worker.faults import FailureInjector

MAX_RETRIES = 3
# Retries in flight all the time: 10% of attempts fail (1, 2, 4 s back-off), 0.5% of orders fail for good.
# A visibility timeout of 36 s (floor: 4 s countdown + 30 s time limit) brings a killed worker's orders back.
FAULTS = {
    "FAILURE_RATE": "0.1",
    "PERMANENT_FAILURE_RATE": "0.005",
    "MAX_RETRIES": str(MAX_RETRIES),
    "RETRY_BACKOFF_BASE": "1",
    "VISIBILITY_TIMEOUT": "36",
}


class Scenario:
    def __init__(
        self, key: str, pipeline: Pipeline, profile: Profile, report: ScenarioRows, seed: int, **env: str
    ) -> None:
        self.key = key
        self.pipeline = pipeline
        self.profile = profile
        self.report = report
        self.seed = seed
        self.env = {**FAULTS, "FAILURE_SEED": str(seed), **env}
        self.redis_url = self.env.get("REDIS_URL", pipeline.env["REDIS_URL"])
        self.registry_url = self.env.get("SCHEMA_REGISTRY_URL", pipeline.env["SCHEMA_REGISTRY_URL"])
        self.recovery = Recovery()
        self.started = time.monotonic()

    @property
    def lane(self) -> str:
        return self.pipeline.broker.lane

    @property
    def bootstrap(self) -> str:
        return self.pipeline.broker.bootstrap

    @property
    def aggregate(self) -> Aggregate:
        return aggregate_of(self.redis_url)

    def worker(self, pool: str = "solo", **env: str) -> Service:
        return self.pipeline.start_worker(pool=pool, **{**self.env, **env})

    def read_dlq(self) -> list[Message]:
        return read_to_end(self.bootstrap, self.pipeline.dlq_topic)

    def bridge(self, **env: str) -> Service:
        return self.pipeline.start_bridge(**{**self.env, **env})

    def produce(self, count: int, rate: float = 0, seed: int | None = None, *extra: str) -> Service:
        """`orders produce` in the background (``extra``: more of its options, e.g. ``--schema``);
        :meth:`produced` waits for it and reads the orders back."""
        argv = [sys.executable, "-m", "orders.cli", "produce", "--count", str(count), "--rate", str(rate),
                "--seed", str(self.seed if seed is None else seed), "--quiet", *extra]  # fmt: skip
        return self.pipeline.start("producer", argv, lambda _s: True, **self.env)

    def produced(
        self,
        producer: Service,
        count: int,
        timeout: float = 300,
        foreign: bytes | None = None,
        total: int | None = None,
    ) -> dict[str, Decimal]:
        """The orders on the topic once ``producer`` sent its ``count`` (``total`` in all, if others did too).

        Records keyed ``foreign...`` are the scenario's own, not orders.
        """
        wait_for(lambda: not producer.running(), timeout, "the producer to finish")
        assert producer.proc is not None and producer.proc.returncode == 0, producer.tail()
        assert f"delivered {count}, failed 0" in producer.tail(5), producer.tail()
        records = read_to_end(self.bootstrap, self.pipeline.orders_topic)
        if foreign is not None:
            records = [m for m in records if not (m.key() or b"").startswith(foreign)]
        prices = decode_orders(records, self.registry_url, self.pipeline.orders_topic)
        assert len(prices) == (count if total is None else total)
        return prices

    def drained(self, producer: Service) -> Callable[[], bool]:
        """True once the producer is done and the bridges committed everything: nothing left to move."""
        topic, group = self.pipeline.orders_topic, self.pipeline.env["CONSUMER_GROUP"]
        return lambda: not producer.running() and consumer_lag(self.bootstrap, topic, group) == 0

    def expected_dlq(self, order_ids: list[str]) -> set[str]:
        injector = FailureInjector(
            float(self.env["FAILURE_RATE"]), float(self.env["PERMANENT_FAILURE_RATE"]), self.seed
        )
        return predicted_dead_letters(order_ids, injector, int(self.env["MAX_RETRIES"]))

    def settle(self, produced: dict[str, Decimal], timeout: float = 240) -> Accounting:
        return settle(
            self.redis_url,
            produced,
            self.expected_dlq(list(produced)),
            lambda: read_to_end(self.bootstrap, self.pipeline.dlq_topic),
            timeout,
        )

    def finish(self, figures: Accounting, notes: str = "", recovery: float | None = None) -> None:
        """Report the row, then assert lost = 0 and counted twice = 0 (and no other contradiction)."""
        worst = self.recovery.worst if recovery is None else recovery
        wall = time.monotonic() - self.started
        if figures.problems:  # the row must not read as a clean run
            notes = f"FAILED: {'; '.join(figures.problems)[:300]}; {notes}"
        self.report.add(Row(self.key, self.profile.name, self.lane, figures, worst, wall, notes))
        figures.assert_exact()
