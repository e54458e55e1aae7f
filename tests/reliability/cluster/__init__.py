"""Scenarios on the replicated lane: three Kafka brokers on the test network (issue 24).

One xdist worker runs everything under a cluster/ directory (tests/harness/kafka_fixtures.py).
"""
