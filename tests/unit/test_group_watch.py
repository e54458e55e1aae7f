"""GroupWatch: a consumer out of its group for too long while a broker is up is a stall; nothing else is."""

from __future__ import annotations

import json

from bridge.group_watch import GroupWatch

UP = {
    "localhost:9092/1": {"source": "learned", "state": "UP"},
    ":0/internal": {"source": "internal", "state": "UP"},
}
DOWN = {
    "localhost:9092/1": {"source": "learned", "state": "DOWN"},
    ":0/internal": {"source": "internal", "state": "UP"},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats(join_state: str, brokers: dict = UP, state: str = "up") -> str:  # type: ignore[type-arg]
    return json.dumps({"cgrp": {"state": state, "join_state": join_state}, "brokers": brokers})


def test_steady_member_is_never_stalled() -> None:
    clock = Clock()
    watch = GroupWatch(30, clock)
    watch.observe(stats("steady"))
    clock.now += 3600
    watch.observe(stats("steady"))
    assert watch.stalled() is None


def test_out_of_the_group_past_the_limit_with_a_broker_up_is_a_stall() -> None:
    clock = Clock()
    watch = GroupWatch(30, clock)
    watch.observe(stats("steady"))
    clock.now += 5
    watch.observe(stats("wait-unassign-to-complete"))
    clock.now += 29
    assert watch.stalled() is None  # 29 s out of the group: a rebalance may take that long
    clock.now += 2
    watch.observe(stats("wait-unassign-to-complete", state="query-coord"))
    reason = watch.stalled()
    assert reason is not None
    assert "31s" in reason and "join state wait-unassign-to-complete" in reason and "query-coord" in reason


def test_rejoining_resets_the_clock() -> None:
    clock = Clock()
    watch = GroupWatch(30, clock)
    watch.observe(stats("wait-join"))
    clock.now += 25
    watch.observe(stats("steady"))
    clock.now += 1
    watch.observe(stats("wait-join"))
    clock.now += 25
    assert watch.stalled() is None


def test_a_new_consumer_counts_from_its_creation() -> None:
    clock = Clock()
    watch = GroupWatch(30, clock)
    clock.now += 40
    watch.observe(stats("init"))
    assert watch.stalled() is not None


def test_an_outage_is_not_a_stall() -> None:
    """With no broker reachable a new consumer could not do better: wait for the cluster."""
    clock = Clock()
    watch = GroupWatch(30, clock)
    watch.observe(stats("init", brokers=DOWN, state="query-coord"))
    clock.now += 600
    watch.observe(stats("init", brokers=DOWN, state="query-coord"))
    assert watch.stalled() is None
    watch.observe(stats("init", brokers=UP, state="query-coord"))  # the broker is back, the group is not
    assert watch.stalled() is not None
