"""Fixtures for the Zoom sandbox: the app in-process, on a loopback HTTP server, a fake clock,
and a tiny webhook receiver on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from companion.zoom.sandbox import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    Sandbox,
    create_sandbox_app,
)

WEBHOOK_SECRET = "sandbox-test-webhook-secret"
PUBLIC_URL = "http://sandbox.test"
# Tests run on a fixed clock so that dates in them never fall into the past.
START = dt.datetime(2027, 9, 1, 9, 0, tzinfo=dt.UTC)

BASIC = (
    "Basic " + base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()
)
TOKEN_URL = f"/oauth/token?grant_type=account_credentials&account_id={SANDBOX_ACCOUNT_ID}"


class FakeClock:
    def __init__(self, start: dt.datetime = START):
        self.t = start.timestamp()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, moment: dt.datetime) -> None:
        self.t = moment.timestamp()


class Api:
    """A test client that sends the bearer token Zoom's API needs."""

    def __init__(self, client: FlaskClient, token: str):
        self.client = client
        self.token = token

    def refresh(self) -> None:
        """A new token (after moving the clock past the old one's hour)."""
        self.token = fetch_token(self.client)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.call("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.call("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)

    def create_meeting(self, **overrides: Any) -> dict[str, Any]:
        body = weekly_class(**overrides)
        r = self.post("/v2/users/me/meetings", json=body)
        assert r.status_code == 201, r.get_json()
        return r.get_json()


def weekly_class(**overrides: Any) -> dict[str, Any]:
    """A course as companion creates it: type 8, weekly, the safety settings on."""
    body: dict[str, Any] = {
        "topic": "Art club (ages 8-10)",
        "type": 8,
        "duration": 45,
        "start_time": "2027-10-07T17:00:00",
        "timezone": "Europe/London",
        "password": "Kq7mP2xZ4r",
        "recurrence": {"type": 2, "repeat_interval": 1, "weekly_days": "5", "end_times": 8},
        "settings": {
            "approval_type": 1,
            "registration_type": 1,
            "registrants_email_notification": False,
            "registrants_confirmation_email": False,
            "waiting_room": True,
            "waiting_room_options": {"mode": "custom", "who_goes_to_waiting_room": "everyone"},
            "join_before_host": False,
            "mute_upon_entry": True,
            "auto_recording": "cloud",
            "encryption_type": "enhanced_encryption",
        },
    }
    body.update(overrides)
    return body


class LiveServer:
    """A WSGI app on a real loopback port, in a thread."""

    def __init__(self, app: Any):
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Receiver:
    """Stands in for companion's /zoom/webhook: records requests, answers as programmed."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers for the next requests; then 200
        self.delay = 0.0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.requests.append(
                {
                    "path": request.path,
                    "headers": dict(request.headers),
                    "body": body,
                    "received_at": time.time(),
                }
            )
            status = self.statuses.pop(0) if self.statuses else 200
        if self.delay:
            time.sleep(self.delay)
        return Response("ok", status=status)(environ, start_response)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "zoom-sandbox.sqlite3")


@pytest.fixture
def sandbox_app(store_path: str, clock: FakeClock) -> Iterator[Flask]:
    app = create_sandbox_app(
        store_path,
        webhook_url=None,
        webhook_secret=WEBHOOK_SECRET,
        public_url=PUBLIC_URL,
        clock=clock,
    )
    yield app
    app.extensions["zoom_sandbox"].close()


@pytest.fixture
def sandbox(sandbox_app: Flask) -> Sandbox:
    return sandbox_app.extensions["zoom_sandbox"]


@pytest.fixture
def zoom_client(sandbox_app: Flask) -> FlaskClient:
    return sandbox_app.test_client()


def fetch_token(client: FlaskClient) -> str:
    r = client.post(TOKEN_URL, headers={"Authorization": BASIC})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["access_token"]


@pytest.fixture
def api(zoom_client: FlaskClient) -> Api:
    return Api(zoom_client, fetch_token(zoom_client))


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    target = Receiver()
    server = LiveServer(target)
    yield target, server.url + "/zoom/webhook"
    server.close()


@pytest.fixture
def live() -> Iterator[Any]:
    """Start a sandbox app on a loopback port: ``live(app) -> base URL``."""
    servers: list[LiveServer] = []

    def start(app: Any) -> str:
        server = LiveServer(app)
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.close()
