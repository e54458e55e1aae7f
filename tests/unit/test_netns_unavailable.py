"""Without the privilege to make namespaces, a test needing the network fails with how to fix it.

Simulated with a fake `ip` on PATH that answers as iproute2 does for an unprivileged user: listing
works, creating a link or a namespace is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.ha_fixtures import open_network

UNPRIVILEGED_IP = """#!/bin/sh
case "$*" in
  *" add "*) echo "RTNETLINK answers: Operation not permitted" >&2; exit 2 ;;
  *) echo "[]" ;;
esac
"""


def _tool(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(script)
    path.chmod(0o755)


def test_no_privilege_fails_the_test_and_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tool(tmp_path, "ip", UNPRIVILEGED_IP)
    _tool(tmp_path, "nft", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(pytest.fail.Exception) as failed:  # a failure, not pytest.skip's exception
        open_network("gw0")
    message = str(failed.value)
    assert "Operation not permitted" in message
    assert "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)" in message


def test_a_missing_tool_fails_the_test_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool(tmp_path, "ip", UNPRIVILEGED_IP)  # but no nft
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(pytest.fail.Exception, match="`nft` is not on PATH"):
        open_network("gw0")
