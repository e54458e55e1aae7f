"""The bench's shards phase: each Cluster primary's share of the scripts' time, and the rows it writes."""

from __future__ import annotations

import pytest

from orders.bench.capacity import capacity_markdown
from orders.bench.report import markdown
from orders.bench.results import build_results
from orders.bench.shard_report import HEADING
from orders.bench.shards import node_figures
from orders.bench.stats import Summary


def test_each_primary_gets_its_share_of_the_script_time_and_its_command_time_per_order() -> None:
    deltas = [
        {"evalsha": (100, 3_000), "hget": (50, 500)},  # the home shard's primary: polling too
        {"evalsha": (100, 3_000)},
        {"evalsha_ro": (10, 100), "evalsha": (90, 3_900), "ping": (3, 3)},
    ]
    figures = node_figures(deltas, orders=100)
    assert [figures[f"node{i}_script_share"] for i in range(3)] == pytest.approx([30.0, 30.0, 40.0])
    assert [figures[f"node{i}_command_us"] for i in range(3)] == pytest.approx([35.0, 30.0, 40.03])


def test_one_shard_puts_all_script_time_on_one_primary_and_none_is_no_division_by_zero() -> None:
    figures = node_figures([{"evalsha": (10, 900)}, {}, {"cluster|slots": (1, 5)}], orders=10)
    assert [figures[f"node{i}_script_share"] for i in range(3)] == [100.0, 0.0, 0.0]
    assert node_figures([{}, {}, {}], orders=0)["node0_script_share"] == 0.0


def _results() -> dict:  # type: ignore[type-arg]
    runs = {"shards_1": (800.0, [100.0, 0.0, 0.0]), "shards_3": (780.0, [34.0, 31.0, 35.0])}
    figures, costs = {}, {}
    for key, (rate, shares) in runs.items():
        figures[key] = Summary.of([rate, rate * 1.1])
        for i, share in enumerate(shares):
            figures[f"{key}_node{i}_script_share"] = Summary.of([share, share])
            figures[f"{key}_node{i}_command_us"] = Summary.of([share, share])
        parts = {f"redis_shard_node_{i}": share + 1 for i, share in enumerate(shares)}
        costs[key] = {name: Summary.of([v, v]) for name, v in {**parts, "redis_shard_replicas": 20.0}.items()}
    owners = {"3": {"orders": 0, "orders.1of3.49": 1, "orders.2of3.50": 2}}
    parameters = {
        "orders": 5000,
        "repeat": 2,
        "workers": 2,
        "interleaved": [list(runs)],
        "shard_owners": owners,
    }
    return build_results(parameters, figures, {}, "orders bench --only shards", "s", "f", costs)


def test_the_shards_rows_in_benchmarks_md_and_in_the_scaling_block() -> None:
    results = _results()
    assert results["ratios"]["shards_3_over_1"]["paired"]
    assert results["ratios"]["shards_3_over_1"]["value"] == pytest.approx(780 / 800)
    for text in (markdown(results, None), capacity_markdown(results)):
        assert HEADING in text
        assert "cannot rise with shards" in text
        assert "| 0 | 100.0 (100.0-100.0) % | 34.0 (34.0-34.0) % | 100 / 34 | 101 / 35 |" in text
        assert "| 2 | 0.0 (0.0-0.0) % | 35.0 (35.0-35.0) % | 0 / 35 | 1 / 36 |" in text
        assert "| the three replicas | | | | 20 / 20 |" in text
        assert "`{orders.1of3.49}` on primary 1" in text
        assert "Drain, 3 shards / 1: 0.97 (pairs 0.97-0.97)" in text


def test_no_shards_section_when_the_phase_did_not_run() -> None:
    results = build_results({"orders": 1, "repeat": 1, "workers": 1}, {}, {}, "c", "s", "f")
    assert HEADING not in markdown(results, None)
