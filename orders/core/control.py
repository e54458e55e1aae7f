"""Runtime controls kept in Redis, so a dashboard can steer every worker at once (failure rate)."""

from __future__ import annotations

import time

from orders.core.redis_client import AnyRedis

CONTROL_KEY = "{orders}:control"
FAILURE_RATE_FIELD = "failure_rate"


def set_failure_rate(client: AnyRedis, rate: float | None) -> None:
    """Override FAILURE_RATE on every worker; None goes back to each worker's own setting."""
    if rate is None:
        client.hdel(CONTROL_KEY, FAILURE_RATE_FIELD)
    elif not 0.0 <= rate <= 1.0:
        raise ValueError(f"failure rate must be between 0 and 1, got {rate}")
    else:
        client.hset(CONTROL_KEY, FAILURE_RATE_FIELD, repr(rate))


def get_failure_rate(client: AnyRedis) -> float | None:
    raw = client.hget(CONTROL_KEY, FAILURE_RATE_FIELD)
    return float(raw) if raw is not None else None


class FailureRateOverride:
    """The override as a worker sees it: read at most once per ``refresh`` seconds, not per order."""

    def __init__(self, client: AnyRedis, refresh: float = 1.0) -> None:
        self._client = client
        self._refresh = refresh
        self._value: float | None = None
        self._read_at = float("-inf")

    def current(self) -> float | None:
        now = time.monotonic()
        if now - self._read_at >= self._refresh:
            self._value, self._read_at = get_failure_rate(self._client), now
        return self._value
