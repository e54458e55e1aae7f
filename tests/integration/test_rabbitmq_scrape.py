"""/metrics scraped in a tight loop while a bridge hands thousands of orders to RabbitMQ.

Each scrape reads the Celery queue's depth from the scrape thread while the bridge loop publishes and
waits for RabbitMQ's confirms. py-amqp connections are not thread-safe, so the two must not share one
(issue 21: they did, and a scrape could read the confirm wait's frames or close the connection under
the publisher). The end state is audited as the reliability suite does: lost 0, counted twice 0.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import pytest

from orders.stack.supervisor import free_port
from tests.conftest import Pipeline
from tests.integration.test_pipeline import produce_cli
from tests.reliability.accounting import decode_orders, read_to_end, settle

pytestmark = [pytest.mark.kafka, pytest.mark.celery_brokers("rabbitmq")]

ORDERS = 4000
# The scrape loop's bounds: it stops at whichever comes first (or when the orders are settled).
MAX_SCRAPES = 20_000
MAX_SCRAPE_SECONDS = 240.0
DEPTH_LINE = "\norders_bridge_queue_depth "
# What the bridge logs when a hand-off fails (its connection is closed and the retry opens a new one),
# when the loop or a scrape cannot read the depth, and when a scrape raised (the server answers 500).
BRIDGE_FAILURES = (
    "hand-off to Celery failed",
    "cannot read the Celery queue depth",
    "queue depth not read for /metrics",
    "Exception occurred during processing of request",
)


@pytest.fixture
def pipeline(pipeline: Pipeline, celery_broker: str, request: pytest.FixtureRequest) -> Pipeline:
    if celery_broker == "rabbitmq":
        pipeline.use_rabbitmq(request.getfixturevalue("rabbitmq"))
    return pipeline


@dataclass
class Scrapes:
    """What a tight scrape loop saw: answers by status, transport errors, pages without the depth."""

    ok: int = 0
    without_depth: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.ok + sum(self.failed.values())


def scrape_loop(port: int, stop: threading.Event, scrapes: Scrapes) -> None:
    """GET /metrics back to back until ``stop``, MAX_SCRAPES or MAX_SCRAPE_SECONDS."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}/metrics"
    while not stop.is_set() and scrapes.total < MAX_SCRAPES:
        if time.monotonic() - started >= MAX_SCRAPE_SECONDS:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
        except urllib.error.HTTPError as exc:
            scrapes.failed[f"HTTP {exc.code}"] += 1
            continue
        except OSError as exc:  # refused, reset, timed out
            scrapes.failed[type(exc).__name__] += 1
            continue
        scrapes.ok += 1
        scrapes.without_depth += DEPTH_LINE not in body
    scrapes.seconds = time.monotonic() - started


def test_scraping_metrics_in_a_tight_loop_during_a_rabbitmq_run(pipeline: Pipeline) -> None:
    port = free_port()
    pipeline.start_worker()
    bridge = pipeline.start_bridge(METRICS_PORT=str(port))
    scrapes, stop = Scrapes(), threading.Event()
    scraper = threading.Thread(target=scrape_loop, args=(port, stop, scrapes), daemon=True)
    scraper.start()
    try:
        produce_cli(pipeline, ORDERS, seed=23)
        produced = decode_orders(
            read_to_end(pipeline.broker.bootstrap, pipeline.orders_topic),
            pipeline.env["SCHEMA_REGISTRY_URL"],
            pipeline.orders_topic,
        )
        dlq = lambda: read_to_end(pipeline.broker.bootstrap, pipeline.dlq_topic)  # noqa: E731
        figures = settle(pipeline.env["REDIS_URL"], produced, set(), dlq, timeout=180)
    finally:
        stop.set()
        scraper.join(timeout=30)
    log = bridge.log_path.read_text(errors="replace")
    seen = {
        "scrapes": scrapes.total,
        "seconds": round(scrapes.seconds, 1),
        "non-200 or errors": dict(scrapes.failed),
        "pages without the depth": scrapes.without_depth,
        "bridge failures logged": {line: log.count(line) for line in BRIDGE_FAILURES},
        "tracebacks in the bridge log": log.count("Traceback"),
        "bridge alive": bridge.running(),
        "lost": figures.lost,
        "counted twice": figures.counted_twice,
        "succeeded": figures.succeeded,
    }
    print(f"\ntight-loop scrape during a RabbitMQ run: {seen}")
    assert scrapes.ok >= 100, seen  # the loop really ran while orders moved
    assert seen == {
        **seen,
        "non-200 or errors": {},
        "pages without the depth": 0,
        "bridge failures logged": dict.fromkeys(BRIDGE_FAILURES, 0),
        "tracebacks in the bridge log": 0,
        "bridge alive": True,
    }
    figures.assert_exact()
    assert figures.succeeded == ORDERS
