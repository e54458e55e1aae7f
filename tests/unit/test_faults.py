"""The failure injector: rates honoured, reproducible per (seed, order, attempt), off unless enabled."""

from __future__ import annotations

import logging

import pytest

from orders.core.errors import PermanentError, TransientError
from worker.faults import FailureInjector, announce, configured_injector, with_override
from worker.settings import WorkerSettings


def outcome(injector: FailureInjector, order_id: str, attempt: int) -> str:
    try:
        injector.check(order_id, attempt)
    except TransientError:
        return "transient"
    except PermanentError:
        return "permanent"
    return "ok"


def test_off_by_default() -> None:
    assert {outcome(FailureInjector(), f"o{i}", 0) for i in range(1000)} == {"ok"}


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_transient_rate_is_honoured(rate: float) -> None:
    injector = FailureInjector(transient_rate=rate, seed=1)
    failures = sum(outcome(injector, f"o{i}", 0) == "transient" for i in range(20_000))
    assert abs(failures / 20_000 - rate) < 0.02


def test_seeded_decisions_repeat_and_differ_per_attempt() -> None:
    a, b = FailureInjector(0.5, seed=42), FailureInjector(0.5, seed=42)
    first = [outcome(a, f"o{i}", 0) for i in range(200)]
    assert first == [outcome(b, f"o{i}", 0) for i in range(200)]
    assert first != [outcome(a, f"o{i}", 1) for i in range(200)]


def test_permanent_failures_hold_for_every_attempt() -> None:
    injector = FailureInjector(permanent_rate=1.0, seed=3)
    assert {outcome(injector, "o", attempt) for attempt in range(4)} == {"permanent"}


# --- injection is a demo feature: off unless FAILURE_INJECTION=true -------------------------------


def settings(**env: str) -> WorkerSettings:
    return WorkerSettings.from_env(env, env_file=None)


def test_a_worker_without_injection_ignores_every_rate() -> None:
    off = settings(FAILURE_RATE="1", PERMANENT_FAILURE_RATE="1", FAILURE_SEED="3")
    assert configured_injector(off) == FailureInjector()
    on = settings(FAILURE_INJECTION="true", FAILURE_RATE="1", PERMANENT_FAILURE_RATE="0.5", FAILURE_SEED="3")
    assert configured_injector(on) == FailureInjector(1.0, 0.5, 3)


def test_the_runtime_override_is_not_even_read_without_injection() -> None:
    reads: list[int] = []

    def read_override() -> float | None:
        reads.append(1)
        return 1.0

    off = settings()
    assert with_override(configured_injector(off), off, read_override) == FailureInjector()
    assert reads == []
    on = settings(FAILURE_INJECTION="true", FAILURE_SEED="9")
    assert with_override(configured_injector(on), on, read_override) == FailureInjector(1.0, 0.0, 9)
    assert with_override(configured_injector(on), on, lambda: None) == FailureInjector(0.0, 0.0, 9)


@pytest.mark.parametrize(
    ("env", "level", "words"),
    [
        ({}, logging.INFO, "failure injection off"),
        ({"FAILURE_RATE": "0.1"}, logging.WARNING, "FAILURE_RATE (0.1)"),
        ({"FAILURE_INJECTION": "true", "FAILURE_RATE": "0.1"}, logging.WARNING, "failure injection ON"),
    ],
)
def test_the_worker_says_at_start_up_whether_it_injects(
    env: dict[str, str], level: int, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="worker.faults"):
        announce(settings(**env))
    [record] = caplog.records
    assert record.levelno == level
    assert words in record.getMessage()
