"""`orders up`'s ports: the ecosystem's own when free, a free one (with a note) when taken by default."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orders.core.settings import Settings
from orders.stack.stack import Stack, StackError, StackOptions, _port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def stack(**options: object) -> Stack:
    return Stack(StackOptions(**options), Settings.from_env({}, env_file=None), Path("/nonexistent"))  # type: ignore[arg-type]


def test_the_defaults_are_the_ecosystems_ports() -> None:
    opts = StackOptions()
    ports = (opts.kafka_port, opts.redis_port, opts.registry_port, opts.flower_port, opts.dashboard_port)
    assert ports == (9092, 6379, 8081, 5555, 8050)
    assert opts.metrics_port == 9100


def test_a_free_port_is_used_as_asked() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    s = stack()
    assert _port(s, "redis", free, "redis") == free
    assert s.notes == []


def test_a_taken_default_port_falls_back_to_a_free_one_with_a_note(taken: int) -> None:
    s = stack()
    port = _port(s, "redis", taken, "redis")
    assert port != taken and port > 0
    assert s.notes == [f"port {taken} is in use: redis listens on {port} instead (--redis-port to choose)"]


def test_a_taken_port_the_user_asked_for_stops_start_up(taken: int) -> None:
    s = stack(explicit_ports=frozenset({"redis"}))
    with pytest.raises(StackError, match=f"port {taken} \\(--redis-port\\) is in use"):
        _port(s, "redis", taken, "redis")
    # a worker's metrics port follows --metrics-port and falls back like a default one
    assert _port(s, "worker1 /metrics", taken, None) != taken


def test_zero_means_any_free_port() -> None:
    s = stack()
    assert _port(s, "redis", 0, "redis") > 0 and s.notes == []
