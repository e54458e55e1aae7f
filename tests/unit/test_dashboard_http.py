"""The dashboard's HTTP surface with a stand-in for the pipeline: token, origin checks, static files, SSE."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from orders.cli import main
from orders.dashboard.access import Access, DashboardError, check_listen, default_origins
from orders.dashboard.handlers import Publisher
from orders.dashboard.server import STATIC_DIR, make_app

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
        port = self.get_http_port()
        self.access = Access.build(self.token, default_origins("127.0.0.1", port), port)
        return make_app(self.publisher, self.controls, self.access)

    def post(self, path: str, body: object, **headers: str) -> HTTPResponse:
        headers = {"Content-Type": "application/json", **headers}
        return self.fetch(path, method="POST", body=json.dumps(body), headers=headers, raise_error=False)

    def get(self, path: str, **headers: str) -> HTTPResponse:
        return self.fetch(path, headers=headers, raise_error=False, follow_redirects=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.get_http_port()}"


def session_cookie(response: HTTPResponse) -> str:
    """The ``name=value`` of the session cookie a response sets, after checking its attributes."""
    [header] = [
        h for h in response.headers.get_list("Set-Cookie") if h.startswith("orders_dashboard_session")
    ]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "samesite=strict" in header.lower()
    return header.split(";")[0]


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

    def test_the_figures_need_the_token_and_the_page_does_not(self) -> None:
        page = self.get("/")
        assert page.code == 200 and b'<script src="app.js"' in page.body
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        for path in ("/api/state", "/events"):
            assert self.get(path).code == 401, path
            assert self.get(path, Authorization="Bearer wrong").code == 401, path
        allowed = self.get("/api/state", Authorization=f"Bearer {TOKEN}")
        assert json.loads(allowed.body) == {"uptime": 1.0}

    def test_the_token_in_the_url_becomes_a_session_cookie_and_leaves_the_url(self) -> None:
        response = self.get(f"/?token={TOKEN}")
        assert response.code == 302 and response.headers["Location"] == "/"
        cookie = session_cookie(response)
        assert TOKEN not in cookie
        assert json.loads(self.get("/api/state", Cookie=cookie).body) == {"uptime": 1.0}
        assert json.loads(self.get("/api/session", Cookie=cookie).body)["authenticated"] is True
        steer = self.post("/api/failure-rate", {"rate": 0.2}, Cookie=cookie, Origin=self.origin)
        assert steer.code == 200
        assert self.controls.calls == [("failure_rate", 0.2)]
        # A wrong token is dropped from the URL too, and starts nothing.
        wrong = self.get("/?token=wrong")
        assert wrong.code == 302 and not wrong.headers.get_list("Set-Cookie")
        assert self.get("/api/state", Cookie=cookie.split("=")[0] + "=forged").code == 401
        # The redirect stays on this site, whatever the path.
        assert self.get(f"//evil.example/?token={TOKEN}").headers["Location"] == "/evil.example/"

    def test_the_page_can_trade_the_typed_token_for_a_session(self) -> None:
        assert json.loads(self.get("/api/session").body) == {"token_required": True, "authenticated": False}
        assert self.post("/api/session", {"token": "wrong"}, Origin=self.origin).code == 401
        response = self.post("/api/session", {"token": TOKEN}, Origin=self.origin)
        assert response.code == 200
        assert self.get("/api/state", Cookie=session_cookie(response)).code == 200

    def test_a_rebinding_page_is_refused_even_with_the_right_token(self) -> None:
        """DNS rebinding: rebind.example resolves to 127.0.0.1, so to the browser this is same-origin."""
        rebound = f"rebind.example:{self.get_http_port()}"
        headers = {"Host": rebound, "Origin": f"http://{rebound}", "Authorization": f"Bearer {TOKEN}"}
        response = self.post("/api/failure-rate", {"rate": 1.0}, **headers)
        assert response.code == 403
        assert "unknown host" in json.loads(response.body)["error"]
        assert self.get("/api/state", **headers).code == 403
        assert self.get("/", Host=rebound).code == 403
        assert self.post("/api/session", {"token": TOKEN}, **headers).code == 403
        assert self.controls.calls == []

    def test_another_origin_is_refused_even_with_the_right_token(self) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for origin in ("http://evil.example", f"http://127.0.0.1:{self.get_http_port() + 1}", "null"):
            assert self.post("/api/failure-rate", {"rate": 1.0}, Origin=origin, **auth).code == 403, origin
        assert self.post("/api/failure-rate", {"rate": 1.0}, Origin=self.origin, **auth).code == 200
        assert self.controls.calls == [("failure_rate", 1.0)]


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
        same_site = self.post("/api/failure-rate", {"rate": 0.5}, Origin=self.origin)
        assert same_site.code == 200
        assert self.controls.calls == [("failure_rate", 0.5)]

    def test_an_open_dashboard_still_refuses_a_rebinding_page(self) -> None:
        rebound = f"rebind.example:{self.get_http_port()}"
        assert self.get("/api/state", Host=rebound).code == 403
        assert (
            self.post("/api/failure-rate", {"rate": 1.0}, Host=rebound, Origin=f"http://{rebound}").code
            == 403
        )
        assert self.controls.calls == []
        assert json.loads(self.get("/api/state").body) == {"uptime": 1.0}
        assert json.loads(self.get("/api/session").body) == {"token_required": False, "authenticated": True}

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


LONG = "x" * 24


@pytest.mark.parametrize(
    ("host", "token", "public", "refused"),
    [
        ("127.0.0.1", "", "", None),
        ("localhost", "", "", None),
        ("::1", "", "", None),
        ("127.0.0.2", "", "", None),
        ("0.0.0.0", "", "", "DASHBOARD_TOKEN"),
        ("192.168.1.10", "", "", "DASHBOARD_TOKEN"),
        ("dashboard.example", "", "", "DASHBOARD_TOKEN"),
        ("192.168.1.10", "short", "", "shorter than 16"),
        ("0.0.0.0", LONG, "", "DASHBOARD_PUBLIC_URLS"),
        ("::", LONG, "", "DASHBOARD_PUBLIC_URLS"),
        ("0.0.0.0", LONG, "https://dash.example", None),
        ("192.168.1.10", LONG, "", None),
    ],
)
def test_a_public_address_needs_a_token_and_its_public_url(
    host: str, token: str, public: str, refused: str | None
) -> None:
    public_urls = (public,) if public else ()
    if refused is None:
        check_listen(host, token, public_urls)
    else:
        with pytest.raises(DashboardError, match=refused):
            check_listen(host, token, public_urls)


def test_default_origins_are_the_listen_address() -> None:
    assert default_origins("127.0.0.1", 8050) == (
        "http://127.0.0.1:8050",
        "http://localhost:8050",
        "http://[::1]:8050",
    )
    assert default_origins("192.168.1.10", 80)[0] == "http://192.168.1.10:80"
    access = Access.build("", ("https://dash.example",), 8050)
    assert access.host_allowed("dash.example") and access.host_allowed("dash.example:443")
    assert not access.host_allowed("dash.example:8050") and not access.host_allowed("127.0.0.1:8050")
    assert access.origin_allowed("https://dash.example") and not access.origin_allowed("http://dash.example")
    assert access.secure_cookie and not Access.build("", default_origins("127.0.0.1", 1), 1).secure_cookie


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
