"""Who may use the dev registry: basic auth as confluent-kafka sends it, loopback without it, TLS files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from orders.cli import main
from orders.registry.access import BasicAuth, RegistryStartError, check_listen, server_tls

AUTH = BasicAuth("registry", "s3cret:with-colon")


def basic(user_info: str) -> str:
    return "Basic " + base64.b64encode(user_info.encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (basic("registry:s3cret:with-colon"), True),
        ("basic " + base64.b64encode(b"registry:s3cret:with-colon").decode(), True),
        (basic("registry:s3cret"), False),
        (basic("other:s3cret:with-colon"), False),
        (basic("registry"), False),
        ("Bearer s3cret:with-colon", False),
        ("Basic not-base64!", False),
        ("Basic " + base64.b64encode(b"\xff\xfe").decode(), False),
        ("", False),
        (None, False),
    ],
)
def test_basic_auth_takes_exactly_its_credentials(header: str | None, allowed: bool) -> None:
    assert AUTH.allows(header) is allowed


def test_credentials_come_from_the_setting_and_stay_out_of_repr() -> None:
    auth = BasicAuth.from_setting(SecretStr("registry:s3cret:with-colon"))
    assert auth == AUTH
    assert "s3cret" not in repr(auth)
    assert BasicAuth.from_setting(None) is None


@pytest.mark.parametrize(
    ("host", "auth", "refused"),
    [("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False),
     ("0.0.0.0", None, True), ("10.0.0.5", None, True), ("0.0.0.0", AUTH, False)],
)  # fmt: skip
def test_beyond_loopback_the_registry_needs_credentials(
    host: str, auth: BasicAuth | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(RegistryStartError, match="REGISTRY_BASIC_AUTH"):
            check_listen(host, auth)
    else:
        check_listen(host, auth)


def test_tls_files_are_checked_before_serving(tmp_path: Path) -> None:
    assert server_tls(None, None) is None
    with pytest.raises(RegistryStartError, match="--certfile"):
        server_tls(None, tmp_path / "key.pem")
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    with pytest.raises(RegistryStartError, match="cannot load"):
        server_tls(bad, None)


def test_the_command_refuses_a_public_address_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_BASIC_AUTH", raising=False)
    result = CliRunner().invoke(main, ["registry", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1
    assert "REGISTRY_BASIC_AUTH" in result.output
