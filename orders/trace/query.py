"""Reading traces back from Zipkin's public API (``/api/v2``): an order's traces by its ``orderId`` tag.

Zipkin's JSON v2 span: ``traceId``, ``id``, ``parentId``, ``name``, ``kind`` (absent for an internal
span), ``timestamp`` and ``duration`` in microseconds, ``localEndpoint.serviceName``, ``tags`` (our
attributes, as strings). Links are not a Zipkin concept: the exporter leaves them out, so a replay's
span also carries the dead-lettered trace's id as the tag ``orders.link.trace_id``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

# Zipkin searches this far back (ms): a week, its UI's longest preset.
LOOKBACK_MS = 7 * 24 * 3600 * 1000
TIMEOUT = 10.0


class TraceQueryError(Exception):
    """The trace backend could not be reached or answered with an error."""


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # PRODUCER, CONSUMER, CLIENT, SERVER or "" (internal)
    service: str
    start_us: int
    duration_us: int
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us

    @classmethod
    def from_zipkin(cls, raw: dict[str, Any]) -> Span:
        return cls(
            trace_id=raw["traceId"],
            span_id=raw["id"],
            parent_id=raw.get("parentId"),
            name=raw.get("name", ""),
            kind=raw.get("kind", ""),
            service=(raw.get("localEndpoint") or {}).get("serviceName", ""),
            start_us=int(raw.get("timestamp", 0)),
            duration_us=int(raw.get("duration", 0)),
            tags=dict(raw.get("tags") or {}),
        )


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        raise TraceQueryError(f"{url}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
    except (OSError, ValueError) as exc:
        raise TraceQueryError(f"{url}: {exc}") from exc


def traces_of_order(base_url: str, order_id: str, limit: int = 20) -> list[list[Span]]:
    """Every trace with a span tagged ``orderId=<order_id>``, oldest first; [] when none (not sampled,
    not exported yet, or aged out of the backend)."""
    query = urllib.parse.urlencode(
        {"annotationQuery": f"orderId={order_id}", "lookback": LOOKBACK_MS, "limit": limit}
    )
    traces = [[Span.from_zipkin(s) for s in raw] for raw in _get(f"{base_url}/api/v2/traces?{query}")]
    return sorted((t for t in traces if t), key=lambda t: min(s.start_us for s in t))


def trace(base_url: str, trace_id: str) -> list[Span]:
    """One trace's spans; [] if the backend does not have it."""
    try:
        return [Span.from_zipkin(s) for s in _get(f"{base_url}/api/v2/trace/{trace_id}")]
    except TraceQueryError as exc:
        if "HTTP 404" in str(exc):
            return []
        raise
