"""The bench's replicated Redis: what the aggregate's per-task WAIT costs, measured on a Sentinel set.

The aggregate on a Sentinel set on loopback (a primary, two replicas, three Sentinels; the shipped
``min-replicas-to-write`` 1 and ``-max-lag`` 10), Celery's broker on the rig's own Redis: two primaries,
the layout where the wait applies (orders/core/replication.py). The same paced run twice, in the same
bench: without the wait (REDIS_WAIT_REPLICAS=0) and with the default (1: each task's script and
``WAIT 1`` in one round trip). CPU per order (workers, both Redis) and p99 latency side by side.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from orders.stack.redis_ha import LOOPBACK
from orders.stack.redis_sentinel import SentinelSet

# Shipped in docker-compose.ha.yml: a primary refuses writes after 10 s without a replica.
MIN_REPLICAS = (1, 10)
# The paced rate when the bench measured no drain to halve (orders per second).
DEFAULT_RATE = 200.0
RUNS = {"wait_off": "0", "wait_on": "1"}  # figure key -> REDIS_WAIT_REPLICAS


def start_sentinel_set(log_dir: Path) -> SentinelSet:
    """Started from the calling thread (a child dies with the thread that started it)."""
    sentinels = SentinelSet(
        log_dir, (LOOPBACK,) * 3, tag="bench-sentinel", password=secrets.token_hex(12),
        sentinel_password=secrets.token_hex(12), min_replicas=MIN_REPLICAS,
    )  # fmt: skip
    try:
        return sentinels.start()
    except BaseException:
        sentinels.stop()
        raise
