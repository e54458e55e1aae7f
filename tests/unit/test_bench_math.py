"""`orders bench` arithmetic and reports without services: summaries, histogram quantiles, rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from orders.bench.command import PHASES, resolve_phases
from orders.bench.report import build_results, kept_limits_section, markdown, table, write_report
from orders.bench.stats import (
    Summary,
    histogram_quantile,
    merge_histograms,
    observations,
    parse_histogram,
    ratio,
)

INF = math.inf


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


# Buckets (upper bound, cumulative count): 10 observations <= 0.01, 90 <= 0.02, 100 in total.
BUCKETS = [(0.01, 10.0), (0.02, 90.0), (0.05, 99.0), (INF, 100.0)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.05, BUCKETS, 0.005),  # rank 5 in the first bucket, which starts at 0
        (0.1, BUCKETS, 0.01),  # rank 10: the top of the first bucket
        (0.5, BUCKETS, 0.015),  # rank 50: half-way through 10..90 in 0.01..0.02
        (0.9, BUCKETS, 0.02),
        (0.99, BUCKETS, 0.05),
        (0.995, BUCKETS, 0.05),  # in the +Inf bucket: the highest finite bound
        (1.0, BUCKETS, 0.05),
        (0.0, BUCKETS, 0.0),
        (-0.1, BUCKETS, -INF),
        (1.1, BUCKETS, INF),
        (0.5, [(INF, 100.0), (0.02, 90.0), (0.05, 99.0), (0.01, 10.0)], 0.015),  # order does not matter
        (0.5, [(0.01, 5.0), (0.02, 5.0), (INF, 10.0)], 0.01),  # rank 5 met by the first bucket
    ],
)
def test_histogram_quantile_interpolates_like_promql(q: float, buckets: list, expected: float) -> None:  # type: ignore[type-arg]
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize(
    "buckets",
    [
        [],
        [(INF, 10.0)],  # one bucket: nothing to interpolate between
        [(0.01, 5.0), (0.02, 10.0)],  # no +Inf bucket
        [(0.01, 0.0), (INF, 0.0)],  # no observations
    ],
)
def test_histogram_quantile_is_nan_without_a_usable_histogram(buckets: list) -> None:  # type: ignore[type-arg]
    assert math.isnan(histogram_quantile(0.5, buckets))


def _exposition(*values: float) -> str:
    registry = CollectorRegistry()
    latency = Histogram(
        "orders_end_to_end_latency_seconds", "latency", buckets=(0.01, 0.02, 0.05), registry=registry
    )
    for value in values:
        latency.observe(value)
    return generate_latest(registry).decode()


def test_histograms_are_parsed_from_metrics_pages_and_summed_bound_by_bound() -> None:
    first = parse_histogram(_exposition(0.005, 0.015, 0.015), "orders_end_to_end_latency_seconds")
    second = parse_histogram(_exposition(0.015, 0.04, 3.0), "orders_end_to_end_latency_seconds")
    assert first == {0.01: 1.0, 0.02: 3.0, 0.05: 3.0, INF: 3.0}
    merged = merge_histograms([first, second])
    assert merged == [(0.01, 1.0), (0.02, 4.0), (0.05, 5.0), (INF, 6.0)]
    assert observations(merged) == 6.0
    assert histogram_quantile(0.5, merged) == pytest.approx(0.01 + 0.01 * (3 - 1) / 3)


def test_a_page_without_the_histogram_gives_no_buckets() -> None:
    assert parse_histogram("# nothing here\n", "orders_end_to_end_latency_seconds") == {}
    assert observations(merge_histograms([{}])) == 0.0


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("", tuple(PHASES)),
        ("e2e,ceiling", ("ceiling", "e2e")),  # run order, not the order given
        ("latency_half", ("e2e", "latency_half")),  # half load needs the full rate first
        (" bridge , baseline ", ("bridge", "baseline")),
    ],
)
def test_phases_resolve_in_run_order_with_prerequisites(only: str, expected: tuple[str, ...]) -> None:
    assert resolve_phases(only) == expected


def test_unknown_phases_are_refused() -> None:
    with pytest.raises(click.BadParameter, match="nonsense"):
        resolve_phases("e2e,nonsense")


# -- reports --------------------------------------------------------------------------------------


def _results(**medians: float) -> dict:  # type: ignore[type-arg]
    figures = {key: Summary.of([value * 0.9, value, value * 1.1]) for key, value in medians.items()}
    parameters = {"orders": 20000, "repeat": 3, "workers": 2, "baseline_seconds": 20.0}
    machine = {
        "cpu": "Test CPU", "cores": 2, "python": "3.11.7", "packages": {"celery": "5.7.0"},
        "redis_server": {"version": "7.0.15", "aof": True, "appendfsync": "everysec"}, "broker": "Tansu",
    }  # fmt: skip
    return build_results(
        parameters, figures, machine, "orders bench", "2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z"
    )


FULL = {
    "ceiling": 3000.0, "ceiling_stock": 2500.0, "e2e": 2700.0, "e2e_fail10": 2400.0, "bridge": 9000.0,
    "baseline": 8.0, "latency_half_p99": 40.0, "scaling_1": 1500.0, "scaling_2": 2700.0, "scaling_4": 2600.0,
}  # fmt: skip


def test_results_carry_ratios_of_medians_and_targets() -> None:
    results = _results(**FULL)
    assert json.loads(json.dumps(results)) == results  # plain JSON
    assert results["figures"]["ceiling"]["label"] == "ceiling: no-op drain, 2 solo workers"
    assert results["figures"]["e2e"]["runs"] == pytest.approx([2430.0, 2700.0, 2970.0])
    assert results["ratios"]["e2e_over_ceiling"]["value"] == pytest.approx(0.9)
    assert results["ratios"]["bridge_over_e2e"]["value"] == pytest.approx(9000 / 2700)
    assert results["ratios"]["e2e_fail10_over_baseline"]["value"] == pytest.approx(300.0)
    verdicts = {t["key"]: t["met"] for t in results["targets"]}
    assert verdicts == {
        "e2e_over_ceiling": True,  # 0.90 >= 0.85
        "e2e_fail10_over_ceiling": True,  # 0.80 >= 0.75
        "e2e_over_ceiling_stock": True,  # 1.08 >= 1
        "bridge_over_e2e": True,  # 3.3 >= 2.5
        "latency_half_p99": True,  # 40 <= 50
        "e2e_fail10_over_baseline": True,  # 300 >= 100
    }


def test_a_missed_target_and_missing_figures() -> None:
    results = _results(ceiling=3000.0, e2e=2000.0)
    assert set(results["ratios"]) == {"e2e_over_ceiling"}
    assert results["targets"] == [
        {"key": "e2e_over_ceiling", "label": "e2e / ceiling, 0% failures", "measured": pytest.approx(2 / 3),
         "target": ">= 0.85", "met": False}
    ]  # fmt: skip


def test_markdown_has_the_table_targets_machine_command_plot_and_limits_placeholder() -> None:
    text = markdown(_results(**FULL), "bench-scaling.png")
    assert "| e2e, 0% failures | 2,700 | 2,430 | 2,970 | orders/s |" in text
    assert "| latency p99, half the e2e rate | 40.0 | 36.0 | 44.0 | ms |" in text
    assert "| e2e / ceiling, 0% failures | 0.90 | >= 0.85 | yes |" in text
    assert "| e2e (10% failures) / baseline | 300 | >= 100 | yes |" in text
    assert "```sh\norders bench\n```" in text
    assert "| CPU | Test CPU, 2 cores, None GiB |" in text
    assert "| Redis | 7.0.15, AOF appendfsync everysec |" in text
    assert "![e2e throughput vs worker processes](bench-scaling.png)" in text
    assert "bucket-interpolated" in text
    assert text.rstrip().endswith("-->")  # the limits section is a placeholder, last
    assert "## What limits the pipeline" in text


def test_a_written_limits_section_survives_a_new_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write_report(_results(**FULL), report)
    assert (tmp_path / "bench-scaling.png").read_bytes().startswith(b"\x89PNG")
    written = report.read_text().replace(
        "<!-- to be written from a profile of a full-size run (py-spy or pyinstrument) -->",
        "The workers' CPU: 40% kombu, 20% the Lua script.",
    )
    report.write_text(written)
    assert kept_limits_section(written) == (
        "## What limits the pipeline\n\nThe workers' CPU: 40% kombu, 20% the Lua script.\n"
    )
    write_report(_results(**FULL), report)
    assert "The workers' CPU: 40% kombu, 20% the Lua script." in report.read_text()


def test_no_plot_without_scaling_figures(tmp_path: Path) -> None:
    assert write_report(_results(ceiling=3000.0, e2e=2000.0), tmp_path / "b.md") is None
    assert not (tmp_path / "bench-scaling.png").exists()
    assert "## Scaling" not in (tmp_path / "b.md").read_text()


def test_table_lists_every_figure_and_verdict() -> None:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table(_results(**FULL)))
    text = console.export_text()
    assert "bridge alone, no worker" in text and "9,000" in text
    assert "e2e / ceiling, 0% failures" in text and "0.90" in text and ">= 0.85" in text
    assert "<= 50 ms" in text
    assert text.count("│ yes │") == 6  # every target met
