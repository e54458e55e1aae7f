"""The root namespace's side of the test network (tests/harness/netns.py): commands, names, subnets.

Everything here is bounded in time and touches only what our naming scheme made: namespaces
``orderst-<pid>-...`` and links ``ot<pid>b...`` / ``ot<pid>v...``, whose pid is the owning process.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

NETNS_PREFIX = "orderst"
STALE_NETNS = re.compile(rf"^{NETNS_PREFIX}-(\d+)-")
STALE_LINK = re.compile(r"^ot(\d+)[bv]\d+")
# Private ranges that this machine's routes do not use (eth0 is 192.0.2.0/24 here); each candidate /24
# is checked against every route and address anyway, so a machine that uses one is skipped over.
POOLS = (ipaddress.ip_network("10.213.0.0/16"), ipaddress.ip_network("172.29.0.0/16"))
LOCK_PATH = Path(tempfile.gettempdir()) / "orders-testnet.lock"
COMMAND_TIMEOUT = 10.0
HOW_TO_FIX = (
    "The test network needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nftables: run the suite "
    "as root (CI does) or in a container with --cap-add NET_ADMIN --cap-add SYS_ADMIN; `bash .ci/setup` "
    "installs the packages."
)


class NetworkError(RuntimeError):
    """A network command failed; the message holds the command and its stderr."""


class NetworkUnavailable(NetworkError):
    """Namespaces cannot be made here (no privilege, a tool missing): a test needing them must fail."""


def run(*argv: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run one command (``ip ...``, ``nft ...``) with a time bound; its stdout, or NetworkError."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"`{' '.join(argv)}` failed: {exc}") from exc
    if done.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def in_netns(netns: str, *argv: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", netns, *argv, stdin=stdin)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in POOLS that overlaps no address or route of the root namespace (other runs' bridges too)."""
    taken = _taken_networks()
    for pool in POOLS:
        subnets = list(pool.subnets(new_prefix=24))
        start = os.getpid() % len(subnets)  # spread concurrent runs, so they rarely probe the same ones
        for subnet in subnets[start:] + subnets[:start]:
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
    raise NetworkUnavailable(f"no free /24 in {', '.join(map(str, POOLS))}")


def _taken_networks() -> list[ipaddress.IPv4Network]:
    taken = []
    for route in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all")):
        if route.get("dst") not in (None, "default"):
            taken.append(ipaddress.ip_network(route["dst"], strict=False))
    for link in json.loads(run("ip", "-j", "-4", "addr", "show")):
        for addr in link.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return taken


@contextlib.contextmanager
def allocation_lock(timeout: float = 10.0) -> Iterator[None]:
    """Between choosing a subnet and putting it on a bridge, no other run of ours may choose."""
    with open(LOCK_PATH, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetworkError(f"{LOCK_PATH} held for {timeout:.0f}s by another run") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces and links of our naming whose owning process is dead; returns their names."""
    removed = []
    for entry in json.loads(run("ip", "-j", "netns", "list") or "[]"):
        owner = STALE_NETNS.match(entry["name"])
        if owner and not pid_alive(int(owner.group(1))):
            remove_netns(entry["name"])
            removed.append(entry["name"])
    for link in json.loads(run("ip", "-j", "link", "show")):
        owner = STALE_LINK.match(link["ifname"])
        if owner and not pid_alive(int(owner.group(1))):
            with contextlib.suppress(NetworkError):  # a veth may have gone with its namespace
                run("ip", "link", "del", link["ifname"])
            removed.append(link["ifname"])
    if removed:
        log.warning("removed stale test network resources of dead runs: %s", ", ".join(removed))
    return removed


def remove_netns(netns: str) -> None:
    """SIGKILL what still runs inside (a namespace lives on while a process holds it), then delete it."""
    with contextlib.suppress(NetworkError):
        for pid in run("ip", "netns", "pids", netns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(NetworkError):
        run("ip", "netns", "del", netns)
