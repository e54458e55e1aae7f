"""The nemesis' schedule: a seed replays it exactly, and it keeps the safety rules the run relies on
(at most two faults at once, never two in one group, every fault healed within the run)."""

from __future__ import annotations

import pytest

from tests.reliability.nemesis.schedule import (
    KINDS,
    MAX_ACTIVE,
    Fault,
    Timing,
    counts_by_kind,
    group_of,
    make_schedule,
)

TARGETS = [*(f"kafka{i}" for i in range(3)), *(f"redis{i}" for i in range(3)), "worker-solo",
           "worker-prefork", "bridge0", "bridge1"]  # fmt: skip
SHORT, LONG = Timing(80.0), Timing(1260.0)


def moments(schedule: list[Fault]) -> list[float]:
    return sorted({f.at for f in schedule} | {f.heal_at - 1e-6 for f in schedule})


def test_a_seed_replays_the_same_schedule() -> None:
    assert make_schedule(1818, TARGETS, SHORT) == make_schedule(1818, TARGETS, SHORT)
    assert make_schedule(1818, TARGETS, SHORT) != make_schedule(1819, TARGETS, SHORT)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("timing", [SHORT, LONG], ids=["short", "long"])
def test_never_more_than_two_faults_nor_two_in_one_group(seed: int, timing: Timing) -> None:
    schedule = make_schedule(seed, TARGETS, timing)
    for t in moments(schedule):
        active = [f for f in schedule if f.active_at(t)]
        assert len(active) <= MAX_ACTIVE, (t, active)
        groups = [g for f in active for g in f.groups()]
        assert len(groups) == len(set(groups)), (t, active)


@pytest.mark.parametrize("seed", range(20))
def test_every_fault_is_healed_within_the_run_and_names_real_targets(seed: int) -> None:
    for fault in make_schedule(seed, TARGETS, SHORT):
        assert 0 < fault.at < fault.heal_at <= SHORT.seconds
        assert fault.kind in KINDS and fault.target in TARGETS
        if fault.kind == "cut":
            assert group_of(fault.target) in ("worker", "bridge")
            assert fault.server is not None and group_of(fault.server) in ("kafka", "redis")
        else:
            assert fault.server is None


def test_the_long_profile_brings_over_a_hundred_faults_of_every_kind() -> None:
    schedule = make_schedule(1818, TARGETS, LONG)
    assert len(schedule) > 100
    assert {f.kind for f in schedule} == set(KINDS)
    assert {group_of(f.target) for f in schedule} == {"kafka", "redis", "worker", "bridge"}
    assert sum(counts_by_kind(schedule).values()) == len(schedule)


@pytest.mark.parametrize(
    ("target", "group"),
    [("worker-solo", "worker"), ("worker-prefork", "worker"), ("bridge1", "bridge"), ("kafka2", "kafka"),
     ("redis0", "redis")],
)  # fmt: skip
def test_group_of(target: str, group: str) -> None:
    assert group_of(target) == group


def test_with_rabbitmq_nodes_they_are_one_group_and_cut_from_clients() -> None:
    targets = [*TARGETS, "rabbit0", "rabbit1", "rabbit2"]
    schedule = make_schedule(7, targets, LONG)
    assert any(f.target.startswith("rabbit") for f in schedule)
    assert any(f.kind == "cut" and (f.server or "").startswith("rabbit") for f in schedule)
    for t in moments(schedule):
        rabbits = [f for f in schedule if f.active_at(t) and "rabbit" in f.groups()]
        assert len(rabbits) <= 1, (t, rabbits)
