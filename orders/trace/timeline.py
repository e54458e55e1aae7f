"""One trace as a timeline: each hop in start order, indented under its parent, with the waits between
an order's attempts (the retry backoff) shown as rows of their own."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from orders.trace.query import Span

ATTEMPT_TASK = "orders.process_order"


@dataclass(frozen=True)
class Row:
    at_ms: float  # from the trace's first span
    duration_ms: float | None  # None for a wait row
    depth: int
    service: str
    what: str
    detail: str
    error: bool = False


def depth_of(span: Span, by_id: dict[str, Span]) -> int:
    depth, seen = 0, set()
    while span.parent_id in by_id and span.parent_id not in seen:
        seen.add(span.parent_id)
        span = by_id[span.parent_id]
        depth += 1
    return depth


def describe(span: Span) -> str:
    """What a person wants to know about a hop, from its tags."""
    tags = span.tags
    parts = []
    if "orders.attempt" in tags:
        parts.append(f"attempt {tags['orders.attempt']}")
    if "celery.hostname" in tags:
        parts.append(f"on {tags['celery.hostname']}")
    if "messaging.kafka.offset" in tags:
        topic = tags.get("messaging.destination.name", "")
        partition = tags.get("messaging.destination.partition.id", "")
        parts.append(f"{topic}[{partition}]@{tags['messaging.kafka.offset']}")
    if "orders.outcome" in tags:
        outcome = tags["orders.outcome"]
        countdown = tags.get("orders.retry.countdown_s")
        parts.append(f"{outcome} (countdown {countdown} s)" if countdown else outcome)
    if "orders.replayed.from" in tags:
        parts.append(f"replay of {tags['orders.replayed.from']}")
    if "orders.link.trace_id" in tags:
        parts.append(f"links to trace {tags['orders.link.trace_id']}")
    if "orders.dlq.stage" in tags:
        parts.append(f"stage {tags['orders.dlq.stage']}")
    if "error" in tags:
        parts.append(f"error: {tags['error']}"[:120])
    return ", ".join(parts)


def timeline(spans: Sequence[Span]) -> list[Row]:
    """The rows of one trace, in start order, with a wait row before each attempt after the first."""
    ordered = sorted(spans, key=lambda s: (s.start_us, -s.duration_us))
    if not ordered:
        return []
    start = ordered[0].start_us
    by_id = {s.span_id: s for s in ordered}
    rows: list[Row] = []
    last_attempt: Span | None = None
    for span in ordered:
        depth = depth_of(span, by_id)
        if span.name == ATTEMPT_TASK:
            if last_attempt is not None:
                wait = (span.start_us - last_attempt.end_us) / 1000
                rows.append(
                    Row((last_attempt.end_us - start) / 1000, None, depth, "", "wait", f"{wait / 1000:.2f} s")
                )
            last_attempt = span
        what = f"{span.name} ({span.kind.lower()})" if span.kind else span.name
        error = "error" in span.tags
        rows.append(
            Row(
                (span.start_us - start) / 1000,
                span.duration_us / 1000,
                depth,
                span.service,
                what,
                describe(span),
                error,
            )
        )
    return rows


def attempt_gaps_s(spans: Sequence[Span]) -> list[float]:
    """Seconds between the end of each attempt and the start of the next (the backoff waited)."""
    attempts = sorted((s for s in spans if s.name == ATTEMPT_TASK), key=lambda s: s.start_us)
    return [(b.start_us - a.end_us) / 1e6 for a, b in itertools.pairwise(attempts)]
