"""Who may use the dev registry: HTTP basic auth, TLS, and where it may listen.

The credentials are one ``user:password`` (``REGISTRY_BASIC_AUTH``), the form confluent-kafka's
``basic.auth.user.info`` sends (``SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`` on the clients). Anyone who can
register schemas can register one the bridge cannot decode, so off loopback the registry refuses to
start without them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from orders.core.net import is_loopback


class RegistryStartError(Exception):
    """The registry cannot start as asked; the message says what to set."""


@dataclass(frozen=True, repr=False)
class BasicAuth:
    """The one user and password the registry accepts."""

    user: str
    password: str

    @classmethod
    def from_setting(cls, value: SecretStr | None) -> BasicAuth | None:
        if value is None:
            return None
        user, _, password = value.get_secret_value().partition(":")
        return cls(user, password)

    def allows(self, authorization: str | None) -> bool:
        """True for ``Authorization: Basic base64(user:password)`` with these credentials."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared in constant time, so a response's timing tells nothing about either.
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and same_user


def check_listen(host: str, auth: BasicAuth | None) -> None:
    """Raise RegistryStartError for a non-loopback address without basic auth."""
    if auth is None and not is_loopback(host):
        raise RegistryStartError(
            f"refusing to listen on {host} without REGISTRY_BASIC_AUTH (user:password): anyone reaching "
            "it could register schemas. Set it, or listen on 127.0.0.1."
        )


def server_tls(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """A TLS 1.2+ server context from PEM files, or None to serve plain HTTP."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise RegistryStartError("--keyfile needs --certfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise RegistryStartError(f"cannot load the TLS certificate {certfile}: {exc}") from exc
    return context
