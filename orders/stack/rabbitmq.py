"""A private RabbitMQ node for tests and benches: Debian's rabbitmq-server, on loopback or a test node.

Nothing system-wide is touched: its own node name, ports, epmd, HOME (the Erlang cookie), data,
logs, configuration and enabled-plugins file, all under one directory. Ready once an AMQP login
succeeds; the listener opens only after the default vhost is up.

Where it runs is a :class:`~orders.stack.redis_ha.Host`: on loopback (the default) every port is a free
one and the node is ``NAME@localhost``; on a namespace of the test network (tests/harness/netns.py) the
node has that address to itself, so it takes the standard ports (5672, 25672, epmd 4369) and is named
``rabbit@ADDRESS`` (Erlang's long names: an address needs no DNS). orders/stack/rabbitmq_cluster.py
builds a three-node cluster of these.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import amqp

from orders.stack.redis_ha import LOOPBACK, Host
from orders.stack.services import Unavailable
from orders.stack.supervisor import Service, port_open

# Not /usr/sbin/rabbitmq-server: as root that wrapper switches to the rabbitmq user and its files.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
GUEST = "guest"  # the stock user; RabbitMQ lets it log in from loopback only
# Small Erlang VMs (three share a 2-core machine in the cluster lane): one scheduler, one dirty CPU
# scheduler, a few async threads, and room for 64k Erlang processes rather than a million (a node
# with a few hundred connections and queues needs a few thousand). Busy-waiting is off already.
SMALL_VM = "+S 1:1 +SDcpu 1:1 +A 4"
SMALL_PROCESS_LIMIT = "65536"


def rabbitmq_binary() -> Path:
    binary = RABBIT_BIN / "rabbitmq-server"
    if not binary.exists() or shutil.which("epmd") is None:
        raise Unavailable("RabbitMQ is not installed: `apt-get install rabbitmq-server` (Debian/Ubuntu)")
    return binary


class RabbitMQ:
    """One node; ``url`` is Celery's ``amqp://`` broker URL for it.

    ``cookie``: the Erlang cookie (nodes of one cluster share it); ``conf``: extra rabbitmq.conf lines;
    ``advanced``: the kernel/rabbit terms of advanced.config (``net_ticktime``, ...).
    """

    def __init__(
        self,
        log_dir: Path,
        name: str = "",
        host: Host = LOOPBACK,
        *,
        cookie: str | None = None,
        user: str = GUEST,
        password: str = GUEST,
        conf: Sequence[str] = (),
        advanced: str = "[]",
        epmd_port: int | None = None,
    ) -> None:
        self.binary = rabbitmq_binary()
        self.host = host
        self.port = host.port(5672)
        self.base = log_dir / (name or f"rabbitmq-{self.port}")
        self.name = name or f"rabbitmq-{self.port}"
        self.longnames = host.dedicated
        self.nodename = (
            f"rabbit@{host.address}"
            if host.dedicated
            else f"{name or 'orders_' + secrets.token_hex(3)}@localhost"
        )
        # The default dist port (node port + 20000) is past 65535 for an ephemeral port: always set it.
        self.dist_port, self.ctl_port = host.port(25672), host.port(35672)
        # Nodes of a cluster on loopback find each other through one epmd (``epmd_port``, the cluster's);
        # a node with an address of its own runs its own on the standard port.
        self.epmd_port = epmd_port or host.port(4369)
        self._own_epmd = epmd_port is None
        self.user, self.password = user, password
        self.url = f"amqp://{user}:{password}@{host.address}:{self.port}//"
        self.log_dir = log_dir
        self._cookie = cookie or secrets.token_hex(16).upper()
        self._conf, self._advanced = list(conf), advanced
        self.epmd: Service | None = None
        self.service: Service | None = None

    def env(self) -> dict[str, str]:
        b = self.base
        env = {
            "HOME": str(b / "home"),  # the Erlang cookie, for the server and rabbitmqctl alike
            "RABBITMQ_CONF_ENV_FILE": str(b / "no-rabbitmq-env.conf"),  # skip /etc/rabbitmq's
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host.address,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": self.host.address,
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.ctl_port),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.ctl_port + (10 if self.host.dedicated else 0)),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "beam.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": SMALL_VM,
            "RABBITMQ_MAX_NUMBER_OF_PROCESSES": SMALL_PROCESS_LIMIT,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        if self.longnames:
            env["RABBITMQ_USE_LONGNAME"] = "true"
        return env

    def _write_files(self) -> None:
        b = self.base
        shutil.rmtree(b, ignore_errors=True)
        for sub in ("home", "mnesia", "log"):
            (b / sub).mkdir(parents=True)
        cookie = b / "home" / ".erlang.cookie"
        cookie.write_text(self._cookie)
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        users = ["loopback_users.guest = true"] if self.user == GUEST else [
            "loopback_users = none", f"default_user = {self.user}", f"default_pass = {self.password}",
        ]  # fmt: skip
        lines = [
            f"listeners.tcp.default = {self.host.address}:{self.port}",
            *users,
            "disk_free_limit.absolute = 50MB",
            "log.console = false",
            "log.file.level = warning",
            *self._conf,
        ]
        (b / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (b / "rabbitmq.conf").chmod(0o600)  # it may hold a password
        (b / "advanced.config").write_text(f"{self._advanced}.\n")
        (b / "enabled_plugins").write_text("[].\n")  # no management plugin: faster start

    def start(self, timeout: float = 90.0, wait: bool = True) -> RabbitMQ:
        """Our own epmd first (one the node started itself would daemonise and outlive it), then the node.

        ``wait=False`` returns once the process runs (the cluster boots its nodes side by side and
        waits for all of them itself, :meth:`accepts_login`)."""
        self._write_files()
        if self.epmd is None or not self.epmd.running():
            self._start_epmd()
        self.service = Service(
            self.name, [*self.host.prefix, str(self.binary)], self.log_dir, env=self.env(), cwd=self.base
        )
        try:
            self.service.start(self.accepts_login if wait else lambda: True, timeout=timeout)
        except BaseException:
            if self.epmd is not None:
                self.epmd.stop()
            raise
        return self

    def restart(self, timeout: float = 90.0) -> RabbitMQ:
        """Start the node again from its data (after :meth:`kill` or :meth:`stop`): a cluster member
        rejoins its cluster. Its epmd keeps running."""
        assert self.service is not None
        self.service.stop(grace=30)
        if self._own_epmd and (self.epmd is None or not self.epmd.running()):
            self._start_epmd()
        self.service.start(self.accepts_login, timeout=timeout)
        return self

    def _start_epmd(self) -> None:
        if not self._own_epmd:
            return
        address = self.host.address if self.host.dedicated else "127.0.0.1"
        epmd = [
            *self.host.prefix,
            shutil.which("epmd") or "epmd",
            "-port",
            str(self.epmd_port),
            "-address",
            address,
        ]
        self.epmd = Service(f"epmd-{self.name}", epmd, self.log_dir)
        self.epmd.start(lambda: port_open(self.epmd_port, address), timeout=20)

    def accepts_login(self) -> bool:
        try:
            address = f"{self.host.address}:{self.port}"
            connection = amqp.Connection(address, userid=self.user, password=self.password, connect_timeout=1)
            connection.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        with contextlib.suppress(OSError, amqp.exceptions.AMQPError):
            connection.close()
        return True

    def ctl(self, *args: str, timeout: float = 60, tool: str = "rabbitmqctl") -> str:
        """Run ``rabbitmqctl`` (or another CLI ``tool``) against this node, from where the node runs
        (so it works while the node is cut off); its output (CalledProcessError if it fails)."""
        argv = [*self.host.prefix, str(RABBIT_BIN / tool), "-n", self.nodename, *args]
        env = {**os.environ, **self.env()}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout

    def running(self) -> bool:
        return self.service is not None and self.service.running()

    def kill(self) -> None:
        """SIGKILL the node (a crash); its epmd stays, as a machine's would."""
        if self.service is not None:
            self.service.kill()

    def stop(self) -> None:
        """SIGTERM the wrapper (it stops the node gracefully), then epmd."""
        if self.service is not None:
            self.service.stop(grace=30)
        if self.epmd is not None:
            self.epmd.stop(grace=5)
