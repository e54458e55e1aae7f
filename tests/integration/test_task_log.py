"""TASK_SUCCESS_LOG=false: a worker logs no line per successful task, and still every retry, failure and
dead letter at its level (counted independently in Redis).

Tansu lane only: what is tested is the worker's logging, which no broker changes.
"""

from __future__ import annotations

import re

import pytest

from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.integration.test_pipeline import produce_cli, snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]
ORDERS = 60


def lines(text: str, level: str, pattern: str) -> list[str]:
    """The worker log's lines at ``level`` (Celery's ``[time: LEVEL/Process]``) matching ``pattern``."""
    return [line for line in text.splitlines() if f": {level}/" in line and re.search(pattern, line)]


def test_with_the_success_lines_off_only_the_success_lines_go(pipeline: Pipeline) -> None:
    # Half the attempts fail, one retry at once: about a quarter of the orders end in the DLQ.
    pipeline.env.update(MAX_RETRIES="1", RETRY_BACKOFF_BASE="0")
    worker = pipeline.start_worker(TASK_SUCCESS_LOG="false", FAILURE_RATE="0.5", FAILURE_SEED="23")
    pipeline.start_bridge()
    produce_cli(pipeline, ORDERS, seed=7)
    wait_for(lambda: snapshot(pipeline).count + snapshot(pipeline).counters["dlq"] >= ORDERS, 90, "settled")
    snap = snapshot(pipeline)
    worker.stop()  # its log is complete
    log = worker.log_path.read_text()

    retries, dead = snap.counters["retry_attempts"], snap.counters["dlq"]
    assert retries > 0 and dead > 0 and snap.count > 0, "the seed should give every outcome"
    assert lines(log, "INFO", r"Task orders\.process_order\[.*\] received") == []
    assert lines(log, "INFO", r"\] succeeded in ") == []
    assert len(lines(log, "INFO", r"Task orders\.process_order\[.*\] retry: ")) == retries
    assert len(lines(log, "INFO", r"\] raised expected: TransientError")) == dead  # Celery's failure line
    assert len(lines(log, "WARNING", r"retries ran out after 2 attempts")) == dead
    assert len(lines(log, "ERROR", r"dead-lettered at stage process after 2 attempt")) == dead
    assert "TASK_SUCCESS_LOG=false" in log
