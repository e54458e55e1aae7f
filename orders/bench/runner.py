"""Runs the phases of `orders bench` on a rig with one progress line per phase; returns the JSON document."""

from __future__ import annotations

import functools
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import redis
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from orders.bench.ab import AB_TESTS, SIDES, Switch, side_key
from orders.bench.ceilings import Ceiling, Measured, measure_ceiling
from orders.bench.lanes import APACHE, KAFKA1, KAFKA3, RABBITMQ, RABBITMQ_CLUSTER, TANSU, Lane
from orders.bench.machine import machine_facts
from orders.bench.options import INTERLEAVED, PHASES, BenchOptions
from orders.bench.phases import (
    FAILURE_RATE,
    measure_baseline,
    measure_bridge,
    measure_drain,
    measure_e2e,
    traced_env,
)
from orders.bench.results import SCALING, build_results
from orders.bench.rig import Endpoints, Rig
from orders.bench.sentinel import DEFAULT_RATE
from orders.bench.sentinel import RUNS as REPLICA_RUNS
from orders.bench.settings import BenchSettings
from orders.bench.shards import RUNS as SHARD_RUNS
from orders.bench.stats import Summary
from orders.bench.warmup import WARM_UP_RATE, warm_up_broker
from orders.stack.zipkin import start_zipkin

# The tracing phase's runs: figure key -> the sampling ratio (None: tracing off).
TRACE_RUNS: tuple[tuple[str, float | None], ...] = (
    ("trace_off", None),
    ("trace_1", 1.0),
    ("trace_001", 0.01),
)


