"""A test network: nodes in network namespaces of their own, on a Linux bridge the suite creates.

Why: on loopback a dead peer answers with a reset, so a client learns of it at once. Production's
quiet faults, a link that drops packets so connections hang until a timeout, need a network in between.

Layout. A :class:`TestNetwork` is one bridge in the root namespace with a private /24 (10.213.x.0/24, or
172.29.x.0/24 if those are taken), chosen under a lock so that no route or address on this machine
overlaps it. The bridge holds .1: the test process and everything it starts outside a node (the "host",
:attr:`TestNetwork.host`) reach every node through it. A node (:meth:`TestNetwork.add_node`) is a
namespace with loopback and one veth end (``eth0``, .2, .3, ...); the other end is a bridge port. Nodes
get no default route and the host does not forward, so traffic stays on loopback and on the bridge.

Processes. ``Service(name, [*node.prefix, *argv], log_dir)`` (orders/stack/supervisor.py) runs argv in
the node: ``ip netns exec`` replaces itself with the program, so the pid, signals (``kill``, ``pause``,
``resume``, ``stop``) and the log are the program's, as on loopback.

Faults, every one silent (packets dropped, nothing refused or reset):
- :meth:`isolate` / :meth:`heal`: the node's bridge port goes down / up; the node keeps its address and
  routes, so its own sends vanish too instead of failing with "network unreachable".
- :meth:`cut` / :meth:`restore`: one pair only, by nftables DROP rules inside the namespaces (a set per
  node, so rules come and go with the namespace). Between two nodes each drops what comes from the other;
  towards :attr:`host` the node drops both ways (its own sends to the host then fail locally inside TCP,
  which retransmits: still silent to both programs). Cutting "a client from one server" means the client
  runs in a node of its own; every process on the host shares the bridge's address.
- :meth:`heal_all`: every port up, every cut restored.

Names. Namespaces ``orderst-<pid>-<xdist worker>-<n>-<node>``, links ``ot<pid>b<n>`` (the bridge) and
``ot<pid>v<n>n<i>`` (the host end of node i's veth; interface names have 15 characters). The owner's pid
makes names unique per process, so xdist workers and two people's runs on one machine never collide, and
lets :func:`remove_stale` delete, at each start, only what a dead process of ours left behind.

Cleanup: fixtures call :meth:`remove`; an atexit hook and a SIGTERM handler remove what is left; a
SIGKILLed run's leftovers go at the next start. Every command is bounded in time.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nftables (`bash .ci/setup` installs both);
without them :class:`NetworkUnavailable` says so, and the fixtures fail the test with it, never skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass

from orders.stack.redis_ha import Host
from tests.harness.netns_host import (
    HOW_TO_FIX,
    NETNS_PREFIX,
    NetworkError,
    NetworkUnavailable,
    allocation_lock,
    free_subnet,
    in_netns,
    remove_netns,
    remove_stale,
    run,
)

__all__ = ["NetworkError", "NetworkUnavailable", "Node", "TestNetwork", "remove_stale", "run"]

log = logging.getLogger(__name__)

CUT_TABLE = """table inet orders_cut {
    set drop_from { type ipv4_addr; }
    set drop_to { type ipv4_addr; }
    chain input { type filter hook input priority filter; policy accept; ip saddr @drop_from drop; }
    chain output { type filter hook output priority filter; policy accept; ip daddr @drop_to drop; }
}
"""


@dataclass(frozen=True)
class Node:
    """One namespace on the bridge; ``netns`` is None for the host (the root namespace)."""

    name: str
    address: str
    netns: str | None = None
    port_link: str | None = None  # the veth end on the bridge

    @property
    def prefix(self) -> tuple[str, ...]:
        """The argv prefix that runs a program in this node."""
        return ("ip", "netns", "exec", self.netns) if self.netns else ()

    def host(self) -> Host:
        """Where a Redis launcher (orders/stack/redis_ha.py) puts a server on this node."""
        return Host(self.address, self.prefix, dedicated=self.netns is not None)


class TestNetwork:
    """A bridge and its nodes; see the module docstring."""

    __test__ = False  # a harness class, not a test for pytest to collect
    _counter = itertools.count()

    def __init__(self, tag: str, bridge: str, subnet: ipaddress.IPv4Network) -> None:
        self.tag, self.bridge, self.subnet = tag, bridge, subnet
        self.index = int(bridge.rsplit("b", 1)[1])
        self._addresses = subnet.hosts()
        self.host = Node("host", str(next(self._addresses)))
        self.nodes: dict[str, Node] = {}
        self._isolated: set[str] = set()
        self._with_cuts: set[str] = set()  # namespaces whose drop sets may hold addresses
        self._link_numbers = itertools.count()  # never reused: a removed node's veth may linger a moment

    @classmethod
    def create(cls, tag: str) -> TestNetwork:
        """Remove stale leftovers, then make a bridge on a free subnet; NetworkUnavailable if we cannot."""
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise NetworkUnavailable(f"`{tool}` is not on PATH. {HOW_TO_FIX}")
        remove_stale()
        bridge = f"ot{os.getpid()}b{next(cls._counter)}"
        with allocation_lock():
            subnet = free_subnet()
            try:
                run("ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0")
            except NetworkError as exc:
                raise NetworkUnavailable(f"{exc}. {HOW_TO_FIX}") from exc
            network = cls(tag, bridge, subnet)
            _LIVE.add(network)
            run("ip", "addr", "add", f"{network.host.address}/{subnet.prefixlen}", "dev", bridge)
            run("ip", "link", "set", bridge, "up")
        _install_exit_hooks()
        log.info("test network %s on %s (host %s)", bridge, subnet, network.host.address)
        return network

    def add_node(self, name: str) -> Node:
        """A new namespace with its address on the bridge and an empty set of cuts."""
        if name in self.nodes:
            raise ValueError(f"node {name} exists")
        netns = f"{NETNS_PREFIX}-{os.getpid()}-{self.tag}-{self.index}-{name}"
        link = f"ot{os.getpid()}v{self.index}n{next(self._link_numbers)}"
        if len(link) > 15:
            raise ValueError(f"interface name {link} is longer than Linux allows (15)")
        node = Node(name, str(next(self._addresses)), netns, link)
        try:
            run("ip", "netns", "add", netns)
        except NetworkError as exc:
            raise NetworkUnavailable(f"{exc}. {HOW_TO_FIX}") from exc
        self.nodes[name] = node
        run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "link", "set", link, "master", self.bridge, "up")
        run("ip", "-n", netns, "addr", "add", f"{node.address}/{self.subnet.prefixlen}", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        in_netns(netns, "nft", "-f", "-", stdin=CUT_TABLE)
        return node

    def node_at(self, address: str) -> Node:
        """The node with ``address`` (e.g. a Redis node's ``host.address``); KeyError if none."""
        for node in [self.host, *self.nodes.values()]:
            if node.address == address:
                return node
        raise KeyError(f"no node at {address} on {self.bridge}")

    def remove_node(self, node: Node) -> None:
        """Delete the namespace and its veth; a process still inside is SIGKILLed first."""
        self.nodes.pop(node.name, None)
        self._isolated.discard(node.name)
        self._with_cuts.discard(node.netns or "")
        if node.netns is not None:
            remove_netns(node.netns)
        if node.port_link is not None:
            with contextlib.suppress(NetworkError):  # gone with the namespace, usually
                run("ip", "link", "del", node.port_link)

    def isolate(self, node: Node) -> None:
        """Cut ``node`` from everyone, silently: its bridge port goes down."""
        assert node.port_link is not None, "the host cannot be isolated"
        run("ip", "link", "set", node.port_link, "down")
        self._isolated.add(node.name)

    def heal(self, node: Node, timeout: float = 5.0) -> None:
        """Undo :meth:`isolate`: the port comes up and forwards again (bounded wait)."""
        assert node.port_link is not None
        run("ip", "link", "set", node.port_link, "up")
        deadline = time.monotonic() + timeout
        while _operstate(node.port_link) != "UP":
            if time.monotonic() > deadline:
                raise NetworkError(f"{node.port_link} not up {timeout:.0f}s after heal")
            time.sleep(0.02)
        self._isolated.discard(node.name)

    def cut(self, a: Node, b: Node) -> None:
        """Drop every packet between ``a`` and ``b`` (one may be :attr:`host`); other pairs keep talking."""
        self._edit_cut("add", a, b)

    def restore(self, a: Node, b: Node) -> None:
        """Undo :meth:`cut` for this pair."""
        self._edit_cut("delete", a, b)

    def _edit_cut(self, verb: str, a: Node, b: Node) -> None:
        if a.netns is None:
            a, b = b, a
        if a.netns is None:
            raise ValueError("cut needs at least one node that is not the host")
        self._with_cuts.update(name for name in (a.netns, b.netns) if name is not None)
        _set_element(verb, a.netns, "drop_from", b.address)
        if b.netns is None:
            _set_element(verb, a.netns, "drop_to", b.address)
        else:
            _set_element(verb, b.netns, "drop_from", a.address)

    def heal_all(self) -> None:
        """Every node back on the bridge, every cut restored: what a test may leave, undone."""
        for name in list(self._isolated):
            self.heal(self.nodes[name])
        for netns in list(self._with_cuts):
            flush = "flush set inet orders_cut drop_from\nflush set inet orders_cut drop_to\n"
            in_netns(netns, "nft", "-f", "-", stdin=flush)
            self._with_cuts.discard(netns)

    def remove(self) -> None:
        """Delete every node and the bridge (idempotent)."""
        for node in list(self.nodes.values()):
            self.remove_node(node)
        with contextlib.suppress(NetworkError):
            run("ip", "link", "del", self.bridge)
        _LIVE.discard(self)


def _set_element(verb: str, netns: str, table_set: str, address: str) -> None:
    in_netns(netns, "nft", verb, "element", "inet", "orders_cut", table_set, f"{{ {address} }}")


def _operstate(link: str) -> str:
    return str(json.loads(run("ip", "-j", "link", "show", "dev", link))[0].get("operstate", ""))


_LIVE: set[TestNetwork] = set()
_hooks_installed = False


def _remove_live() -> None:
    for network in list(_LIVE):
        with contextlib.suppress(Exception):  # at exit: remove what we can, remove_stale does the rest
            network.remove()


def _on_sigterm(signum: int, frame: object) -> None:
    _remove_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    """atexit, and SIGTERM (which skips atexit) unless someone else already handles it."""
    global _hooks_installed
    if _hooks_installed:
        return
    atexit.register(_remove_live)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # not the main thread: atexit and remove_stale remain
            signal.signal(signal.SIGTERM, _on_sigterm)
    _hooks_installed = True
