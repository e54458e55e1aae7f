"""A private RabbitMQ node for tests and benches: Debian's rabbitmq-server on free loopback ports.

Nothing system-wide is touched: its own node name, ports, epmd, HOME (the Erlang cookie), data,
logs, configuration and enabled-plugins file, all under one directory. Ready once an AMQP login
succeeds; the listener opens only after the default vhost is up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import amqp

from orders.stack.services import Unavailable
from orders.stack.supervisor import Service, free_port, port_open

# Not /usr/sbin/rabbitmq-server: as root that wrapper switches to the rabbitmq user and its files.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
GUEST = "guest"  # the stock user; RabbitMQ lets it log in from loopback only


def rabbitmq_binary() -> Path:
    binary = RABBIT_BIN / "rabbitmq-server"
    if not binary.exists() or shutil.which("epmd") is None:
        raise Unavailable("RabbitMQ is not installed: `apt-get install rabbitmq-server` (Debian/Ubuntu)")
    return binary


class RabbitMQ:
    """One node; ``url`` is Celery's ``amqp://`` broker URL for it."""

    def __init__(self, log_dir: Path, name: str = "") -> None:
        self.binary = rabbitmq_binary()
        self.port = free_port()
        self.base = log_dir / (name or f"rabbitmq-{self.port}")
        self.nodename = f"{name or 'orders_' + secrets.token_hex(3)}@localhost"
        self.dist_port, self.epmd_port, self.ctl_port = free_port(), free_port(), free_port()
        self.url = f"amqp://{GUEST}:{GUEST}@127.0.0.1:{self.port}//"
        self.log_dir = log_dir
        self.epmd: Service | None = None
        self.service: Service | None = None

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "HOME": str(b / "home"),  # the Erlang cookie, for the server and rabbitmqctl alike
            "RABBITMQ_CONF_ENV_FILE": str(b / "no-rabbitmq-env.conf"),  # skip /etc/rabbitmq's
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            # The default (node port + 20000) is past 65535 for an ephemeral port: always set it.
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.ctl_port),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.ctl_port),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "beam.pid"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }

    def _write_files(self) -> None:
        b = self.base
        shutil.rmtree(b, ignore_errors=True)
        for sub in ("home", "mnesia", "log"):
            (b / sub).mkdir(parents=True)
        cookie = b / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (b / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\nlog.file.level = warning\n"
        )
        (b / "advanced.config").write_text("[].\n")
        (b / "enabled_plugins").write_text("[].\n")  # no management plugin: faster start

    def start(self, timeout: float = 90.0) -> RabbitMQ:
        """Our own epmd first (one the node started itself would daemonise and outlive it), then the node."""
        self._write_files()
        epmd = [shutil.which("epmd") or "epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"]
        self.epmd = Service(f"epmd-{self.epmd_port}", epmd, self.log_dir)
        self.epmd.start(lambda: port_open(self.epmd_port), timeout=20)
        self.service = Service(
            f"rabbitmq-{self.port}", [str(self.binary)], self.log_dir, env=self.env(), cwd=self.base
        )
        try:
            self.service.start(self.accepts_login, timeout=timeout)
        except BaseException:
            self.epmd.stop()
            raise
        return self

    def accepts_login(self) -> bool:
        try:
            address = f"127.0.0.1:{self.port}"
            connection = amqp.Connection(address, userid=GUEST, password=GUEST, connect_timeout=1)
            connection.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        with contextlib.suppress(OSError, amqp.exceptions.AMQPError):
            connection.close()
        return True

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` against this node; its output (CalledProcessError if it fails)."""
        argv = [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.nodename, *args]
        env = {**os.environ, **self.env()}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout

    def stop(self) -> None:
        """SIGTERM the wrapper (it stops the node gracefully), then epmd."""
        if self.service is not None:
            self.service.stop(grace=30)
        if self.epmd is not None:
            self.epmd.stop(grace=5)
