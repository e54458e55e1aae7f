"""`orders bench` runs the ratio phases in rounds and each A/B phase off and on in turns (no services:
the measurements are replaced by ones that note when they ran)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

from orders.bench import runner
from orders.bench.ceilings import Measured
from orders.bench.cost import RunCost
from orders.bench.options import BenchOptions


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What was measured, in order; each run's rate is its place in that order."""
    seen: list[Any] = []

    def measured(what: Any) -> Measured:
        seen.append(what)
        cost = RunCost(100, {"workers": 0.05, "bridge": 0.01 * len(seen)}, {}, 1.0)
        return Measured(float(len(seen)), cost)

    def drain(rig: Any, n: int, workers: int, *_: Any, **options: Any) -> Measured:
        return measured(("drain", options.get("bridge_env"), options.get("worker_env")))

    monkeypatch.setattr(runner, "measure_ceiling", lambda rig, n, workers, kind: measured(kind))
    monkeypatch.setattr(runner, "measure_drain", drain)
    return seen


def _bench(*phases: str, repeat: int = 2) -> runner.Bench:
    display = Progress(console=Console(file=io.StringIO()))
    bench = runner.Bench(None, BenchOptions(3000, repeat, 2, 5, phases), display)  # type: ignore[arg-type]
    bench.run()
    return bench


def test_the_ratio_phases_run_in_rounds(calls: list[Any]) -> None:
    bench = _bench("ceiling", "plain", "drain")
    assert [c if isinstance(c, str) else c[0] for c in calls] == ["project", "plain", "drain"] * 2
    assert bench.figures["drain"].runs == (3.0, 6.0) and bench.figures["plain"].runs == (2.0, 5.0)
    assert bench.interleaved == [["ceiling", "plain", "drain"]]


def test_a_lone_ratio_phase_runs_as_before(calls: list[Any]) -> None:
    bench = _bench("plain", repeat=3)
    assert calls == ["plain"] * 3 and bench.interleaved == []


def test_an_ab_phase_alternates_off_and_on(calls: list[Any]) -> None:
    bench = _bench("ab_handoff", repeat=3)
    assert [c[1] for c in calls] == [{"BRIDGE_HANDOFF": "celery"}, {"BRIDGE_HANDOFF": "template"}] * 3
    assert bench.figures["ab_handoff_off"].runs == (1.0, 3.0, 5.0)
    assert bench.costs["ab_handoff_on"]["bridge"].runs == pytest.approx((200.0, 400.0, 600.0))
    assert bench.interleaved == [["ab_handoff_off", "ab_handoff_on"]]