class Bench:
    """Runs the phases on a rig, showing progress; collects a Summary per figure and per cost item."""

    def __init__(self, rig: Rig, options: BenchOptions, display: Progress) -> None:
        self.rig = rig
        self.options = options
        self.display = display
        self.figures: dict[str, Summary] = {}
        self.costs: dict[str, dict[str, Summary]] = {}  # figure key -> component -> µs per order
        self.commands: dict[str, dict[str, float]] = {}  # figure key -> Redis command -> calls per order
        self.half_rate: float | None = None
        self.warm_up: dict[str, list[float]] = {}  # JVM broker -> its JIT's share of a core in each round
        # Figure keys measured in rounds, one run of each per round: their runs pair up by position.
        self.interleaved: list[list[str]] = []
        self.shard_owners: dict[str, dict[str, int]] = {}  # shards -> hash tag -> Cluster primary
        self._tasks = {
            p: display.add_task(PHASES[p], status="waiting", start=False, total=1) for p in options.phases
        }

    def run(self) -> None:
        """Every phase in order; the ratio phases that run are measured together, in rounds."""
        rounds = [p for p in INTERLEAVED if p in self.options.phases]
        done: set[str] = set()
        for phase in self.options.phases:
            if phase in done:
                continue
            group = rounds if phase in rounds and len(rounds) > 1 else [phase]
            for p in group:
                self.display.start_task(self._tasks[p])
            if len(group) > 1:
                self._ratio_rounds(group)
            elif phase in AB_TESTS:
                self._ab(phase)
            else:
                getattr(self, f"_{phase}")()
            for p in group:
                self.display.update(self._tasks[p], completed=1)
                self.display.stop_task(self._tasks[p])
            done.update(group)

    def _status(self, phase: str, text: str) -> None:
        self.display.update(self._tasks[phase], status=text)

    def _measure(self, phase: str, key: str, measure: Callable[[], Measured], note: str = "") -> Summary:
        """``repeat`` runs of ``measure``: the rate under ``key``, other figures under ``key_<name>``,
        the cost per component under ``costs[key]``."""
        runs: list[Measured] = []
        for i in range(self.options.repeat):
            last = f"; last {runs[-1].rate:,.0f}/s" if runs else ""
            self._status(phase, f"{note}run {i + 1}/{self.options.repeat}{last}")
            runs.append(measure())
        return self._record(phase, key, runs)

    def _rounds(self, measures: dict[str, tuple[str, Callable[[], Measured]]]) -> dict[str, list[Measured]]:
        """``repeat`` rounds of one run per key (key -> its phase's progress line, its measurement), in
        turn; the keys' runs pair up by round. Each key's figures are recorded as :meth:`_measure`'s."""
        runs: dict[str, list[Measured]] = {key: [] for key in measures}
        for i in range(self.options.repeat):
            for key, (phase, measure) in measures.items():
                last = f"; last {runs[key][-1].rate:,.0f}/s" if runs[key] else ""
                self._status(phase, f"round {i + 1}/{self.options.repeat}: {key}{last}")
                runs[key].append(measure())
        for key, (phase, _) in measures.items():
            self._record(phase, key, runs[key])
        self.interleaved.append(list(measures))
        return runs

    def _record(self, phase: str, key: str, runs: list[Measured]) -> Summary:
        """Summaries of ``runs`` under ``key``: its rate, its other figures, its CPU per order."""
        self.figures[key] = summary = Summary.of(r.rate for r in runs)
        for name in runs[0].figures:
            self.figures[f"{key}_{name}"] = Summary.of(r.figures[name] for r in runs)
        costs = [r.cost for r in runs if r.cost is not None]
        if costs:
            per_order = [c.per_order_us() for c in costs]
            self.costs[key] = {name: Summary.of(p[name] for p in per_order) for name in per_order[0]}
            calls = [c.commands_per_order() for c in costs]
            self.commands[key] = {
                name: statistics.median(c.get(name, 0.0) for c in calls) for name in calls[0]
            }
        shown = f"median {summary.median:,.0f}/s (min {summary.min:,.0f}, max {summary.max:,.0f})"
        if key in self.costs:
            shown += f", {self.costs[key]['total'].median:,.0f} µs CPU/order"
        self._status(phase, shown)
        return summary

    # -- the phases, one method each ------------------------------------------------------------

    def _ceiling(self, kind: Ceiling = "project", phase: str = "ceiling") -> None:
        o = self.options
        self._measure(phase, phase, lambda: measure_ceiling(self.rig, o.orders, o.workers, kind))

    def _ceiling_stock(self) -> None:
        self._ceiling("stock", "ceiling_stock")

    def _plain(self) -> None:
        self._ceiling("plain", "plain")

    def _plain_events(self) -> None:
        self._ceiling("plain_events", "plain_events")

    def _drain(self, lane: Lane = TANSU, phase: str = "drain") -> Summary:
        o = self.options
        summary = self._measure(
            phase, f"drain{lane.suffix}", lambda: measure_drain(self.rig, o.orders, o.workers, lane)
        )
        if lane == TANSU:
            self._count_as_scaling(summary)
        return summary

    def _count_as_scaling(self, drain: Summary) -> None:
        """The drain is also the scaling phase's figure at the layout's worker count."""
        if self.options.workers in SCALING and "scaling" in self.options.phases:
            self.figures[f"scaling_{self.options.workers}"] = drain

    def _ratio_rounds(self, phases: list[str]) -> None:
        """The ratio phases (INTERLEAVED) that run, in rounds: ceiling, plain, drain, ceiling, ..."""
        o = self.options
        measures = {
            "ceiling": lambda: measure_ceiling(self.rig, o.orders, o.workers, "project"),
            "plain": lambda: measure_ceiling(self.rig, o.orders, o.workers, "plain"),
            "drain": lambda: measure_drain(self.rig, o.orders, o.workers),
        }
        self._rounds({phase: (phase, measures[phase]) for phase in phases})
        if "drain" in phases:
            self._count_as_scaling(self.figures["drain"])

    def _ab(self, key: str) -> None:
        """One change off and on (orders/bench/ab.py): the drain with each side's switch, in turns."""
        test, o = AB_TESTS[key], self.options

        def drain(switch: Switch) -> Callable[[], Measured]:
            return functools.partial(
                measure_drain, self.rig, o.orders, o.workers, bridge_env=dict(switch.bridge),
                worker_env=dict(switch.workers), worker_loglevel=test.worker_loglevel,
            )  # fmt: skip

        runs = self._rounds({side_key(key, side): (key, drain(getattr(test, side))) for side in SIDES})
        off, on = (self.costs[side_key(key, side)][test.component].median for side in SIDES)
        self._status(key, f"{test.component} CPU per order: off {off:,.0f} µs, on {on:,.0f} µs "
                          f"({len(runs[side_key(key, 'on')])} pairs)")  # fmt: skip

    def _drain_stock(self) -> None:
        o = self.options
        measure = lambda: measure_drain(self.rig, o.orders, o.workers, stock=True)  # noqa: E731
        self._measure("drain_stock", "drain_stock", measure)

    def _drain_events(self) -> None:
        o = self.options
        measure = lambda: measure_drain(self.rig, o.orders, o.workers, worker_env={"TASK_EVENTS": "true"})  # noqa: E731
        self._measure("drain_events", "drain_events", measure)

    def _tracing(self) -> None:
        """The drain three times: tracing off, every trace sampled, 1 in 100 (Zipkin as the backend)."""
        zipkin = start_zipkin(self.rig.log_dir)
        try:
            for key, ratio in TRACE_RUNS:
                env = {} if ratio is None else traced_env(zipkin.url, ratio)
                self._measure("tracing", key, functools.partial(self._traced_drain, env), note=f"{key}: ")
        finally:
            zipkin.service.stop()

    def _traced_drain(self, env: dict[str, str]) -> Measured:
        o = self.options
        return measure_drain(self.rig, o.orders, o.workers, TANSU, bridge_env=env, worker_env=env)

    def _e2e(self) -> None:
        o = self.options
        self._measure("e2e", "e2e", lambda: measure_e2e(self.rig, o.orders, o.workers))

    def _half(self, lane: Lane, phase: str, rate: float) -> None:
        o = self.options
        measure = lambda: measure_e2e(self.rig, o.orders, o.workers, lane, rate=rate)  # noqa: E731
        self._measure(phase, f"half{lane.suffix}", measure, note=f"at {rate:,.0f}/s: ")
        p99 = self.figures[f"half{lane.suffix}_latency_p99"]
        self._status(
            phase, f"at {rate:,.0f}/s: p99 {p99.median:.1f} ms (min {p99.min:.1f}, max {p99.max:.1f})"
        )

    def _latency_half(self) -> None:
        self.half_rate = self.figures["drain"].median / 2
        self._half(TANSU, "latency_half", self.half_rate)

    def _e2e_fail10(self) -> None:
        o = self.options
        measure = lambda: measure_e2e(self.rig, o.orders, o.workers, failure_rate=FAILURE_RATE, seed=o.seed)  # noqa: E731
        self._measure("e2e_fail10", "fail10", measure)

    def _bridge(self) -> None:
        self._measure("bridge", "bridge", lambda: measure_bridge(self.rig, self.options.orders))

    def _baseline(self) -> None:
        o = self.options
        self._measure("baseline", "baseline", lambda: measure_baseline(self.rig, o.baseline_orders, o.seed))

    def _lane(self, lane: Lane, phase: str) -> None:
        if lane.jvm and lane.kafka not in self.warm_up:
            self._warm_up(lane, phase)
        drain = self._drain(lane, phase)
        self._half(lane, phase, drain.median / 2)

    def _replicated(self) -> None:
        """Drain on one and on three brokers of the same launcher (heap, JVM flags, tuning): what
        replication (acks=all to 3 replicas, 2 in sync) costs in throughput and CPU per order."""
        for lane in (KAFKA1, KAFKA3):
            if lane.kafka not in self.warm_up:
                self._warm_up(lane, "replicated")
            self._drain(lane, "replicated")
        one, three = self.figures["drain_kafka1"].median, self.figures["drain_kafka3"].median
        cpu = [self.costs[f"drain_kafka{k}"]["total"].median for k in (1, 3)]
        self._status("replicated", f"1 broker {one:,.0f}/s, 3 brokers {three:,.0f}/s; "
                     f"{cpu[0]:,.0f} vs {cpu[1]:,.0f} µs CPU/order")  # fmt: skip

    def _warm_up(self, lane: Lane, phase: str) -> None:
        """Unmeasured rounds until the new JVM broker compiled its request path (orders/bench/warmup.py)."""
        rate = self.half_rate or WARM_UP_RATE

        def report(shares: list[float]) -> None:
            shown = ", ".join(f"{share:.2f}" for share in shares)
            self._status(phase, f"warming the broker up at {rate:,.0f}/s; its JIT used {shown} core")

        self.warm_up[lane.kafka] = warm_up_broker(self.rig, lane, self.options.workers, rate, report)

    def _apache(self) -> None:
        self._lane(APACHE, "apache")

    def _rabbitmq(self) -> None:
        self._lane(RABBITMQ, "rabbitmq")

    def _rabbitmq_cluster(self) -> None:
        self._lane(RABBITMQ_CLUSTER, "rabbitmq_cluster")

    def _replica_wait(self) -> None:
        """The aggregate's per-task WAIT against none, same paced load and bench (bench/sentinel.py)."""
        o = self.options
        rate = self.half_rate or DEFAULT_RATE
        for key, replicas in REPLICA_RUNS.items():
            env = {"REDIS_WAIT_REPLICAS": replicas}
            measure = lambda e=env: measure_e2e(  # noqa: E731
                self.rig, o.orders, o.workers, rate=rate, sentinel_aggregate=True, worker_env=e
            )
            self._measure("replica_wait", key, measure, note=f"{key} at {rate:,.0f}/s: ")
        off, on = (self.figures[f"{key}_latency_p99"].median for key in REPLICA_RUNS)
        cpu_off, cpu_on = (self.costs[key]["total"].median for key in REPLICA_RUNS)
        self._status(
            "replica_wait", f"p99 {off:.1f} -> {on:.1f} ms; CPU {cpu_off:,.0f} -> {cpu_on:,.0f} µs/order"
        )

    def _shards(self) -> None:
        """The drain with the aggregate in 1 and in 3 shards on one Redis Cluster, in turns (shards.py)."""
        o, cluster = self.options, self.rig.cluster()  # started before the first run, not inside it
        self.shard_owners = {str(n): cluster.owners(n) for n in SHARD_RUNS.values()}
        measures: dict[str, tuple[str, Callable[[], Measured]]] = {
            key: ("shards", functools.partial(measure_drain, self.rig, o.orders, o.workers, shards=n))
            for key, n in SHARD_RUNS.items()
        }
        self._rounds(measures)
        one, three = (self.figures[key].median for key in SHARD_RUNS)
        shares = "/".join(f"{self.figures[f'shards_3_node{i}_script_share'].median:.0f}" for i in range(3))
        self._status("shards", f"1 shard {one:,.0f}/s, 3 shards {three:,.0f}/s; script time at 3: {shares}%")

    def _scaling(self) -> None:
        o = self.options
        for workers in SCALING:
            if f"scaling_{workers}" in self.figures:
                continue
            measure = lambda w=workers: measure_drain(self.rig, o.orders, w)  # noqa: E731
            self._measure("scaling", f"scaling_{workers}", measure, note=f"{workers} workers: ")
        self._status(
            "scaling", "  ".join(f"{k}w {self.figures[f'scaling_{k}'].median:,.0f}/s" for k in SCALING)
        )


def run_bench(options: BenchOptions, endpoints: Endpoints | None, command: str) -> dict[str, Any]:
    """Start (or reach) the services, run the phases with a progress display, return the JSON document."""
    started = _now()
    rig = Rig.open(BenchSettings.from_env(), endpoints)
    failed = True
    try:
        machine = machine_facts(redis.Redis.from_url(rig.settings.redis_url), rig.broker_description())
        columns = (SpinnerColumn(finished_text="[green]done"), TextColumn("{task.description:<34}"),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=Console(stderr=True)) as display:
            bench = Bench(rig, options, display)
            bench.run()
        failed = False
        machine["load"].append(round(os.getloadavg()[0], 2))
    finally:
        rig.close(keep_logs=failed)
    parameters = {**asdict(options), "phases": list(options.phases), "half_load_rate": bench.half_rate,
                  "broker_warm_up_jit_cores": bench.warm_up, "interleaved": bench.interleaved,
                  "shard_owners": bench.shard_owners}  # fmt: skip
    return build_results(
        parameters, bench.figures, machine, command, started, _now(), bench.costs, bench.commands
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
