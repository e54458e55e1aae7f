"""The test network itself: partitions drop packets silently, a cut blocks one pair only, leftovers go.

A refused connection is what a dead peer on loopback looks like; a partition must look different: a
connect or a read that hangs until the caller's timeout. Every probe here has a 1 s bound.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orders.stack.supervisor import Service, port_open
from tests.harness.netns import Node, TestNetwork, remove_stale, run
from tests.harness.services import REPO_ROOT

PORT, CLOSED_PORT = 7000, 7001
PROBE_TIMEOUT = 1.0
ECHO = """
import socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(4096):
            self.request.sendall(data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""


@pytest.fixture
def echo_node(net_node: Callable[[str], Node], service_logs: Path) -> Iterator[Callable[[str], Node]]:
    """Nodes with an echo server on PORT."""
    servers: list[Service] = []

    def make(name: str) -> Node:
        node = net_node(name)
        argv = [*node.prefix, sys.executable, "-c", ECHO, node.address, str(PORT)]
        servers.append(Service(f"echo-{node.netns}", argv, service_logs))
        servers[-1].start(lambda: port_open(PORT, node.address), timeout=10)
        return node

    yield make
    for server in servers:
        server.stop(grace=2)


def probes(*checks: tuple[Node, Node, int]) -> list[str]:
    """Connect from each (source, target, port) at once: "connected", "timeout" or "refused"."""
    started = [
        subprocess.Popen(
            [
                *source.prefix,
                sys.executable,
                "-I",
                "-c",
                PROBE,
                target.address,
                str(port),
                str(PROBE_TIMEOUT),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for source, target, port in checks
    ]
    return [probe.communicate(timeout=10)[0].strip() for probe in started]


def test_an_isolated_node_drops_packets_silently_until_healed(
    test_network: TestNetwork, echo_node: Callable[[str], Node]
) -> None:
    host, node, peer = test_network.host, echo_node("iso"), echo_node("peer")
    conn = socket.create_connection((node.address, PORT), timeout=2)
    conn.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    # what a dead port looks like without a partition: refused at once
    assert probes((host, node, CLOSED_PORT)) == ["refused"]

    test_network.isolate(node)
    try:
        # in and out: the node's own sends vanish too, with no "network unreachable"
        assert probes((host, node, PORT), (host, node, CLOSED_PORT), (node, peer, PORT)) == ["timeout"] * 3
        assert probes((host, peer, PORT)) == ["connected"]
        conn.settimeout(PROBE_TIMEOUT)
        conn.sendall(b"pong")  # accepted into the send buffer: nothing tells the sender
        with pytest.raises(TimeoutError):
            conn.recv(4)
    finally:
        test_network.heal(node)

    assert probes((host, node, PORT)) == ["connected"]
    conn.settimeout(10)
    assert conn.recv(4) == b"pong"  # TCP retransmitted it: the connection lived through the partition
    conn.close()


def test_a_cut_blocks_that_pair_only(test_network: TestNetwork, echo_node: Callable[[str], Node]) -> None:
    host = test_network.host
    a, b, c = echo_node("a"), echo_node("b"), echo_node("c")

    test_network.cut(a, b)
    assert probes((a, b, PORT), (b, a, PORT), (a, b, CLOSED_PORT), (a, c, PORT), (c, b, PORT),
                  (host, a, PORT), (host, b, PORT)) == (
        ["timeout", "timeout", "timeout", "connected", "connected", "connected", "connected"]
    )  # fmt: skip
    test_network.restore(a, b)
    assert probes((a, b, PORT), (b, a, PORT)) == ["connected", "connected"]

    # a client (here every process on the host) from one server
    test_network.cut(a, host)
    assert probes((host, a, PORT), (host, b, PORT), (a, c, PORT)) == ["timeout", "connected", "connected"]
    test_network.heal_all()
    assert probes((host, a, PORT)) == ["connected"]


OWNER = """
import sys, time
from tests.harness.netns import TestNetwork
network = TestNetwork.create("leftover")
node = network.add_node("n")
print(network.bridge, node.netns, node.port_link, flush=True)
time.sleep(60)
"""


def _owner_dies(how: signal.Signals) -> list[str]:
    """A process makes a network and a node, then gets ``how``; the names it made."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        names = owner.stdout.readline().split()
        assert len(names) == 3 and _present(names) == names, names
    finally:
        owner.send_signal(how)
        owner.wait(10)
    return names


def _present(names: list[str]) -> list[str]:
    namespaces = {entry["name"] for entry in json.loads(run("ip", "-j", "netns", "list") or "[]")}
    links = {link["ifname"] for link in json.loads(run("ip", "-j", "link", "show"))}
    return [name for name in names if name in namespaces | links]


def test_sigterm_removes_the_network_and_stale_leftovers_of_a_dead_owner_go_at_start(
    test_network: TestNetwork, net_node: Callable[[str], Node]
) -> None:
    assert _present(_owner_dies(signal.SIGTERM)) == []  # its SIGTERM handler removed everything

    leftovers = _owner_dies(signal.SIGKILL)  # no handler runs
    assert _present(leftovers) == leftovers
    mine = net_node("mine")
    remove_stale()  # what every TestNetwork.create does first
    assert _present(leftovers) == []
    # a live owner's (this process's) network and nodes stay
    assert _present([test_network.bridge, mine.netns or "", mine.port_link or ""]) == [
        test_network.bridge, mine.netns, mine.port_link,
    ]  # fmt: skip
