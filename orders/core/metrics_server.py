"""A process's HTTP endpoint on METRICS_PORT: Prometheus ``/metrics`` and its readiness at ``/healthz``.

Launchers (`orders up`, the bench, the tests) and orchestrators (compose healthchecks) learn that a
bridge or worker is ready from ``/healthz`` answering 200, never from a line in its log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# What /healthz reports: (ready, details shown as JSON).
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def always_ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and health probes every few seconds would drown the process's own log."""


def _app(metrics: Any, readiness: Readiness) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        ready, details = readiness()
        start_response(
            "200 OK" if ready else "503 Service Unavailable", [("Content-Type", "application/json")]
        )
        return [json.dumps({"ready": ready, **details}).encode()]

    return app


def serve_metrics(
    port: int, *collectors: Collector, readiness: Readiness = always_ready, host: str = "0.0.0.0"
) -> None:
    """Serve /metrics and /healthz on ``port`` (0 = off) from a daemon thread.

    With a prefork pool (PROMETHEUS_MULTIPROC_DIR set), the children's figures are merged.
    """
    if not port:
        return
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    server = make_server(
        host, port, _app(make_wsgi_app(registry), readiness), _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics on :%d/metrics, readiness on :%d/healthz", port, port)
