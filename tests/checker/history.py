"""A run's history: every fault a test injected and every recovery it saw, with wall and run times."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the run began (monotonic)
    wall: str  # UTC, to match the processes' logs
    unix: float  # the same moment as Unix time, to compare with record timestamps
    kind: str  # kill, pause, resume, isolate, heal, cut, restore, restart, observed, ...
    target: str
    note: str = ""


@dataclass
class History:
    name: str
    seed: int | None = None
    events: list[Event] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic, repr=False)

    def record(self, kind: str, target: str, note: str = "") -> Event:
        now = time.time()
        wall = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        event = Event(round(time.monotonic() - self._started, 3), wall, now, kind, target, note)
        self.events.append(event)
        return event

    def log_time(self, event: Event) -> str:
        """``event``'s moment as our processes' log lines show it (:func:`log_time`)."""
        return log_time(event.unix)

    def since(self, event: Event) -> float:
        """Seconds from ``event`` until now."""
        return time.monotonic() - self._started - event.at

    def lines(self) -> list[str]:
        return [f"{e.at:8.2f}s {e.wall} {e.kind:9} {e.target} {e.note}".rstrip() for e in self.events]

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "history.json"
        events = [asdict(e) for e in self.events]
        path.write_text(json.dumps({"name": self.name, "seed": self.seed, "events": events}, indent=2))
        return path


def log_time(unix: float) -> str:
    """A moment as logging's asctime (ours and Celery's) shows it: local time, then ``,`` milliseconds."""
    millis = int(unix * 1000) % 1000
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) + f",{millis:03d}"
