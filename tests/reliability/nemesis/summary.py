"""The nemesis run written up in Markdown: seed, faults by kind, recovery by kind, every fault with its
times, and the checker's verdict (saved beside the history; the long run's copy lives in docs/)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.checker.verdict import Verdict
from tests.reliability.nemesis.run import Injected, recovery_by_kind
from tests.reliability.nemesis.schedule import Timing, counts_by_kind


def render(seed: int, timing: Timing, rate: int, injected: Sequence[Injected], verdict: Verdict) -> str:
    timeline = verdict.timeline
    lines = [
        f"# Nemesis run, seed {seed}",
        "",
        f"{len(injected)} faults over {timing.seconds:.0f} s at {rate} orders/s (a fault every "
        f"{timing.gap[0]:.0f}-{timing.gap[1]:.0f} s, lasting {timing.duration[0]:.0f}-"
        f"{timing.duration[1]:.0f} s, at most two at once, never two in one group).",
        "",
        f"Checker: {verdict.summary()}; problems: {'; '.join(verdict.problems()) or 'none'}.",
        "",
        "| fault | count |",
        "| --- | --- |",
        *(f"| {kind} | {n} |" for kind, n in counts_by_kind([i.fault for i in injected]).items()),
        "",
        "| kind | longest from a heal to orders flowing (s) | worst wait of an order in flight (s) |",
        "| --- | --- | --- |",
        *(f"| {k} | {a:.1f} | {w:.1f} |" for k, (a, w) in recovery_by_kind(injected, timeline).items()),
        "",
        "| began (s) | wall (UTC) | fault | lasted (s) | flowing after the heal (s) | worst wait (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for item in injected:
        after, worst = item.after_heal(timeline), item.worst(timeline)
        lines.append(
            f"| {item.began.at:.1f} | {item.began.wall} | {item.fault.label()} | "
            f"{item.healed.at - item.began.at:.1f} | {_seconds(after)} | {_seconds(worst)} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
