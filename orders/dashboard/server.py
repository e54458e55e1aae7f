"""`orders dashboard`: a tornado app pushing the sampled state to every browser by server-sent events.

Routes: ``/`` the page (static files, nothing from the network), ``/events`` the live state stream,
``/api/state`` the latest state once, ``/api/session`` the browser's session, ``POST /api/producer`` and
``POST /api/failure-rate`` the controls. Who may use which is decided in ``orders.dashboard.access``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any, Final

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from orders.core.control import set_failure_rate
from orders.core.redis_client import AnyRedis, connect
from orders.dashboard.access import Access, check_listen, default_origins
from orders.dashboard.demo_producer import DemoProducer
from orders.dashboard.handlers import (
    Controls,
    EventsHandler,
    FailureRateHandler,
    ProducerHandler,
    Publisher,
    SessionHandler,
    StateHandler,
    StaticHandler,
)
from orders.dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).with_name("static")


class PipelineControls:
    def __init__(self, demo: DemoProducer, client: AnyRedis) -> None:
        self.demo = demo
        self._client = client

    def start_producer(self, rate: float) -> None:
        self.demo.start(rate)

    def stop_producer(self) -> None:
        self.demo.stop()

    def set_failure_rate(self, rate: float | None) -> None:
        set_failure_rate(self._client, rate)


def make_app(publisher: Publisher, controls: Controls, access: Access) -> web.Application:
    """The tornado application; the tests build it with a stand-in for ``controls``."""
    feed = {"access": access, "publisher": publisher}
    steer = {"access": access, "controls": controls}
    return web.Application(
        [
            (r"/events", EventsHandler, feed),
            (r"/api/state", StateHandler, feed),
            (r"/api/session", SessionHandler, {"access": access}),
            (r"/api/producer", ProducerHandler, steer),
            (r"/api/failure-rate", FailureRateHandler, steer),
            (
                r"/(.*)",
                StaticHandler,
                {"path": str(STATIC_DIR), "default_filename": "index.html", "access": access},
            ),
        ],
        xsrf_cookies=False,  # the controls take JSON only, check Origin, and the cookie is SameSite=Strict
    )


async def serve(settings: DashboardSettings, host: str, port: int) -> None:
    """Run until SIGTERM or SIGINT: the HTTP server, the sampler threads and the demo producer."""
    from orders.dashboard.sampler import Sampler

    access = dashboard_access(settings, host, port)
    loop = IOLoop.current()
    publisher = Publisher()
    demo = DemoProducer(settings)
    controls = PipelineControls(demo, connect(settings.redis))

    def status() -> dict[str, Any]:
        # traces_url: the page links a dead letter's trace id to the trace backend's page for it.
        return {
            "producer": demo.status(),
            "token_required": access.token_required,
            "traces_url": settings.traces_ui,
        }

    sampler = Sampler(settings, status, lambda payload: loop.add_callback(publisher.publish, payload))
    server = HTTPServer(make_app(publisher, controls, access))
    server.listen(port, host)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    sampler.start()
    shown = "needs the token" if access.token_required else "open (loopback only)"
    log.info(
        "dashboard on http://%s:%d, %s; served to %s", host, port, shown, public_urls(settings, host, port)
    )
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


def dashboard_token(settings: DashboardSettings) -> str:
    """DASHBOARD_TOKEN, or "" when unset or empty."""
    return settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""


def public_urls(settings: DashboardSettings, host: str, port: int) -> tuple[str, ...]:
    """DASHBOARD_PUBLIC_URLS, or the listen address's own URLs."""
    return settings.dashboard_public_urls or default_origins(host, port)


def dashboard_access(settings: DashboardSettings, host: str, port: int) -> Access:
    """The access rules for a dashboard listening on ``host:port``; DashboardError if it may not."""
    token = dashboard_token(settings)
    check_listen(host, token, settings.dashboard_public_urls)
    return Access.build(token, public_urls(settings, host, port), port)


def run_dashboard(settings: DashboardSettings, host: str, port: int) -> None:
    """Serve the dashboard; DashboardError if it may not listen on ``host`` as configured."""
    dashboard_access(settings, host, port)
    asyncio.run(serve(settings, host, port))
