"""`orders bench --merge`: the phases run again replace theirs, the rest stay, the reports say which run."""

from orders.bench.capacity import capacity_markdown
from orders.bench.merge import amendment_lines, merge_results


def _figure(median: float) -> dict[str, object]:
    return {
        "label": "x",
        "unit": "orders/s",
        "median": median,
        "min": median,
        "max": median,
        "runs": [median],
    }


def _results(command: str, figures: dict[str, float], phases: list[str]) -> dict[str, object]:
    return {
        "schema": "s", "command": command, "started": "t0", "finished": "t1",
        "parameters": {"phases": phases, "orders": 10, "repeat": 1, "workers": 2},
        "machine": {"load": [0.5]}, "figures": {k: _figure(v) for k, v in figures.items()},
        "cost": {}, "redis_commands": {}, "ratios": {}, "targets": [],
    }  # fmt: skip


def test_merged_phases_replace_theirs_and_keep_the_rest():
    base = _results("orders bench", {"drain": 1000.0, "e2e": 1.0}, ["drain", "e2e"])
    update = _results("orders bench --only e2e,tracing", {"e2e": 2.0, "tracing": 3.0}, ["e2e", "tracing"])
    merged = merge_results(base, update)
    assert {k: f["median"] for k, f in merged["figures"].items()} == {"drain": 1000.0, "e2e": 2.0,
                                                                       "tracing": 3.0}  # fmt: skip
    assert merged["command"] == "orders bench"
    assert [a["command"] for a in merged["amendments"]] == ["orders bench --only e2e,tracing"]
    assert amendment_lines(merged)[0].startswith(
        "Phases e2e, tracing were measured again by `orders bench --only"
    )
    assert "measured again" in capacity_markdown(merged)


def test_a_single_run_says_nothing_of_amendments():
    assert amendment_lines(_results("orders bench", {}, ["drain"])) == []
