"""The tests' one Zoom: the Zoom sandbox (``companion.zoom.sandbox``) with companion's real client.

The sandbox is our model of Zoom, checked against Zoom's spec (``tests/sandbox/test_contract.py``
and the Prism tests). Every test that needs Zoom talks to it through the same client companion
uses in production, so the token, the request budget, the error mapping and the JSON all take
part, and the sandbox answers with Zoom's validation, schedule, registrants, account locks and
faults.

In process by default: the client's ``requests.Session`` hands each request to the sandbox's
WSGI app through :class:`WsgiTransport` (no socket, no thread), so a test costs about what a
function call costs. ``http=True`` serves the sandbox on a loopback port instead, for the tests
where HTTP itself matters (a held answer, a timeout, another process, a browser).

The client's own tests (``tests/zoom/``) stub single HTTP answers with ``responses`` instead:
they check how the client reads exact bytes, headers and broken answers (a 401 from token
churn, an HTML error page, a bad ``Retry-After``), which is the transport, not Zoom's behaviour.

A test changes Zoom through the sandbox's own controls (``.state``: ``add_fault``, ``set_locks``,
``tamper_settings``, its API methods standing in for a person in Zoom's web portal) or the
helpers below, and reads Zoom's side the way Zoom would answer it.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
from werkzeug.test import Client

from companion.zoom import client_from_config
from companion.zoom.auth import TokenCache
from companion.zoom.budget import RequestBudget
from companion.zoom.client import ZoomClient
from companion.zoom.sandbox import Sandbox, create_sandbox_app
from companion.zoom.sandbox.errors import ZoomApiError

from .servers import WsgiServer

# Never resolved: requests to it are mounted onto the in-process transport.
IN_PROCESS_URL = "https://zoom-sandbox.test"
WEBHOOK_SECRET = "sandbox-webhook-secret-for-tests-0123456789"

# Each client operation (the names ``ZoomClient.calls`` counts) as the sandbox routes it: the
# method and the path template Zoom's reference writes (what a fault's ``route`` names).
ROUTES: dict[str, tuple[str, str]] = {
    "create_meeting": ("POST", "/v2/users/{userId}/meetings"),
    "list_meetings": ("GET", "/v2/users/{userId}/meetings"),
    "get_meeting": ("GET", "/v2/meetings/{meetingId}"),
    "update_meeting": ("PATCH", "/v2/meetings/{meetingId}"),
    "delete_meeting": ("DELETE", "/v2/meetings/{meetingId}"),
    "update_meeting_status": ("PUT", "/v2/meetings/{meetingId}/status"),
    "add_registrant": ("POST", "/v2/meetings/{meetingId}/registrants"),
    "list_registrants": ("GET", "/v2/meetings/{meetingId}/registrants"),
    "get_registrant": ("GET", "/v2/meetings/{meetingId}/registrants/{registrantId}"),
    "update_registrant_status": ("PUT", "/v2/meetings/{meetingId}/registrants/status"),
    "delete_registrant": ("DELETE", "/v2/meetings/{meetingId}/registrants/{registrantId}"),
}

# Zoom's own wording of its daily caps (on registering one email, which the sandbox also
# enforces, and on one user's meeting creates and updates): the client tells a daily limit
# from a per-second one by it.
REGISTRANT_DAILY_LIMIT = {
    "code": 429,
    "message": "You have exceeded the daily rate limit (3) of Add Meeting Registrant API "
    "requests for the registrant. You can resume these requests at GMT 00:00:00.",
}
MEETING_DAILY_LIMIT = {
    "code": 429,
    "message": "You have exceeded the daily rate limit (100) of Meeting Create/Update API "
    "requests permitted for this particular user. You may resume these requests at GMT 00:00:00.",
}


@dataclass(frozen=True)
class Sent:
    """One request as it left companion's client (what Zoom was told)."""

    method: str
    path: str
    query: str
    body: bytes

    def __str__(self) -> str:
        return f"{self.method} {self.path}?{self.query} {self.body.decode('utf-8', 'replace')}"


class WsgiTransport(requests.adapters.BaseAdapter):
    """A ``requests`` transport that hands each request to a WSGI app in this thread.

    Werkzeug's test client builds the WSGI environ and runs the app; the answer comes back as a
    urllib3 response, so ``requests`` treats it exactly as one read from a socket (redirects,
    streaming, ``raise_for_status``). A ``ConnectionError`` out of the app (the sandbox's
    ``drop`` fault) becomes ``requests.ConnectionError``: the client sees no answer at all.
    """

    def __init__(self, app: Any):
        super().__init__()
        self._client = Client(app, use_cookies=False)
        self._build = requests.adapters.HTTPAdapter()
        self.sent: list[Sent] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.sent.append(Sent(request.method or "GET", parts.path, parts.query, bytes(body)))
        try:
            answer = self._client.open(
                parts.path,
                base_url=f"{parts.scheme}://{parts.netloc}",
                query_string=parts.query,
                method=request.method,
                headers=list(request.headers.items()),
                data=bytes(body),
            )
        except ConnectionError as exc:
            raise requests.ConnectionError(exc, request=request) from exc
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.get_data()),
            headers=list(answer.headers.items()),
            status=answer.status_code,
            reason=answer.status.partition(" ")[2],
            preload_content=False,
            decode_content=False,
        )
        return self._build.build_response(request, raw)

    def close(self) -> None:
        self._build.close()


