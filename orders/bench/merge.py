"""`orders bench --merge PATH`: re-measure some phases and keep the rest of an earlier run's results.

A full run takes most of an hour; a phase added or fixed later should not need another. The phases
this run measured replace the same keys (figures, CPU per order, Redis command times, ratios) in the
results at PATH; everything else is kept, targets are evaluated again, and ``amendments`` records which
command measured which phases when, so the reports can say so. A ratio keeps the run that measured both
its sides: a ratio whose sides came from two runs is never computed (they ran under different load).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orders.bench.results import evaluate_targets

SECTIONS = ("figures", "cost", "redis_commands", "ratios")


def merge_results(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s measured keys in place of its own; ``update``'s run in ``amendments``."""
    merged = dict(base)
    for section in SECTIONS:
        merged[section] = {**base.get(section, {}), **update.get(section, {})}
    amendment = {
        "command": update["command"],
        "started": update["started"],
        "finished": update["finished"],
        "phases": list(update["parameters"].get("phases", [])),
        "load": update["machine"].get("load"),
    }
    merged["amendments"] = [*base.get("amendments", []), amendment]
    merged["targets"] = evaluate_targets(merged["figures"], merged["ratios"])
    return merged


def amendment_lines(results: Mapping[str, Any]) -> list[str]:
    """Markdown lines naming the phases re-measured after the main run, then a blank line (none for a
    single run)."""
    lines = [
        f"Phases {', '.join(a['phases'])} were measured again by `{a['command']}` from {a['started']} to "
        f"{a['finished']}; their figures replace the main run's."
        for a in results.get("amendments", [])
    ]
    return [*lines, ""] if lines else []
