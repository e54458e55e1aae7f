"""The failure injector: rates honoured, and reproducible per (seed, order, attempt)."""

from __future__ import annotations

import pytest

from orders.core.errors import PermanentError, TransientError
from worker.faults import FailureInjector


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
