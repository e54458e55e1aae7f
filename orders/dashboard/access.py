"""Who may use the dashboard: the origins browsers reach it at, its token, and the session cookie.

Three checks, in this order, on every request:

- **Host.** The request must name one of the public origins in its ``Host`` header. A DNS-rebinding page
  (``rebind.example`` resolving to 127.0.0.1) is then refused even though its requests are "same-origin"
  to the browser: it reads no figures and drives no control.
- **Origin.** A request a browser marks with an ``Origin`` must come from one of those origins (controls).
- **Token.** With ``DASHBOARD_TOKEN`` set, the figures and the controls need it: as
  ``Authorization: Bearer <token>`` (scripts) or the session cookie a browser gets for it once, by opening
  ``/?token=<token>`` (the printed URL; the server redirects to ``/`` so the token leaves the address bar)
  or by typing it into the page. The cookie is HttpOnly and SameSite=Strict: no script reads it and no
  other site's request carries it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from orders.core.net import is_loopback

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
WILDCARDS: Final = {"0.0.0.0", "::", ""}
MIN_TOKEN_LENGTH: Final = 16

# (scheme, host as in a Host header, port): "[::1]" keeps its brackets, as browsers send it.
Origin = tuple[str, str, int]


class DashboardError(Exception):
    """The dashboard cannot start as asked (e.g. a public address without a token)."""


def parse_origin(url: str) -> Origin | None:
    """``http://LocalHost:8050`` -> ``("http", "localhost", 8050)``; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host.lower(), port


def default_origins(host: str, port: int) -> tuple[str, ...]:
    """Where a browser reaches a dashboard listening on ``host:port`` when nobody configured it."""
    loopback = (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}")
    if is_loopback(host):
        return loopback
    shown = f"[{host}]" if ":" in host else host
    return (f"http://{shown}:{port}", *loopback)


def check_listen(host: str, token: str, public_urls: tuple[str, ...]) -> None:
    """Raise DashboardError when listening on ``host`` would leave the dashboard open or unreachable."""
    if is_loopback(host):
        return
    if not token:
        raise DashboardError(
            f"refusing to listen on {host} without DASHBOARD_TOKEN: anyone reaching it could read the "
            "orders and steer the pipeline. Set DASHBOARD_TOKEN, or listen on 127.0.0.1."
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise DashboardError(
            f"DASHBOARD_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters; use a random one "
            "(e.g. `openssl rand -hex 24`) before listening beyond loopback"
        )
    if host in WILDCARDS and not public_urls:
        raise DashboardError(
            f"listening on {host or 'every interface'} needs DASHBOARD_PUBLIC_URLS: the URL(s) browsers "
            "will open (e.g. https://dashboard.example.com); requests naming any other host are refused"
        )


@dataclass(frozen=True)
class Access:
    """The dashboard's access rules; ``token`` "" means open (allowed on loopback only)."""

    origins: frozenset[Origin]
    token: str = ""
    cookie_name: str = "orders_dashboard_session"
    # The cookie's value: random per server process, so a restart ends every session.
    session: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def build(cls, token: str, public_urls: tuple[str, ...], port: int) -> Access:
        origins = frozenset(filter(None, map(parse_origin, public_urls)))
        # The port in the name: cookies ignore ports, and two dashboards on one host must not clash.
        return cls(origins, token, cookie_name=f"orders_dashboard_session_{port}")

    @property
    def token_required(self) -> bool:
        return bool(self.token)

    @property
    def secure_cookie(self) -> bool:
        """Mark the cookie Secure when every public origin is https (a TLS proxy in front)."""
        return all(scheme == "https" for scheme, _, _ in self.origins)

    def host_allowed(self, host_header: str) -> bool:
        """The ``Host`` header names a public origin (its port may be left out when it is the default)."""
        try:
            parts = urlsplit(f"//{host_header}")
            port = parts.port
        except ValueError:
            return False
        if not parts.hostname:
            return False
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return any(
            host == allowed and (port or DEFAULT_PORTS[scheme]) == allowed_port
            for scheme, allowed, allowed_port in self.origins
        )

    def origin_allowed(self, origin_header: str | None) -> bool:
        """No ``Origin`` (a script, curl) is fine: browsers always send one on a cross-site POST."""
        return origin_header is None or parse_origin(origin_header) in self.origins

    def token_matches(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def authenticated(self, authorization: str, cookie: str | None) -> bool:
        """Open without a token; otherwise the Bearer token or this process's session cookie."""
        if not self.token:
            return True
        scheme, _, given = authorization.partition(" ")
        if scheme == "Bearer" and self.token_matches(given.strip()):
            return True
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())
