"""The running `orders up`'s state file: what `orders env` prints, while that stack is alive."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from orders.stack.services import private_file

if TYPE_CHECKING:
    from orders.stack.stack import Stack

STATE_FILE = Path.home() / ".cache" / "orders-pipeline" / "up.json"


def write_state(stack: Stack) -> None:
    """What `orders env` prints while this stack runs: what clients need (Redis, Kafka, the registry)."""
    exported = {k: v for k, v in stack.env.items() if k not in {"PYTHONUNBUFFERED", "METRICS_HOST"}}
    state = {
        "pid": os.getpid(),
        "env": exported,
        "urls": stack.urls,
        "logs": str(stack.log_dir),
        "children": {child.name: child.pid for child in stack.children},
    }
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    private_file(STATE_FILE, json.dumps(state, indent=2))  # it holds this run's secrets


def read_state() -> dict[str, object] | None:
    """The running stack's state, or None when no `orders up` is alive."""
    try:
        state = json.loads(STATE_FILE.read_text())
        os.kill(int(state["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError):
        return None
    return dict(state)
