"""Zipkin, the trace backend `orders up --tracing`, the tests and the bench run: its exec jar from Maven
Central (cached like the Kafka jars), on the Java the Kafka lane uses, in memory, on loopback.

Its UI is at ``/zipkin/``, its API at ``/api/v2`` (spans in at ``/api/v2/spans``, Zipkin's JSON, which
the OpenTelemetry Zipkin exporter speaks; this Zipkin has no OTLP receiver). Readiness is its health
endpoint answering UP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from orders.stack.services import Running, Unavailable
from orders.stack.supervisor import Service, free_port

ZIPKIN_VERSION = "3.4.2"
ZIPKIN_ARTIFACT = f"io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec"
ZIPKIN_CACHE = Path(os.environ.get("ORDERS_ZIPKIN_JAR_DIR", Path.home() / ".cache/orders-pipeline/zipkin"))
# The newest spans kept in memory (Zipkin's default is 500,000): ~100 MB of heap at most.
MAX_SPANS = 100_000
SPANS_PATH = "/api/v2/spans"


def ensure_zipkin_jar() -> Path:
    """Zipkin's exec jar, fetched from Maven Central once with Maven and cached."""
    jar = ZIPKIN_CACHE / f"zipkin-server-{ZIPKIN_VERSION}-exec.jar"
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Unavailable("Zipkin needs Maven to fetch its jar (apt-get install maven)")
    ZIPKIN_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ZIPKIN_ARTIFACT}",
         f"-DoutputDirectory={ZIPKIN_CACHE}"],
        check=True, timeout=600,
    )  # fmt: skip
    return jar


def zipkin_healthy(url: str) -> bool:
    """Zipkin's /health says UP (its storage included)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(json.load(answer).get("status") == "UP")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def start_zipkin(log_dir: Path, port: int = 0, name: str = "") -> Running:
    """Zipkin in memory on 127.0.0.1; the URL returned is its root (UI at /zipkin/, API at /api/v2)."""
    if shutil.which("java") is None:
        raise Unavailable("Zipkin needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    jar = ensure_zipkin_jar()
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        "java", "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(jar),
        "--armeria.ports[0].ip=127.0.0.1", f"--armeria.ports[0].port={port}",
        "--armeria.ports[0].protocols=http",
    ]  # fmt: skip
    env = {"STORAGE_TYPE": "mem", "MEM_MAX_SPANS": str(MAX_SPANS), "QUERY_PORT": str(port)}
    service = Service(name or f"zipkin-{port}", argv, log_dir, env=env)
    service.start(lambda: zipkin_healthy(url), timeout=90)
    return Running(service, port, url)


def spans_endpoint(url: str) -> str:
    """Where exporters send spans (OTEL_EXPORTER_ZIPKIN_ENDPOINT) for the Zipkin at ``url``."""
    return url + SPANS_PATH
