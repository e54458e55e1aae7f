"""The dashboard's request handlers: the page, the live figures, the session and the controls.

Every handler first checks the request's Host, then (for figures and controls) the token or session
cookie; controls also check the Origin and take JSON only. The rules live in ``orders.dashboard.access``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Final, Protocol

from tornado import httputil, locks, web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from orders.core.redis_client import REDIS_ERRORS
from orders.dashboard.access import Access

KEEPALIVE: Final = timedelta(seconds=15)
# Everything the page loads comes from this server; the browser refuses anything else.
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class Controls(Protocol):
    """What the control endpoints act on; the real one steers the demo producer and the workers."""

    def start_producer(self, rate: float) -> None: ...
    def stop_producer(self) -> None: ...
    def set_failure_rate(self, rate: float | None) -> None: ...


class Publisher:
    """The latest state and a version counter; lives on the IOLoop, fed from the sampling thread."""

    def __init__(self) -> None:
        self.latest = ""
        self.version = 0
        self.closed = False
        self._changed = locks.Condition()

    def publish(self, payload: str) -> None:
        self.latest, self.version = payload, self.version + 1
        self._changed.notify_all()

    def close(self) -> None:
        """Release every waiting stream, so shutdown does not wait for a keep-alive."""
        self.closed = True
        self._changed.notify_all()

    async def wait_past(self, version: int) -> None:
        if self.version == version and not self.closed:
            await self._changed.wait(timeout=KEEPALIVE)


class AccessMixin:
    """Host check on every request, then the token (Bearer or session cookie) where ``private``."""

    access: Access
    private = True
    request: httputil.HTTPServerRequest

    def check_access(self) -> None:
        if not self.access.host_allowed(self.request.host):
            raise web.HTTPError(
                403, f"unknown host {self.request.host!r}: set DASHBOARD_PUBLIC_URLS to the URL browsers use"
            )
        if self.private and not self.authenticated():
            raise web.HTTPError(401, "a valid dashboard token is required")

    def authenticated(self) -> bool:
        cookie = self.get_cookie(self.access.cookie_name)  # type: ignore[attr-defined]
        return self.access.authenticated(self.request.headers.get("Authorization", ""), cookie)

    def check_origin(self) -> None:
        if not self.access.origin_allowed(self.request.headers.get("Origin")):
            raise web.HTTPError(403, "cross-origin request refused")

    def start_session(self) -> None:
        self.set_cookie(  # type: ignore[attr-defined]
            self.access.cookie_name, self.access.session,
            httponly=True, samesite="Strict", secure=self.access.secure_cookie,
        )  # fmt: skip


class ApiHandler(AccessMixin, web.RequestHandler):
    """JSON answers, errors as ``{"error": ...}``."""

    def initialize(self, access: Access) -> None:
        self.access = access

    def prepare(self) -> None:
        self.check_access()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish({"error": message})


class StaticHandler(AccessMixin, web.StaticFileHandler):
    """The page and its files (no figures in them): open, except to unknown hosts.

    ``/?token=...`` (the URL `orders up` prints) starts a session and redirects to ``/``, so the token
    does not stay in the address bar or the history.
    """

    private = False

    def initialize(
        self,
        path: str,
        default_filename: str | None = None,
        allowed_symlink_directory: str | list[str] | None = None,
        *,
        access: Access | None = None,
    ) -> None:
        super().initialize(path, default_filename, allowed_symlink_directory)
        assert access is not None, "make_app passes the access rules"
        self.access = access

    def prepare(self) -> None:
        self.check_access()
        given = self.get_query_argument("token", None)
        if given is not None:
            if self.access.token_matches(given):
                self.start_session()
            # One leading slash: "//host/" would send the browser to another site.
            self.redirect("/" + self.request.path.lstrip("/"))

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Referrer-Policy", "no-referrer")


class SessionHandler(ApiHandler):
    """``GET``: does this browser need the token, and has it a session? ``POST {"token"}``: start one."""

    private = False

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.finish({"token_required": self.access.token_required, "authenticated": self.authenticated()})

    def post(self) -> None:
        self.check_origin()
        body = json_body(self)
        if not self.access.token_matches(str(body.get("token", ""))):
            raise web.HTTPError(401, "wrong dashboard token")
        self.start_session()
        self.finish({"token_required": True, "authenticated": True})


class EventsHandler(ApiHandler):
    """Server-sent events: the current state at once, then each new one as it is published."""

    def initialize(self, access: Access, publisher: Publisher) -> None:  # type: ignore[override]
        super().initialize(access)
        self.publisher = publisher
        self.closed = False

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        sent = -1
        while not (self.closed or self.publisher.closed):
            if self.publisher.version != sent and self.publisher.latest:
                sent = self.publisher.version
                self.write(f"data: {self.publisher.latest}\n\n")
            else:
                self.write(": keep-alive\n\n")
            try:
                await self.flush()
            except StreamClosedError:
                return
            await self.publisher.wait_past(sent)

    def on_connection_close(self) -> None:
        self.closed = True


class StateHandler(ApiHandler):
    def initialize(self, access: Access, publisher: Publisher) -> None:  # type: ignore[override]
        super().initialize(access)
        self.publisher = publisher

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.write(self.publisher.latest or "{}")


class ControlHandler(ApiHandler):
    """JSON in, JSON out; refuses unknown hosts, other origins, forms and (with a token) strangers."""

    def initialize(self, access: Access, controls: Controls) -> None:  # type: ignore[override]
        super().initialize(access)
        self.controls = controls

    def prepare(self) -> None:
        self.check_access()
        self.check_origin()

    def body(self) -> dict[str, Any]:
        return json_body(self)


def json_body(handler: web.RequestHandler) -> dict[str, Any]:
    """The request's JSON object; forms are refused (a cross-site form post cannot send JSON)."""
    if not handler.request.headers.get("Content-Type", "").startswith("application/json"):
        raise web.HTTPError(415, "send application/json")
    try:
        body = json.loads(handler.request.body or b"{}")
    except json.JSONDecodeError as exc:
        raise web.HTTPError(400, f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPError(400, "expected a JSON object")
    return body


class ProducerHandler(ControlHandler):
    async def post(self) -> None:
        body = self.body()
        action = body.get("action")
        loop = IOLoop.current()
        if action == "start":
            rate = _number(body.get("rate"), "rate")
            try:
                await loop.run_in_executor(None, self.controls.start_producer, rate)
            except ValueError as exc:
                raise web.HTTPError(400, str(exc)) from exc
        elif action == "stop":
            await loop.run_in_executor(None, self.controls.stop_producer)
        else:
            raise web.HTTPError(400, 'action must be "start" or "stop"')
        self.finish({"ok": True, "action": action})


class FailureRateHandler(ControlHandler):
    def post(self) -> None:
        raw = self.body().get("rate")
        rate = None if raw is None else _number(raw, "rate")
        try:
            self.controls.set_failure_rate(rate)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from exc
        except REDIS_ERRORS as exc:
            raise web.HTTPError(503, f"redis: {exc}") from exc
        self.finish({"ok": True, "failure_rate": rate})


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise web.HTTPError(400, f"{name} must be a number")
    return float(value)
