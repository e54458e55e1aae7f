"""Runs the phases of `orders bench` on a rig with one progress line per phase; returns the JSON document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from orders.bench.command import PHASES, BenchOptions
from orders.bench.machine import machine_facts
from orders.bench.phases import E2eRun, measure_baseline, measure_bridge, measure_ceiling, measure_e2e
from orders.bench.report import SCALING, build_results
from orders.bench.rig import Endpoints, Rig
from orders.bench.stats import Summary
from orders.core.settings import Settings

T = TypeVar("T")


class Bench:
    """Runs the phases on a rig, showing progress; collects a Summary per figure."""

    def __init__(self, rig: Rig, options: BenchOptions, display: Progress) -> None:
        self.rig = rig
        self.options = options
        self.display = display
        self.figures: dict[str, Summary] = {}
        self.half_rate: float | None = None
        self._tasks = {
            p: display.add_task(PHASES[p], status="waiting", start=False, total=1) for p in options.phases
        }

    def run(self) -> None:
        for phase in self.options.phases:
            self.display.start_task(self._tasks[phase])
            getattr(self, f"_{phase}")()
            self.display.update(self._tasks[phase], completed=1)
            self.display.stop_task(self._tasks[phase])

    def _repeat(
        self, phase: str, measure: Callable[[], T], show: Callable[[T], str], note: str = ""
    ) -> list[T]:
        results: list[T] = []
        for i in range(self.options.repeat):
            last = f"; last {show(results[-1])}" if results else ""
            self._status(phase, f"{note}run {i + 1}/{self.options.repeat}{last}")
            results.append(measure())
        return results

    def _status(self, phase: str, text: str) -> None:
        self.display.update(self._tasks[phase], status=text)

    def _rates(self, phase: str, key: str, measure: Callable[[], float], note: str = "") -> None:

        summary = Summary.of(self._repeat(phase, measure, lambda r: f"{r:,.0f}/s", note))
        self.figures[key] = summary
        self._status(
            phase, f"median {summary.median:,.0f}/s (min {summary.min:,.0f}, max {summary.max:,.0f})"
        )

    def _e2e_runs(
        self, phase: str, workers: int, failure_rate: float = 0.0, rate: float = 0.0
    ) -> list[E2eRun]:
        o = self.options
        return self._repeat(
            phase, lambda: measure_e2e(self.rig, o.orders, workers, failure_rate, rate),
            lambda r: f"{r.rate:,.0f}/s, p99 {r.latency_ms.get('p99', float('nan')):.1f} ms",
        )  # fmt: skip

    def _keep_latency(self, prefix: str, runs: list[E2eRun]) -> None:

        for name in ("p50", "p95", "p99"):
            values = [r.latency_ms[name] for r in runs if name in r.latency_ms]
            if values:
                self.figures[f"{prefix}_{name}"] = Summary.of(values)

    # -- the phases, one method each ------------------------------------------------------------

    def _ceiling(self, stock: bool = False) -> None:

        o, phase = self.options, "ceiling_stock" if stock else "ceiling"
        self._rates(phase, phase, lambda: measure_ceiling(self.rig, o.orders, o.workers, stock))

    def _ceiling_stock(self) -> None:
        self._ceiling(stock=True)

    def _e2e(self) -> None:

        runs = self._e2e_runs("e2e", self.options.workers)
        self.figures["e2e"] = summary = Summary.of(r.rate for r in runs)
        self._keep_latency("latency_full", runs)
        if self.options.workers in SCALING and "scaling" in self.options.phases:
            self.figures[f"scaling_{self.options.workers}"] = summary
        p99 = self.figures.get("latency_full_p99")
        self._status("e2e", f"median {summary.median:,.0f}/s" + (f", p99 {p99.median:.1f} ms" if p99 else ""))

    def _latency_half(self) -> None:
        self.half_rate = self.figures["e2e"].median / 2
        runs = self._e2e_runs("latency_half", self.options.workers, rate=self.half_rate)
        self._keep_latency("latency_half", runs)
        shown = ", ".join(f"{q} {self.figures[f'latency_half_{q}'].median:.1f}" for q in ("p50", "p95", "p99")
                          if f"latency_half_{q}" in self.figures)  # fmt: skip
        self._status("latency_half", f"at {self.half_rate:,.0f}/s: {shown} ms")

    def _e2e_fail10(self) -> None:
        o = self.options
        self._rates("e2e_fail10", "e2e_fail10", lambda: measure_e2e(self.rig, o.orders, o.workers, 0.1).rate)

    def _bridge(self) -> None:

        self._rates("bridge", "bridge", lambda: measure_bridge(self.rig, self.options.orders))

    def _baseline(self) -> None:

        o = self.options
        self._rates("baseline", "baseline", lambda: measure_baseline(self.rig, o.orders, o.baseline_seconds))

    def _scaling(self) -> None:
        o = self.options
        for workers in SCALING:
            if f"scaling_{workers}" in self.figures:
                continue
            measure = lambda w=workers: measure_e2e(self.rig, o.orders, w).rate  # noqa: E731
            self._rates("scaling", f"scaling_{workers}", measure, note=f"{workers} workers: ")
        self._status(
            "scaling", "  ".join(f"{k}w {self.figures[f'scaling_{k}'].median:,.0f}/s" for k in SCALING)
        )


def run_bench(options: BenchOptions, endpoints: Endpoints | None, command: str) -> dict[str, Any]:
    """Start (or reach) the services, run the phases with a progress display, return the JSON document."""
    started = _now()
    rig = Rig.open(Settings.from_env(), endpoints)
    failed = True
    try:
        machine = machine_facts(redis.Redis.from_url(rig.settings.redis_url), rig.broker_description())
        columns = (SpinnerColumn(finished_text="[green]done"), TextColumn("{task.description:<34}"),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=Console(stderr=True)) as display:
            bench = Bench(rig, options, display)
            bench.run()
        failed = False
    finally:
        rig.close(keep_logs=failed)
    parameters = {**asdict(options), "phases": list(options.phases), "half_load_rate": bench.half_rate}
    return build_results(parameters, bench.figures, machine, command, started, _now())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
