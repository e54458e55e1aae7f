"""The stock lane: the pipeline's kill-free scenarios on Celery and kombu as shipped.

``ORDERS_STOCK_CELERY=true`` turns off the whole fast path (worker/fast_path.py): kombu's own Redis
transport and Celery's own retry tracebacks. The scenarios are test_pipeline.py's, imported here so
pytest runs them again with this module's ``pipeline`` fixture (and xdist can give this file to its
other process), on Apache Kafka and the Redis broker only, to keep CI short.

Repeated here: the scenarios whose workers fetch, run, retry, dead-letter and dedupe orders, the code
the setting swaps. Not repeated: those that kill or stop a process (on this lane a killed worker may
lose the message it was fetching, celery/kombu#305: the README says which guarantees differ), and, to
keep CI short, three whose subject is the bridge or Celery's countdowns, alike on both paths (bad
records, backpressure, the backoff's timing): assign them here as the others are to run them too.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import Pipeline
from tests.integration import test_pipeline as scenarios

pytestmark = [pytest.mark.kafka, pytest.mark.kafka_lanes("apache")]
STOCK = {"ORDERS_STOCK_CELERY": "true"}

test_2000_orders_average_exactly = scenarios.test_2000_orders_average_exactly
test_transient_failures_end_succeeded_or_dead_lettered = (
    scenarios.test_transient_failures_end_succeeded_or_dead_lettered
)
test_permanent_failures_are_not_retried = scenarios.test_permanent_failures_are_not_retried
test_same_order_twice_is_counted_once = scenarios.test_same_order_twice_is_counted_once


@pytest.fixture
def pipeline(pipeline: Pipeline) -> Pipeline:
    """Every process of the scenario (bridge, workers, producer) on the stock path."""
    pipeline.env.update(STOCK)
    return pipeline


def _idle_fetch_commands(pipeline: Pipeline) -> set[str]:
    """The command each client of the scenario's Redis database last sent (an idle worker's fetch)."""
    url = pipeline.env["REDIS_URL"]
    db = url.rsplit("/", 1)[1]  # the suite gives each test a database of its own (tests/conftest.py)
    clients = redis.Redis.from_url(url).client_list()
    return {c["cmd"] for c in clients if c["db"] == db}


@pytest.mark.parametrize("path", ["stock", "fast"])
def test_the_lane_fetches_the_way_its_path_says(pipeline: Pipeline, path: str) -> None:
    """Seen from Redis, not from our code: an idle worker of kombu's transport blocks in BRPOP, one
    of the fast path's in BLMOVE (worker/transport.py)."""
    expected, other = ("brpop", "blmove") if path == "stock" else ("blmove", "brpop")
    pipeline.start_worker(**({} if path == "stock" else {"ORDERS_STOCK_CELERY": "false"}))
    deadline = time.monotonic() + 20
    while expected not in (seen := _idle_fetch_commands(pipeline)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expected in seen and other not in seen, seen
