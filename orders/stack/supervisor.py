"""Child processes for `orders up` and the test harness: start, wait until ready, stop in order.

Each child runs in its own process group with its output in a log file, so a stop reaches its
grandchildren (Celery's pool, Tansu's threads) and a crash leaves its last lines to show.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


# Ports handed out below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default):
# an OS-picked port can be taken by any outgoing connection's local end before our server binds it
# (CI run 6: a Redis Cluster node's "bind: Address already in use"); a port below that range only by
# another explicit picker, and a random draw makes that unlikely too.
PORT_FLOOR = 20000


def free_port() -> int:
    """A TCP port free on loopback now, outside the ephemeral range when the kernel leaves room below it."""
    ceiling = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(PORT_FLOOR, ceiling) if ceiling > PORT_FLOOR else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free TCP port on loopback between {PORT_FLOOR} and {ceiling}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _die_with_parent() -> None:
    """Linux: SIGTERM the child if the process that started it dies without stopping it.

    Strictly, when the *thread* that started it ends: start services from a thread that outlives them
    (a ThreadPoolExecutor's workers do not)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceBacked:
    """A server run by one :class:`Service` (a Redis or Kafka node of a test cluster): the controls a
    fault test uses, named once. ``STOP_GRACE``: how long a stop waits before SIGKILL."""

    service: Service
    STOP_GRACE: float = 5

    def running(self) -> bool:
        return self.service.running()

    def kill(self) -> None:
        """SIGKILL, as a crash: its data directory stays for the next start."""
        self.service.kill()

    def pause(self) -> None:
        self.service.pause()

    def resume(self) -> None:
        self.service.resume()

    def stop(self) -> None:
        self.service.stop(grace=self.STOP_GRACE)


class Service:
    """One subprocess with its own log file; ``stop`` sends SIGTERM, then SIGKILL after a grace period."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> Service:
        started = time.monotonic()
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,  # its own process group, so stop() reaches grandchildren too
            preexec_fn=_die_with_parent,
        )
        log_file.close()
        try:
            wait_for(lambda: self._alive_or_raise() and ready(), timeout, f"{self.name} to start")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "%s started in %.2fs (pid %s, log %s)",
            self.name,
            self.startup_seconds,
            self.pid,
            self.log_path,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _alive_or_raise(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
        return True

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP the whole process group: a long GC pause or a stopped VM, as its peers see it."""
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the group after :meth:`pause` (harmless on a running one)."""
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the group. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.resume()  # a paused process would hold SIGTERM pending and sit out the grace period
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs; killing", self.name, grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers in its group, if any
        self.proc.wait()
        return self.proc.returncode
