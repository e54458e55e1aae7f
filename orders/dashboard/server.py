"""`orders dashboard`: a tornado app pushing the sampled state to every browser by server-sent events.

Routes: ``/`` the page (static files, nothing from the network), ``/events`` the live state stream,
``/api/state`` the latest state once, ``POST /api/producer`` and ``POST /api/failure-rate`` the
controls. Controls need ``Authorization: Bearer <DASHBOARD_TOKEN>`` whenever a token is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import redis
from tornado import locks, web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from orders.core.control import set_failure_rate
from orders.core.settings import Settings
from orders.dashboard.demo_producer import DemoProducer

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).with_name("static")
KEEPALIVE: Final = timedelta(seconds=15)
# Everything the page loads comes from this server; the browser refuses anything else.
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class DashboardError(Exception):
    """The dashboard cannot start as asked (e.g. a public address without a token)."""


class Controls(Protocol):
    """What the control endpoints act on; the real one steers the demo producer and the workers."""

    def start_producer(self, rate: float) -> None: ...
    def stop_producer(self) -> None: ...
    def set_failure_rate(self, rate: float | None) -> None: ...


class PipelineControls:
    def __init__(self, demo: DemoProducer, client: redis.Redis) -> None:
        self.demo = demo
        self._client = client

    def start_producer(self, rate: float) -> None:
        self.demo.start(rate)

    def stop_producer(self) -> None:
        self.demo.stop()

    def set_failure_rate(self, rate: float | None) -> None:
        set_failure_rate(self._client, rate)


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token(host: str, token: str) -> None:
    """Raise DashboardError for a non-loopback address without a token: the controls would be open."""
    if not token and not is_loopback(host):
        raise DashboardError(
            f"refusing to listen on {host} without DASHBOARD_TOKEN: anyone reaching it could steer the "
            "pipeline. Set DASHBOARD_TOKEN, or listen on 127.0.0.1."
        )


class StaticHandler(web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Cache-Control", "no-cache")


class EventsHandler(web.RequestHandler):
    """Server-sent events: the current state at once, then each new one as it is published."""

    def initialize(self, publisher: Publisher) -> None:
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


class StateHandler(web.RequestHandler):
    def initialize(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.write(self.publisher.latest or "{}")


class ControlHandler(web.RequestHandler):
    """JSON in, JSON out; refuses cross-site requests and, when a token is set, requests without it."""

    def initialize(self, controls: Controls, token: str) -> None:
        self.controls = controls
        self.token = token

    def prepare(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != self.request.host:
            raise web.HTTPError(403, "cross-origin request refused")
        if not self.request.headers.get("Content-Type", "").startswith("application/json"):
            raise web.HTTPError(415, "send application/json")
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        given = given.strip() if scheme == "Bearer" else ""
        if self.token and not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(401, "a valid dashboard token is required")

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as exc:
            raise web.HTTPError(400, f"invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise web.HTTPError(400, "expected a JSON object")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish({"error": message})


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
        except redis.RedisError as exc:
            raise web.HTTPError(503, f"redis: {exc}") from exc
        self.finish({"ok": True, "failure_rate": rate})


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise web.HTTPError(400, f"{name} must be a number")
    return float(value)


def make_app(publisher: Publisher, controls: Controls, token: str) -> web.Application:
    """The tornado application; the tests build it with a stand-in for ``controls``."""
    return web.Application(
        [
            (r"/events", EventsHandler, {"publisher": publisher}),
            (r"/api/state", StateHandler, {"publisher": publisher}),
            (r"/api/producer", ProducerHandler, {"controls": controls, "token": token}),
            (r"/api/failure-rate", FailureRateHandler, {"controls": controls, "token": token}),
            (r"/(.*)", StaticHandler, {"path": str(STATIC_DIR), "default_filename": "index.html"}),
        ],
        xsrf_cookies=False,  # the controls take JSON only and check Origin instead
    )


async def serve(settings: Settings, host: str, port: int) -> None:
    """Run until SIGTERM or SIGINT: the HTTP server, the sampler threads and the demo producer."""
    from orders.dashboard.sampler import Sampler

    token = dashboard_token(settings)
    loop = IOLoop.current()
    publisher = Publisher()
    demo = DemoProducer(settings)
    controls = PipelineControls(demo, redis.Redis.from_url(settings.redis_url))

    def status() -> dict[str, Any]:
        return {"producer": demo.status(), "token_required": bool(token)}

    sampler = Sampler(settings, status, lambda payload: loop.add_callback(publisher.publish, payload))
    server = HTTPServer(make_app(publisher, controls, token))
    server.listen(port, host)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    sampler.start()
    log.info("dashboard on http://%s:%d (controls %s)", host, port, "need the token" if token else "open")
    try:
        await stopping.wait()
    finally:
        log.info("dashboard stopping")
        server.stop()
        await loop.run_in_executor(None, sampler.stop)
        await loop.run_in_executor(None, demo.stop)
        publisher.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), timeout=5)


def dashboard_token(settings: Settings) -> str:
    """DASHBOARD_TOKEN, or "" when unset or empty."""
    return settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""


def run_dashboard(settings: Settings, host: str, port: int) -> None:
    """Serve the dashboard; DashboardError if it may not listen on ``host`` as configured."""
    require_token(host, dashboard_token(settings))
    asyncio.run(serve(settings, host, port))
