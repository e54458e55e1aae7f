"""`orders dashboard` in headless Chromium: live figures, producer and failure-rate controls, a screenshot.

Runs on the Tansu lane only: a browser next to Apache Kafka's JVM is too slow for two cores, and the
dashboard's Kafka reads (metadata, watermarks, committed offsets) are the same on both brokers.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from orders.stack.supervisor import free_port, port_open, wait_for
from tests.conftest import Pipeline, unavailable
from tests.harness.services import REPO_ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never Playwright's own browser download)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium not on PATH (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def number(page: Any, selector: str) -> int:
    text = page.text_content(selector) or ""
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else -1


def updates(page: Any) -> int:
    return int(page.get_attribute("body", "data-updates") or 0)


def demo(page: Any, name: str) -> str:
    return page.get_attribute("#producer-status", f"data-{name}") or ""


TOKEN = secrets.token_urlsafe(24)


def start_dashboard(pipeline: Pipeline) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "orders.cli", "dashboard", "--port", str(port)]
    pipeline.start("dashboard", argv, ready=lambda _s: port_open(port), DASHBOARD_TOKEN=TOKEN)
    return f"http://127.0.0.1:{port}"


def test_the_dashboard_shows_and_steers_the_pipeline(pipeline: Pipeline, browser: Any) -> None:
    # One retry, 1 s later: at a 50% failure rate, retries and dead letters both show within seconds.
    pipeline.start_worker(MAX_RETRIES="1", RETRY_BACKOFF_BASE="1")
    pipeline.start_bridge()
    url = start_dashboard(pipeline)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(url) else outside.append(request.url))
    # The link `orders up` prints: the token becomes a session cookie and leaves the address bar.
    page.goto(f"{url}/?token={TOKEN}")
    assert page.url == f"{url}/"
    assert page.is_hidden("#login")

    wait_for(lambda: updates(page) >= 2, 10, "two pushes from the dashboard")
    assert page.text_content("#connection") == "live"
    wait_for(
        lambda: page.get_attribute("li[data-service=workers]", "class") == "ok", 20, "the worker's health"
    )
    for service in ("kafka", "redis", "registry"):
        assert page.get_attribute(f"li[data-service={service}]", "class") == "ok", service
    assert number(page, "#produced") == 0

    # Start: orders are produced and processed, and the figures keep moving.
    page.fill("#demo-rate", "25")
    page.click("#producer-start")
    wait_for(lambda: demo(page, "running") == "true", 10, "the demo producer to run")
    wait_for(lambda: number(page, "#produced") > 0 and number(page, "#succeeded") > 0, 30, "orders to flow")
    produced, succeeded = number(page, "#produced"), number(page, "#succeeded")
    wait_for(lambda: number(page, "#produced") > produced, 10, "produced to rise")
    wait_for(lambda: number(page, "#succeeded") > succeeded, 10, "succeeded to rise")
    assert page.locator("#recent .badge.succeeded").count() > 0
    assert page.locator("#lag tbody tr").count() == 3

    # Stop: once every sent order is in the topic, production stays flat.
    page.click("#producer-stop")
    wait_for(lambda: demo(page, "running") == "false", 20, "the demo producer to stop")
    wait_for(lambda: number(page, "#produced") == int(demo(page, "delivered")), 30, "produced = delivered")
    stopped_at, pushes = number(page, "#produced"), updates(page)
    wait_for(lambda: updates(page) >= pushes + 3, 10, "three more pushes")
    assert number(page, "#produced") == stopped_at
    assert int(demo(page, "sent")) == stopped_at

    # A failure rate for every worker: retries (and with one retry, dead letters) appear.
    page.fill("#failure-rate", "0.5")
    page.click("#failure-set")
    wait_for(lambda: page.text_content("#failure-current") == "0.5", 10, "the override to show")
    page.click("#producer-start")
    wait_for(lambda: number(page, "#retry-attempts") > 0, 30, "retries")
    wait_for(lambda: page.locator("#recent .badge.retrying").count() > 0, 20, "a retrying badge")
    wait_for(lambda: number(page, "#dlq") > 0, 30, "dead letters")
    wait_for(lambda: page.locator("#average-chart path.line").count() == 2, 10, "the average chart")
    assert page.locator("#throughput-chart path.line").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than it
    wait_for(lambda: _fits_width(page), 5, "the page to fit a phone's width")
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

    page.click("#producer-stop")
    page.click("#failure-reset")
    wait_for(lambda: page.text_content("#failure-current", timeout=1000) != "0.5", 10, "the override to go")
    assert page.text_content("#message") == ""
    assert outside == [], "the page loaded something from elsewhere"


def test_the_dashboard_asks_a_browser_without_a_session_for_its_token(
    pipeline: Pipeline, browser: Any
) -> None:
    url = start_dashboard(pipeline)
    page = browser.new_page()  # a new context: no cookie
    page.goto(url)
    page.wait_for_selector("#login", state="visible", timeout=10_000)
    assert updates(page) == 0
    page.fill("#token", "wrong")
    page.click("#login-submit")
    wait_for(lambda: "wrong dashboard token" in (page.text_content("#login-message") or ""), 10, "a refusal")
    page.fill("#token", TOKEN)
    page.click("#login-submit")
    wait_for(lambda: updates(page) >= 1, 10, "figures after signing in")
    assert page.is_hidden("#login")
    cookies = page.context.cookies()
    assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]


def _fits_width(page: Any) -> bool:
    """Neither the page nor the recent-orders table needs sideways scrolling."""
    return bool(
        page.evaluate("""() => {
        const table = document.querySelector("#recent");
        return document.documentElement.scrollWidth <= window.innerWidth
            && table.scrollWidth <= table.parentElement.clientWidth;
    }""")
    )
