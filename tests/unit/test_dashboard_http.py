"""The dashboard's HTTP surface with a stand-in for the pipeline: token, origin checks, static files, SSE."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from orders.cli import main
from orders.dashboard.server import STATIC_DIR, DashboardError, Publisher, make_app, require_token

TOKEN = "s3cret-token"


class RecordedControls:
    """Records what the endpoints asked for, instead of producing or touching Redis."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start_producer(self, rate: float) -> None:
        if rate > 1000:
            raise ValueError("rate too high")
        self.calls.append(("start", rate))

    def stop_producer(self) -> None:
        self.calls.append(("stop", None))

    def set_failure_rate(self, rate: float | None) -> None:
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("failure rate must be between 0 and 1")
        self.calls.append(("failure_rate", rate))


class DashboardCase(AsyncHTTPTestCase):
    token = TOKEN

    def get_app(self):  # type: ignore[no-untyped-def]
        self.controls = RecordedControls()
        self.publisher = Publisher()
        self.publisher.publish(json.dumps({"uptime": 1.0}))
        return make_app(self.publisher, self.controls, self.token)

    def post(self, path: str, body: object, **headers: str) -> HTTPResponse:
        headers = {"Content-Type": "application/json", **headers}
        return self.fetch(path, method="POST", body=json.dumps(body), headers=headers, raise_error=False)


class TestWithToken(DashboardCase):
    def test_controls_refuse_requests_without_the_token(self) -> None:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = self.post("/api/producer", {"action": "start", "rate": 5}, **auth)
            assert response.code == 401
            assert "token" in json.loads(response.body)["error"]
        assert self.controls.calls == []

    def test_controls_act_with_the_token(self) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert self.post("/api/producer", {"action": "start", "rate": 25}, **auth).code == 200
        assert self.post("/api/producer", {"action": "stop"}, **auth).code == 200
        assert self.post("/api/failure-rate", {"rate": 0.3}, **auth).code == 200
        assert self.post("/api/failure-rate", {"rate": None}, **auth).code == 200
        assert self.controls.calls == [
            ("start", 25.0),
            ("stop", None),
            ("failure_rate", 0.3),
            ("failure_rate", None),
        ]

    def test_the_page_and_state_need_no_token(self) -> None:
        page = self.fetch("/")
        assert page.code == 200 and b'<script src="app.js"' in page.body
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert json.loads(self.fetch("/api/state").body) == {"uptime": 1.0}


class TestOpenOnLoopback(DashboardCase):
    token = ""

    def test_bad_requests_are_refused_with_a_reason(self) -> None:
        cases = [
            ("/api/producer", {"action": "launch"}, 400),
            ("/api/producer", {"action": "start"}, 400),
            ("/api/producer", {"action": "start", "rate": "fast"}, 400),
            ("/api/producer", {"action": "start", "rate": 5000}, 400),
            ("/api/producer", [1, 2], 400),
            ("/api/failure-rate", {"rate": 1.5}, 400),
            ("/api/failure-rate", {"rate": True}, 400),
        ]
        for path, body, code in cases:
            response = self.post(path, body)
            assert response.code == code, (path, body)
            assert json.loads(response.body)["error"]
        assert self.controls.calls == []

    def test_cross_site_and_form_posts_are_refused(self) -> None:
        other_site = self.post("/api/failure-rate", {"rate": 0.5}, Origin="http://evil.example")
        assert other_site.code == 403
        form = self.fetch("/api/failure-rate", method="POST", body="rate=0.5", raise_error=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert form.code == 415
        same_site = self.post(
            "/api/failure-rate", {"rate": 0.5}, Origin=f"http://127.0.0.1:{self.get_http_port()}"
        )
        assert same_site.code == 200
        assert self.controls.calls == [("failure_rate", 0.5)]

    def test_events_stream_the_published_state(self) -> None:
        chunks: list[bytes] = []

        def on_chunk(chunk: bytes) -> None:
            chunks.append(chunk)
            if b"second" in b"".join(chunks):
                self.stop()

        self.http_client.fetch(self.get_url("/events"), streaming_callback=on_chunk, request_timeout=10,
                               raise_error=False)  # fmt: skip
        self.io_loop.call_later(0.2, self.publisher.publish, json.dumps({"second": True}))
        self.wait(timeout=5)
        events = b"".join(chunks).decode().split("\n\n")
        assert events[0] == 'data: {"uptime": 1.0}'
        assert events[1] == 'data: {"second": true}'
        self.publisher.close()


@pytest.mark.parametrize(
    ("host", "token", "allowed"),
    [
        ("127.0.0.1", "", True),
        ("localhost", "", True),
        ("::1", "", True),
        ("127.0.0.2", "", True),
        ("0.0.0.0", "", False),
        ("192.168.1.10", "", False),
        ("dashboard.example", "", False),
        ("0.0.0.0", TOKEN, True),
    ],
)
def test_a_public_address_needs_a_token(host: str, token: str, allowed: bool) -> None:
    if allowed:
        require_token(host, token)
    else:
        with pytest.raises(DashboardError, match="DASHBOARD_TOKEN"):
            require_token(host, token)


def test_the_command_refuses_a_public_address_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code != 0
    assert "DASHBOARD_TOKEN" in result.output


def test_static_files_are_all_local() -> None:
    names = {path.name for path in STATIC_DIR.iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and "//cdn" not in text
