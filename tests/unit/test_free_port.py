"""free_port() hands out ports an outgoing connection cannot take first (CI run 6's Redis Cluster flake)."""

import socket

from orders.stack import supervisor


def test_ports_come_from_below_the_ephemeral_range_and_bind():
    low = supervisor._ephemeral_low()
    for _ in range(20):
        port = supervisor.free_port()
        assert supervisor.PORT_FLOOR <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_not_handed_out(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        draws = iter([busy, busy, busy + 1])
        monkeypatch.setattr(supervisor, "PORT_FLOOR", 1024)
        monkeypatch.setattr(supervisor, "_ephemeral_low", lambda: 65535)
        monkeypatch.setattr(supervisor.random, "randrange", lambda _a, _b: next(draws))
        assert supervisor.free_port() != busy
