"""What a command prints: its own messages and warnings, and the libraries' log lines only with `-v`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import Pipeline

pytestmark = pytest.mark.kafka
# httpx2's line for each registry request; a lookup's 404 is the normal answer but reads like an error.
HTTP_LINE = "HTTP Request: "


def produce(pipeline: Pipeline, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "orders.cli", *options, "produce", "--count", "3", "--rate", "0", "--quiet"]
    done = subprocess.run(
        argv, env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "delivered 3, failed 0" in done.stdout
    return done


@pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)  # the output is under test, not Kafka
def test_produce_shows_the_libraries_log_lines_only_with_v(pipeline: Pipeline) -> None:
    quiet = produce(pipeline)
    assert HTTP_LINE not in quiet.stderr, quiet.stderr
    verbose = produce(pipeline, "-v")
    assert HTTP_LINE in verbose.stderr  # the same requests were made: -v shows them
