"""The two profiles of the reliability suite: short (every `make test`) and long (`pytest --long`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    timeout: int  # per test, seconds
    worker_kill_orders: int  # scenario 1: at least 5,000
    worker_kills: int
    bridge_orders: int  # scenario 2
    bridge_kills: int
    rebalance_rounds: int  # a bridge leaves and rejoins the group
    kafka_orders: int  # scenario 3, produced at kafka_rate per second
    kafka_rate: int
    redis_orders: int  # scenario 4
    redis_restarts: int
    registry_orders: int  # scenario 5
    registry_outage: float
    fuzz_records: int  # scenario 6
    soak_seconds: int  # scenario 7, at soak_rate orders per second
    soak_rate: int
    cluster_orders: int  # scenarios 13-18 (the replicated Kafka lane), at cluster_rate per second
    cluster_rate: int
    ha_orders: int  # scenarios 22a-22e (replicated Redis), produced at ha_rate per second
    ha_rate: int
    rabbit_orders: int  # scenarios Q1, Q2 (the RabbitMQ cluster), produced at rabbit_rate per second
    rabbit_rate: int
    rabbit_faults: int  # leader faults per run
    rabbit_partition: float  # seconds a partition lasts (clients notice in ~10-20 s: README)
    nemesis_seconds: float  # scenario 18: faults come and go for this long, orders at nemesis_rate/s
    nemesis_rate: int
    nemesis_rabbit_seconds: float  # 18r: the same with Celery on the RabbitMQ cluster (long profile only)


SHORT = Profile(
    name="short", timeout=300,
    worker_kill_orders=5000, worker_kills=3,
    bridge_orders=1000, bridge_kills=1, rebalance_rounds=1,
    kafka_orders=1500, kafka_rate=100,
    redis_orders=1500, redis_restarts=1,
    registry_orders=500, registry_outage=30.0,
    fuzz_records=300,
    soak_seconds=15, soak_rate=50,
    cluster_orders=1200, cluster_rate=100,
    ha_orders=600, ha_rate=150,
    rabbit_orders=900, rabbit_rate=60, rabbit_faults=1, rabbit_partition=15.0,
    nemesis_seconds=80.0, nemesis_rate=50, nemesis_rabbit_seconds=80.0,
)  # fmt: skip

LONG = Profile(
    name="long", timeout=1200,
    worker_kill_orders=12000, worker_kills=5,
    bridge_orders=6000, bridge_kills=4, rebalance_rounds=3,
    kafka_orders=6000, kafka_rate=100,
    redis_orders=6000, redis_restarts=2,
    registry_orders=2000, registry_outage=30.0,
    fuzz_records=2000,
    soak_seconds=180, soak_rate=60,
    cluster_orders=4000, cluster_rate=150,
    ha_orders=3000, ha_rate=300,
    rabbit_orders=6000, rabbit_rate=60, rabbit_faults=3, rabbit_partition=40.0,
    nemesis_seconds=1260.0, nemesis_rate=50, nemesis_rabbit_seconds=300.0,
)  # fmt: skip

PROFILES = {p.name: p for p in (SHORT, LONG)}