class SandboxClock:
    """Zoom's time, shared by the sandbox and the client (so token expiry agrees): the real
    time, or the test's ``now`` until :meth:`set` moves it."""

    def __init__(self, now: Callable[[], dt.datetime] | None = None):
        self._now = now

    def __call__(self) -> float:
        return time.time() if self._now is None else self._now().timestamp()

    def set(self, moment: dt.datetime) -> None:
        self._now = lambda: moment


# Free in-process sandbox apps by their configuration (see SandboxZoom.__init__).
_POOL: dict[tuple[Any, ...] | None, list[Any]] = {}


class SandboxZoom:
    """The sandbox app, its state (``.state``), and companion's client on it (``.client``)."""

    def __init__(
        self,
        store: str = ":memory:",
        *,
        http: bool = False,
        now: Callable[[], dt.datetime] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = WEBHOOK_SECRET,
        timeout: float = 2,
        max_retries: int | None = None,
        **sandbox_options: Any,
    ):
        self.clock = SandboxClock(now)
        self.server = WsgiServer() if http else None
        self.url = self.server.url if self.server else IN_PROCESS_URL
        # An in-process sandbox in memory is taken from the pool when one is free: building its
        # Flask app (compiling some fifty routes) costs more than most tests that use it.
        self._pool_key: tuple[Any, ...] | None = None
        if self.server is None and store == ":memory:":
            self._pool_key = (webhook_url, webhook_secret, tuple(sorted(sandbox_options.items())))
        pooled = _POOL.get(self._pool_key, []) if self._pool_key else []
        if pooled:
            self.app = pooled.pop()
            self.state: Sandbox = self.app.extensions["zoom_sandbox"]
            self.state.clock = self.clock
        else:
            self.app = create_sandbox_app(
                store,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                public_url=self.url,
                clock=self.clock,
                **sandbox_options,
            )
            self.state = self.app.extensions["zoom_sandbox"]
        session = requests.Session()
        self.transport: WsgiTransport | None = None
        if self.server is not None:
            self.server.start(self.app)
        else:
            self.transport = WsgiTransport(self.app)
            session.mount(IN_PROCESS_URL + "/", self.transport)
        self.client: ZoomClient = client_from_config(
            {"ZOOM_MODE": "sandbox", "SANDBOX_URL": self.url, "ZOOM_TIMEOUT_SECONDS": timeout},
            http=session,
            # A client of its own: no token or budget is shared with another test's sandbox.
            token_cache=TokenCache(),
            # A test's few calls never wait for Zoom's per-second pacing (test_budget.py has it).
            budget=RequestBudget(burst=1000.0),
            clock=self.clock,
            # In process the services' own retries are under test, so one fault is one failure;
            # over HTTP the client retries once, quickly, as the integration tests expect.
            max_retries=(1 if http else 0) if max_retries is None else max_retries,
            retry_base=0.01,
            retry_cap=0.05,
        )

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()
        if self._pool_key is None:
            self.state.close()
            return
        # Back to the pool as a new account: no meetings, registrants, locks, faults or counts.
        self.state.reset()
        self.state.webhook_transport = None
        _POOL.setdefault(self._pool_key, []).append(self.app)
        self._pool_key = None

    # --- faults ---------------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        *,
        status: int | None = None,
        drop: bool = False,
        after: bool = False,
        times: int = 1,
        **spec: Any,
    ) -> None:
        """Make the next ``times`` calls of a client operation fail in the sandbox: answer with
        ``status``, or ``drop`` the connection (no answer: the client's connection error);
        ``after`` carries the request out first, so the change is made and the answer lost."""
        method, route = ROUTES[operation]
        fault: dict[str, Any] = {"route": route, "method": method, "count": times, **spec}
        if status is not None:
            fault["status"] = status
        if drop:
            fault["drop"] = True
        if after:
            fault["after"] = True
        self.state.add_fault(fault)

    # --- Zoom's side, as Zoom would answer ------------------------------------------------------

    def meeting(self, meeting_id: int) -> dict[str, Any]:
        """The meeting as Zoom's API answers it, every occurrence included."""
        return self.state.get_meeting(meeting_id, show_previous=True)

    def meeting_ids(self) -> list[int]:
        """The meetings the account has (deleted ones are gone)."""
        page = self.state.list_meetings("me", kind=None, page_size="300", next_page_token=None)
        return [int(m["id"]) for m in page["meetings"]]

    def meetings(self) -> list[dict[str, Any]]:
        """The account's meetings as the client lists them."""
        return list(self.client.iter_meetings("me"))

    def exists(self, meeting_id: int) -> bool:
        try:
            self.state.get_meeting(meeting_id)
        except ZoomApiError:
            return False
        return True

    def registrant(self, meeting_id: int, registrant_id: str) -> dict[str, Any]:
        return self.state.get_registrant(meeting_id, registrant_id)

    def registrants(self, meeting_id: int, status: str = "approved") -> list[dict[str, Any]]:
        """The meeting's registrants with that status, as Zoom answers each (join link too)."""
        return [
            self.state.get_registrant(meeting_id, r["id"])
            for r in self.state.registrants_of(meeting_id, status)
        ]

    def approved(self, meeting_id: int) -> list[dict[str, Any]]:
        return self.registrants(meeting_id, "approved")

    @property
    def sent(self) -> list[Sent]:
        """Every request the client sent (in process only)."""
        assert self.transport is not None, "requests are recorded in process only"
        return self.transport.sent

    def sent_to(self, operation: str) -> list[Sent]:
        method, route = ROUTES[operation]
        pattern = route.split("/")
        return [
            s
            for s in self.sent
            if s.method == method
            and len(s.path.split("/")) == len(pattern)
            and all(
                p.startswith("{") or p == part
                for p, part in zip(pattern, s.path.split("/"), strict=True)
            )
        ]
