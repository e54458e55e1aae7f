"""The `orders` command loads each tool when it runs: the bridge needs no tool's dependencies, and a
tool whose extra is missing says which one to install."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from orders import cli

# psutil is left out: redis-py 8 imports the OpenTelemetry SDK when it is installed (the dev and tracing
# extras), and the SDK imports psutil; the bare-install wheel test checks that psutil is absent there.
TOOL_MODULES = ("rich", "tornado", "matplotlib", "orders.stack", "orders.bench", "orders.dashboard",
                "orders.registry", "orders.dlq", "orders.produce", "orders.stats",
                "orders.trace")  # fmt: skip


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_bridge_command_loads_no_tool() -> None:
    code = (
        "import sys, click, orders.cli as c\n"
        "assert c.main.get_command(click.Context(c.main), 'bridge') is not None\n"
        f"print(*sorted(m for m in sys.modules if m.startswith({TOOL_MODULES!r})))"
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_a_tool_whose_library_is_missing_is_listed_and_names_its_extra() -> None:
    # As on an install without the registry extra: importing tornado fails.
    code = (
        "import sys; sys.modules['tornado'] = None\n"
        "from click.testing import CliRunner; from orders.cli import main\n"
        "listing = CliRunner().invoke(main, ['--help']).output\n"
        "done = CliRunner().invoke(main, ['registry', '--port', '0'])\n"
        "print(done.exit_code, 'registry' in listing); print(done.output)"
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    status, message = done.stdout.split("\n", 1)
    assert status == "1 True"
    assert "`orders registry` needs the 'registry' extra (tornado is not installed)" in message
    assert "pip install 'orders-pipeline[registry]'" in message


def test_a_missing_module_of_ours_is_a_bug_not_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.TOOLS, "ghost", ("orders.no_such_tool", "ghost", "tools"))
    done = CliRunner().invoke(cli.main, ["ghost"])
    assert isinstance(done.exception, ModuleNotFoundError)
    assert done.exception.name == "orders.no_such_tool"
