"""How many replicas a topic gets, and how many must hold a write, for the brokers there are."""

from __future__ import annotations

import pytest

from orders.stack.kafka_cluster import PRODUCTION, Detection, replication_for


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2)), (0, (1, 1))],
)
def test_replication_fits_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    assert replication_for(brokers) == expected


def test_failure_detection_lines_name_kafka_properties() -> None:
    lines = dict(line.split("=") for line in Detection().lines())
    assert lines["broker.session.timeout.ms"] == "3000"
    assert lines["controller.quorum.fetch.timeout.ms"] == "1000"
    # what production keeps: Kafka's own defaults
    assert dict(line.split("=") for line in PRODUCTION.lines())["broker.session.timeout.ms"] == "9000"
