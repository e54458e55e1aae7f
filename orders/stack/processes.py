"""Starting the pipeline's own processes (Celery workers, bridges) and knowing when they are ready.

A worker or bridge is ready when its /healthz answers 200 on its METRICS_PORT: a worker serves it
from Celery's worker_ready signal (it consumes by then), a bridge once its consumer joined the group.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from orders.stack.supervisor import Service, free_port

PYTHON = sys.executable
# Tasks Flower keeps in memory. Its default, 100,000, costs it ~6 KB each (it grew from 90 MB to 774 MB
# over 115,000 tasks at 400 orders/s); 10,000 holds it near 150 MB and still covers minutes of history.
FLOWER_MAX_TASKS = 10_000


def healthz_ready(port: int, host: str = "127.0.0.1") -> bool:
    """True once ``http://host:port/healthz`` answers 200 (503 while not ready, refused before)."""
    return healthz(port, host=host)[0] == 200


def healthz(port: int, timeout: float = 3.0, host: str = "127.0.0.1") -> tuple[int | None, dict[str, Any]]:
    """``/healthz``'s status and JSON body; (None, {}) while nothing answers.

    503 says what the process waits for (its Redis, its consumer group); the Redis check takes up to
    ~2 s while a Redis does not answer, hence the timeout.
    """
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None, {}


def worker_argv(name: str, *extra: str, pool: str = "solo", loglevel: str = "INFO") -> list[str]:
    """`celery -A worker worker` with a node name of its own (``name@host``)."""
    return [PYTHON, "-m", "celery", "-A", "worker", "worker", f"--pool={pool}", f"--loglevel={loglevel}",
            "-n", f"{name}@%h", "--without-gossip", *extra]  # fmt: skip


def flower_argv(port: int, max_tasks: int = FLOWER_MAX_TASKS, host: str = "127.0.0.1") -> list[str]:
    """`celery -A worker flower` on ``host:port``, keeping at most ``max_tasks`` tasks in memory."""
    return [PYTHON, "-m", "celery", "-A", "worker", "flower", f"--port={port}", f"--address={host}",
            f"--max_tasks={max_tasks}"]  # fmt: skip


def bridge_argv() -> list[str]:
    return [PYTHON, "-m", "orders.cli", "bridge"]


def pipeline_service(
    name: str, argv: list[str], log_dir: Path, env: dict[str, str], cwd: Path | None = None
) -> tuple[Service, int]:
    """A worker or bridge process on a free METRICS_PORT (unless ``env`` names one); not started yet."""
    port = int(env.get("METRICS_PORT") or 0) or free_port()
    return Service(name, argv, log_dir, {**env, "METRICS_PORT": str(port)}, cwd), port
