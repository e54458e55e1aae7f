"""`orders up`'s summary: every URL on one line, whole, in a log file and in an 80-column terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from orders.core.settings import Settings
from orders.stack import view
from orders.stack.options import RunSecrets, StackOptions, with_credentials
from orders.stack.stack import Stack

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def a_stack(tmp_path: Path) -> Stack:
    secrets = RunSecrets()
    stack = Stack(StackOptions(), Settings.from_env({}, env_file=None), tmp_path / "orders-up-k2j4h1x0")
    stack.notes.append("port 9092 is in use: kafka listens on 41873 instead (--kafka-port to choose)")
    stack.urls.update(
        kafka="127.0.0.1:9092",
        redis=f"redis://:{secrets.redis_password}@127.0.0.1:6379/0",
        registry=with_credentials("http://127.0.0.1:8081", secrets.registry_auth),
        flower=with_credentials("http://127.0.0.1:5555", secrets.flower_auth),
        dashboard=f"http://127.0.0.1:8050/?token={secrets.dashboard_token}",
    )
    stack.urls["worker1 metrics"] = "http://127.0.0.1:9101/metrics"
    return stack


@pytest.mark.parametrize("terminal", [False, True], ids=["log file", "80-column terminal"])
def test_every_url_is_printed_whole_on_one_line(
    terminal: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(view, "console", Console(file=out, width=80, force_terminal=terminal))
    stack = a_stack(tmp_path)
    # The secrets make the URLs long: beside the longest label, one is wider than 80 columns.
    assert max(len(url) for url in stack.urls.values()) + len("worker1 metrics") + 4 > 80
    view.print_summary(stack)
    lines = [ANSI.sub("", line) for line in out.getvalue().splitlines()]
    for name, url in [*stack.urls.items(), ("logs", str(stack.log_dir))]:
        assert [line for line in lines if url in line], (
            f"{name}'s URL is not whole on one line:\n" + "\n".join(lines)
        )
    assert any(stack.notes[0] in line for line in lines)
