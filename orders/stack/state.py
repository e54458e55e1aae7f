"""The running `orders up`'s state file: what `orders env` prints, while that stack is alive."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from orders.stack.services import private_file

STATE_FILE = Path.home() / ".cache" / "orders-pipeline" / "up.json"


def write_state(
    env: Mapping[str, str], urls: Mapping[str, str], log_dir: Path, children: Mapping[str, int]
) -> None:
    """What `orders env` prints while this stack runs: what clients need (Redis, Kafka, the registry)
    from the children's ``env``, the stack's ``urls``, and where its logs and ``children`` (pids) are."""
    exported = {k: v for k, v in env.items() if k not in {"PYTHONUNBUFFERED", "METRICS_HOST"}}
    state = {
        "pid": os.getpid(),
        "env": exported,
        "urls": dict(urls),
        "logs": str(log_dir),
        "children": dict(children),
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
