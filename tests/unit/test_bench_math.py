"""`orders bench` arithmetic and reports without services: summaries, exact quantiles, per-order timing,
CPU per order, the results document and its rendering."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from orders.bench.command import resolve_phases
from orders.bench.cost import RunCost, command_delta
from orders.bench.options import PHASES
from orders.bench.probe import Attempt, read_attempts
from orders.bench.report import kept_limits_section, markdown, table, write_report
from orders.bench.results import SCHEMA, build_results
from orders.bench.stats import Summary, ratio
from orders.bench.timeline import Timeline, exact_quantile, quantiles_ms


@pytest.mark.parametrize(
    ("runs", "median", "low", "high"),
    [
        ([5.0], 5.0, 5.0, 5.0),
        ([3.0, 1.0, 2.0], 2.0, 1.0, 3.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5, 1.0, 4.0),  # even count: the mean of the middle two
        ([2.0, 2.0, 9.0], 2.0, 2.0, 9.0),
    ],
)
def test_summary_is_median_min_max_of_the_runs(
    runs: list[float], median: float, low: float, high: float
) -> None:
    summary = Summary.of(runs)
    assert (summary.median, summary.min, summary.max) == (median, low, high)
    assert summary.to_json() == {"median": median, "min": low, "max": high, "runs": runs}


def test_summary_of_no_runs_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        Summary.of([])


@pytest.mark.parametrize(
    ("top", "bottom", "expected"),
    [(3.0, 2.0, 1.5), (1.0, 0.0, None), (None, 2.0, None), (2.0, None, None), (0.0, 4.0, 0.0)],
)
def test_ratio(top: float | None, bottom: float | None, expected: float | None) -> None:
    assert ratio(top, bottom) == expected


# -- exact quantiles and per-order timing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 50.0), (0.99, 99.0), (0.991, 100.0), (1.0, 100.0), (0.0, 1.0), (0.001, 1.0)],
)
def test_exact_quantile_is_the_nearest_rank(q: float, expected: float) -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert exact_quantile(values, q) == expected


def test_quantiles_of_nothing_are_nan() -> None:
    assert all(v != v for v in quantiles_ms([]).values())


def test_a_single_slow_order_sets_the_p99_of_a_hundred_but_not_the_p95() -> None:
    latencies = [0.010] * 98 + [0.020, 2.0]
    q = quantiles_ms(latencies)
    assert (q["p50"], q["p95"], q["p99"], q["max"]) == pytest.approx((10.0, 10.0, 20.0, 2000.0))


def _attempt(oid: str, retries: int, state: str, at: float, ts: int = 0) -> Attempt:
    return Attempt(oid, retries, state, at, ts)


def test_latency_runs_from_the_intended_send_time_not_the_actual_one() -> None:
    """10 orders/s from t=100: order 3 was meant to go at 100.2; a producer running late hides nothing."""
    timeline = Timeline.of(
        [_attempt("p-000001", 0, "SUCCESS", 100.05), _attempt("p-000003", 0, "SUCCESS", 100.5)]
    )
    assert sorted(timeline.latencies_from_schedule(100.0, 10.0)) == pytest.approx([0.05, 0.3])


def test_retries_settle_later_than_the_intake() -> None:
    attempts = [
        _attempt("f-000001", 0, "RETRY", 10.0), _attempt("f-000001", 1, "RETRY", 12.1),
        _attempt("f-000001", 2, "SUCCESS", 16.2), _attempt("f-000002", 0, "SUCCESS", 11.0),
        _attempt("f-000003", 0, "RETRY", 11.5), _attempt("f-000003", 1, "RETRY", 13.6),
        _attempt("f-000003", 2, "RETRY", 17.7), _attempt("f-000003", 3, "FAILURE", 25.8),
    ]  # fmt: skip
    timeline = Timeline.of(attempts)
    assert timeline.intake_rate(started=9.5) == pytest.approx(3 / 2.0)  # last first attempt at 11.5
    assert timeline.settling_after_intake() == pytest.approx(25.8 - 11.5)  # the dead letter settles last
    assert timeline.result_rate(started=9.5) == pytest.approx(3 / 16.3)
    assert timeline.missing(["f-000001", "f-000004"]) == ["f-000004"]


def test_the_backlog_wait_runs_from_the_record_timestamp() -> None:
    timeline = Timeline.of([_attempt("e-000001", 0, "SUCCESS", 12.5, ts=10_000)])
    assert timeline.waits_from_record() == pytest.approx([2.5])


def test_probe_files_are_read_back(tmp_path: Path) -> None:
    (tmp_path / "probe-11.tsv").write_text(
        "a-000001\t0\tRETRY\t1.500000\t1000\na-000001\t1\tSUCCESS\t3.5\t1000\n"
    )
    (tmp_path / "probe-12.tsv").write_text("a-000002\t0\tSUCCESS\t2.25\t1100\n")
    (tmp_path / "worker.log").write_text("not a probe file")
    assert read_attempts(tmp_path) == [
        Attempt("a-000001", 0, "RETRY", 1.5, 1000),
        Attempt("a-000001", 1, "SUCCESS", 3.5, 1000),
        Attempt("a-000002", 0, "SUCCESS", 2.25, 1100),
    ]


# -- CPU per order --------------------------------------------------------------------------------


def test_redis_command_time_is_the_difference_of_two_snapshots() -> None:
    before = {"evalsha": (10, 500), "llen": (4, 8), "get": (1, 1)}
    after = {"evalsha": (210, 10_500), "llen": (4, 8), "get": (1, 1), "hincrby": (5, 25)}
    assert command_delta(before, after) == {"evalsha": (200, 10_000), "hincrby": (5, 25)}


def test_cost_per_order_by_component_and_in_total() -> None:
    cost = RunCost(2000, {"bridge": 0.2, "workers": 1.0, "redis": 0.3}, {"evalsha": (2000, 40_000)}, 1.0)
    assert cost.per_order_us() == pytest.approx(
        {"bridge": 100.0, "workers": 500.0, "redis": 150.0, "total": 750.0, "redis_server": 20.0,
         "other_cores": 0.0}
    )  # fmt: skip
    assert cost.commands_per_order() == {"evalsha": 1.0}


# -- phases and reports ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("", tuple(PHASES)),
        ("e2e,ceiling", ("ceiling", "e2e")),  # run order, not the order given
        ("latency_half", ("drain", "latency_half")),  # half load needs the drain rate first
        (" bridge , baseline ", ("bridge", "baseline")),
    ],
)
def test_phases_resolve_in_run_order_with_prerequisites(only: str, expected: tuple[str, ...]) -> None:
    assert resolve_phases(only) == expected


def test_unknown_phases_are_refused() -> None:
    with pytest.raises(click.BadParameter, match="nonsense"):
        resolve_phases("e2e,nonsense")


def _cost(total: float) -> dict[str, Summary]:
    parts = {"workers": total * 0.6, "redis": total * 0.2, "bridge": total * 0.2, "total": total,
             "redis_server": total * 0.1}  # fmt: skip
    return {name: Summary.of([v]) for name, v in parts.items()}


def _results(costs: dict[str, float] | None = None, **medians: float) -> dict:  # type: ignore[type-arg]
    figures = {key: Summary.of([value * 0.9, value, value * 1.1]) for key, value in medians.items()}
    parameters = {"orders": 20000, "repeat": 3, "workers": 2, "baseline_orders": 200, "half_load_rate": 1500}
    machine = {
        "cpu": "Test CPU", "cores": 2, "python": "3.11.7", "packages": {"celery": "5.7.0"},
        "redis_server": {"version": "7.0.15", "aof": True, "appendfsync": "everysec"}, "broker": "Tansu",
        "load": [0.4, 1.1],
    }  # fmt: skip
    return build_results(
        parameters, figures, machine, "orders bench", "2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z",
        {key: _cost(total) for key, total in (costs or {}).items()},
        {"drain": {"evalsha": 1.0, "llen": 0.01}},
    )  # fmt: skip


FULL = {
    "ceiling": 6000.0, "plain": 2000.0, "plain_events": 1500.0, "drain": 3300.0, "e2e": 2700.0,
    "e2e_intake": 2800.0, "fail10_intake": 2400.0, "fail10_result": 900.0,
    "fail10_settle_after_intake_s": 15.0,
    "bridge": 12000.0, "baseline": 4.5, "half_latency_p99": 40.0, "half_apache_latency_p99": 55.0,
    "scaling_1": 1500.0, "scaling_2": 3300.0, "scaling_4": 3100.0,
}  # fmt: skip
COSTS = {"ceiling": 300.0, "drain": 560.0}


def test_results_carry_ratios_of_medians_and_targets() -> None:
    results = _results(COSTS, **FULL)
    assert json.loads(json.dumps(results)) == results  # plain JSON
    assert results["figures"]["plain"]["label"] == "no-op ceiling: plain default Celery app, events off"
    assert results["figures"]["drain"]["runs"] == pytest.approx([2970.0, 3300.0, 3630.0])
    assert results["ratios"]["drain_over_plain"]["value"] == pytest.approx(1.65)
    assert results["ratios"]["cpu_drain_over_ceiling"]["value"] == pytest.approx(560 / 300)
    assert results["ratios"]["fail10_result_over_baseline"]["value"] == pytest.approx(200.0)
    assert results["cost"]["drain"]["components"]["workers"]["median"] == pytest.approx(336.0)
    verdicts = {t["key"]: t["met"] for t in results["targets"]}
    assert verdicts == {
        "drain_over_plain": True,  # 1.65 >= 1.5
        "cpu_drain_over_ceiling": True,  # 1.87 <= 2
        "half_latency_p99": True,  # 40 <= 50 ms
        "half_apache_latency_p99": False,  # 55 > 50 ms
        "fail10_intake_over_e2e_intake": True,  # 0.86 >= 0.8
        "fail10_settle_after_intake_s": True,  # 15 <= 16 s
        "fail10_result_over_baseline": True,  # 200 >= 100
        "bridge_over_drain": True,  # 3.6 >= 3
    }


def test_a_missed_target_and_missing_figures() -> None:
    results = _results(plain=3000.0, drain=2000.0)
    assert set(results["ratios"]) == {"drain_over_plain"}
    assert results["cost"] == {}
    assert results["targets"] == [
        {"key": "drain_over_plain", "label": "drain / plain Celery ceiling (events off)",
         "measured": pytest.approx(2 / 3), "range": None, "unit": "", "target": ">= 1.5", "met": False}
    ]  # fmt: skip


def test_markdown_has_the_tables_targets_machine_command_plot_and_limits_placeholder() -> None:
    text = markdown(_results(COSTS, **FULL), "bench-scaling.png")
    assert (
        "| drain: pre-filled topic, bridge and workers started after it | 3,300 | 2,970 | 3,630 | orders/s |"
        in text
    )
    assert "| drain | 112 | 336 | 112 | 560 | 56 |" in text  # bridge, workers, Redis, total, command time
    assert "- drain: evalsha 1.00, llen 0.01" in text
    assert "| drain / plain Celery ceiling (events off) | 1.65 |  | >= 1.5 | yes |" in text  # not paired
    assert "| latency at half the drain rate, Apache Kafka, p99 | 55.0 |  | <= 50 ms | **no** |" in text
    assert "| 10% transient failures: last settle after the last intake | 15.0 |  | <= 16 s | yes |" in text
    assert "## A/B in the same run" not in text  # none measured
    assert "```sh\norders bench\n```" in text
    assert "| CPU | Test CPU, 2 cores, None GiB |" in text
    assert "| load average (1 min) at start / end | 0.4 / 1.1 |" in text
    assert "![drain throughput vs worker processes](bench-scaling.png)" in text
    assert "intended" in text and "nearest rank" in text
    assert text.rstrip().endswith("-->")  # the limits section is a placeholder, last
    assert "## What limits the pipeline" in text


def test_a_written_limits_section_survives_a_new_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write_report(_results(COSTS, **FULL), report)
    assert (tmp_path / "bench-scaling.png").read_bytes().startswith(b"\x89PNG")
    written = report.read_text().replace(
        "<!-- to be written from a profile of a full-size run (py-spy or pyinstrument) -->",
        "The workers' CPU: 40% kombu, 20% the Lua script.",
    )
    report.write_text(written)
    assert kept_limits_section(written) == (
        "## What limits the pipeline\n\nThe workers' CPU: 40% kombu, 20% the Lua script.\n"
    )
    write_report(_results(COSTS, **FULL), report)
    assert "The workers' CPU: 40% kombu, 20% the Lua script." in report.read_text()


def test_no_plot_without_scaling_figures(tmp_path: Path) -> None:
    assert write_report(_results(plain=3000.0, drain=2000.0), tmp_path / "b.md") is None
    assert not (tmp_path / "bench-scaling.png").exists()
    assert "## Scaling" not in (tmp_path / "b.md").read_text()


def test_table_lists_every_figure_cost_and_verdict() -> None:
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(table(_results(COSTS, **FULL)))
    text = console.export_text()
    assert "bridge alone, no worker" in text and "12,000" in text
    assert "drain / plain Celery ceiling (events off)" in text and "1.65" in text and ">= 1.5" in text
    assert "<= 50 ms" in text and "<= 16 s" in text
    assert "CPU µs per order" in text and "560" in text
    assert text.count("│ yes │") == 7 and text.count("│ no  │") == 1


# -- rounds: the ratio phases interleaved, and the A/B phases -------------------------------------------


def _costs_of(**totals: list[float]) -> dict[str, dict[str, Summary]]:
    """Per run key, per-run totals split 60/40 between the workers and the bridge."""
    return {
        key: {"total": Summary.of(runs), "workers": Summary.of(r * 0.6 for r in runs),
              "bridge": Summary.of(r * 0.4 for r in runs)}
        for key, runs in totals.items()
    }  # fmt: skip


def _rounds_results(interleaved: list[list[str]], figures: dict[str, list[float]], costs: dict) -> dict:  # type: ignore[type-arg]
    parameters = {"orders": 3000, "repeat": 3, "workers": 2, "interleaved": interleaved}
    summaries = {key: Summary.of(runs) for key, runs in figures.items()}
    return build_results(parameters, summaries, {"load": []}, "orders bench", "s", "f", costs)


def test_ratios_of_runs_in_the_same_rounds_are_per_pair_with_their_range() -> None:
    figures = {"plain": [2000.0, 1000.0, 1500.0], "drain": [3000.0, 2500.0, 2400.0], "ceiling": [6000.0] * 3}
    costs = _costs_of(drain=[700.0, 800.0, 600.0], ceiling=[200.0, 400.0, 300.0])
    results = _rounds_results([["ceiling", "plain", "drain"]], figures, costs)

    drain_over_plain = results["ratios"]["drain_over_plain"]
    assert drain_over_plain["paired"] is True
    assert drain_over_plain["runs"] == pytest.approx([1.5, 2.5, 1.6])  # round by round
    assert (drain_over_plain["value"], drain_over_plain["min"], drain_over_plain["max"]) == pytest.approx(
        (1.6, 1.5, 2.5)
    )  # the ratio of the medians would be 2,500 / 1,500 = 1.67
    cpu = results["ratios"]["cpu_drain_over_ceiling"]
    assert cpu["runs"] == pytest.approx([3.5, 2.0, 2.0]) and cpu["value"] == pytest.approx(2.0)
    target = next(t for t in results["targets"] if t["key"] == "drain_over_plain")
    assert target["range"] == pytest.approx([1.5, 2.5]) and target["met"] is True
    assert results["schema"] == SCHEMA
    assert "| drain / plain Celery ceiling (events off) | 1.60 | 1.50-2.50 (3 pairs) | >= 1.5 | yes |" in (
        markdown(results, None)
    )


def test_runs_measured_apart_are_compared_by_their_medians() -> None:
    figures = {"plain": [2000.0, 1000.0, 1500.0], "drain": [3000.0, 2500.0, 2400.0]}
    results = _rounds_results([], figures, {})
    label = "drain / plain Celery ceiling (events off)"
    assert results["ratios"]["drain_over_plain"] == {
        "label": label, "value": pytest.approx(2500 / 1500), "paired": False
    }  # fmt: skip


def test_an_ab_phase_gives_each_sides_figures_and_the_on_off_ratios_per_pair() -> None:
    figures = {"ab_handoff_off": [2000.0, 2100.0], "ab_handoff_on": [2400.0, 2200.0]}
    costs = _costs_of(ab_handoff_off=[800.0, 1000.0], ab_handoff_on=[600.0, 600.0])
    results = _rounds_results([["ab_handoff_off", "ab_handoff_on"]], figures, costs)

    assert results["figures"]["ab_handoff_on"]["label"] == "drain, A/B handoff on"
    bridge = results["ratios"]["ab_handoff_cpu_bridge"]
    assert bridge["runs"] == pytest.approx([0.75, 0.6]) and bridge["paired"] is True
    assert results["ratios"]["ab_handoff_rate"]["runs"] == pytest.approx([1.2, 2200 / 2100])
    target = next(t for t in results["targets"] if t["key"] == "ab_handoff_cpu_bridge")
    assert (target["measured"], target["met"]) == (pytest.approx(0.675), True)  # <= 0.7
    assert "ab_group_commit_cpu_workers" not in {t["key"] for t in results["targets"]}  # the slot, unmeasured
    text = markdown(results, None)
    assert "## A/B in the same run" in text
    assert (
        "| hand-off: messages built by Celery (off) or from the template (on) | 2 | 2,050 / 2,300 "
        "| 900 / 600 | bridge | 360 / 240 | 0.68 (0.60-0.75) |"
    ) in text
