"""`orders stats` and `orders top` show what the dashboard shows: dead letters by stage (counted in
Redis by the bridge and the workers) and the bridge group's consumer lag (from Kafka)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orders.core.order import Order
from orders.dashboard.top import TopSource
from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import produce_raw
from tests.integration.test_pipeline import _price_bytes, codec_for, snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]


def test_stats_and_top_show_dead_letters_by_stage_and_the_lag(pipeline: Pipeline) -> None:
    codec = codec_for(pipeline)
    invalid = codec.encode(Order("nan-1", "Tablet", 100)).replace(*_price_bytes(1.0, float("nan")))
    good = [(f"g{i}".encode(), codec.encode(Order(f"g-{i}", "Camera", 1_000 + i))) for i in range(3)]
    produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic,
                [(b"garbage", b"not avro"), (b"nan-1", invalid), *good])  # fmt: skip

    # The bridge alone: it dead-letters what it cannot decode or validate and queues the rest.
    bridge = pipeline.start_bridge()
    wait_for(lambda: snapshot(pipeline).counters["consumed"] >= 5, 30, "5 records consumed")
    bridge.stop()  # commits what it handed off; what comes next waits in the topic
    later = [(f"l{i}".encode(), codec.encode(Order(f"l-{i}", "Mouse", 2_000 + i))) for i in range(4)]
    for record in later:  # one batch each: Tansu reports a batch's base offset + 1 as the watermark
        produce_raw(pipeline.broker.bootstrap, pipeline.orders_topic, [record])

    result = subprocess.run([sys.executable, "-m", "orders.cli", "stats", "--json"], capture_output=True,
                            text=True, env={**os.environ, **pipeline.env}, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["dlq_stages"] == {"decode": 1, "validate": 1, "process": 0}
    assert shown["counters"]["dlq"] == 2
    assert shown["lag"]["total"] == 4 and len(shown["lag"]["partitions"]) == 3

    table = subprocess.run([sys.executable, "-m", "orders.cli", "stats"], capture_output=True, text=True,
                           env={**os.environ, **pipeline.env, "COLUMNS": "120"}, timeout=60)  # fmt: skip
    assert "Dead letters by stage" in table.stdout and "Consumer lag (total 4)" in table.stdout, table.stdout

    source = TopSource(pipeline.settings())
    try:
        view = source.read()
    finally:
        source.close()
    assert view.snapshot.dlq_stages == {"decode": 1, "validate": 1, "process": 0}
    assert view.lags is not None and sum(p.lag for p in view.lags) == 4
