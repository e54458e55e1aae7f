"""What `orders bench` is asked to run: its phases, in run order, and the options of one invocation.

Apart from the click command, so the runner and the command both import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from orders.bench.ab import AB_TESTS

# key -> progress label, in the order they run
PHASES: dict[str, str] = {
    "ceiling": "ceiling: no-op drain, project config",
    "ceiling_stock": "ceiling, project config, stock transport",
    "plain": "ceiling: plain Celery app, events off",
    "plain_events": "ceiling: plain Celery app, events on",
    "drain": "drain: pre-filled topic",
    "drain_stock": "drain, Celery and kombu as shipped",
    "drain_events": "drain, task events on",
    "tracing": "drain: tracing off, sampled 1.0, sampled 0.01",
    **{key: f"A/B {key.removeprefix('ab_')}: off, on, ..." for key in AB_TESTS},
    "e2e": "e2e: live, producer in the clock",
    "latency_half": "latency at half the drain rate",
    "e2e_fail10": "10% transient failures, 2/4/8 s",
    "bridge": "bridge alone",
    "baseline": "baseline: blocking consumer, 2/4/8 s",
    "apache": "Apache Kafka: drain, half-rate latency",
    "rabbitmq": "RabbitMQ broker: drain, half-rate latency",
    "rabbitmq_cluster": "RabbitMQ cluster, quorum: the same",
    "replicated": "Apache Kafka, 3 brokers vs 1: drain",
    "replica_wait": "aggregate on Sentinel: WAIT off / on",
    "shards": "aggregate on Redis Cluster: 1 / 3 shards",
    "scaling": "scaling: drain at 1, 2, 4 workers",
}
NEEDS = {"latency_half": "drain"}  # half load is half of the measured drain rate
# The ratio phases: those of them that run are measured in rounds (ceiling, plain, drain, ceiling, ...),
# so each round's ratios compare runs minutes apart at most, not a phase's runs with another's.
INTERLEAVED = ("ceiling", "plain", "drain")


@dataclass(frozen=True)
class BenchOptions:
    """One invocation's flags: orders (or no-op tasks) per run, runs per figure, the layout measured."""

    orders: int
    repeat: int
    workers: int
    baseline_orders: int
    phases: tuple[str, ...]
    seed: int = 16
