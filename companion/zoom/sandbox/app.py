"""The sandbox as a WSGI app: Zoom's paths, status codes and error bodies, plus admin endpoints.

It is a separate Flask app (never registered on companion's app) so that it can run as its own
process, like Zoom. Every response carries ``X-Companion-Sandbox: 1``.

Zoom API (bearer token from ``POST /oauth/token`` required under ``/v2``)::

    POST   /oauth/token                                  account_credentials, HTTP Basic
    POST   /v2/users/{userId}/meetings                   GET  (list, paginated)
    GET    /v2/meetings/{id}[?occurrence_id=&show_previous_occurrences=]
    PATCH  /v2/meetings/{id}[?occurrence_id=]            DELETE /v2/meetings/{id}[?occurrence_id=]
    PUT    /v2/meetings/{id}/status                      {"action": "end" | "recover"}
    POST   /v2/meetings/{id}/registrants[?occurrence_ids=]   GET (status filter, paginated)
    GET    /v2/meetings/{id}/registrants/{registrantId}      DELETE the same
    PUT    /v2/meetings/{id}/registrants/status          {"action", "registrants": [{id, email}]}
    GET    /v2/meetings/{id or uuid}/recordings[?include_fields=download_access_token&ttl=]
    DELETE /v2/meetings/{id or uuid}/recordings[?action=trash|delete]
    DELETE /v2/meetings/{id or uuid}/recordings/{recordingId}[?action=]
    GET    /v2/users/{userId}/recordings[?from=&to=&page_size=&next_page_token=&trash=]
    GET    /rec/download/{fileId}   Authorization: Bearer <download token or access token>
                                    -> 302 to /rec/files/...; a bad token -> 200 HTML error page

Admin (not Zoom; no auth, loopback only)::

    GET /_sandbox/state     POST /_sandbox/reset     GET|DELETE /_sandbox/stats
    GET|POST|DELETE /_sandbox/locks        {"waiting_room": false} overrides that setting
    GET|POST|DELETE /_sandbox/faults       {"path": "/v2/meetings/*", "status": 429, ...}
    POST /_sandbox/meetings/{id}/settings  change settings as a person in Zoom's portal would
    POST /_sandbox/simulate                {"meeting_id", "occurrence_id", "participants", ...}
    GET  /_sandbox/deliveries[?since=]     GET /_sandbox/deliveries/{id}
    POST /_sandbox/deliveries/{id}/redeliver   POST /_sandbox/deliver[?force=1]
    POST /_sandbox/validate-endpoint       POST /_sandbox/tokens/revoke
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .core import Sandbox
from .errors import ZoomApiError
from .routes import admin, links, meetings, oauth, recordings, registrants

SANDBOX_HEADER = "X-Companion-Sandbox"
EXTENSION_KEY = "zoom_sandbox"
DROPPED_KEY = "companion.sandbox.dropped"

_ZOOM_PARAMS = {
    "<user_id>": "{userId}",
    "<meeting_id>": "{meetingId}",
    "<path:ref>": "{meetingId}",
    "<registrant_id>": "{registrantId}",
    "<recording_id>": "{recordingId}",
    "<file_id>": "{fileId}",
}


def _zoom_path(rule: str) -> str:
    """``/v2/meetings/<meeting_id>`` -> ``/v2/meetings/{meetingId}``, as Zoom's docs write it."""
    for flask_name, zoom_name in _ZOOM_PARAMS.items():
        rule = rule.replace(flask_name, zoom_name)
    return rule


def create_sandbox_app(
    store_path: str,
    *,
    webhook_url: str | None,
    webhook_secret: str,
    public_url: str,
    **options: Any,
) -> Flask:
    """Build the sandbox WSGI app. ``options`` go to :class:`Sandbox` (clock, retry_delays, ...).

    The :class:`Sandbox` is ``app.extensions["zoom_sandbox"]``.
    """
    sandbox = Sandbox(
        store_path,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        public_url=public_url,
        **options,
    )
    app = Flask("companion.zoom.sandbox")
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = sandbox

    @app.before_request
    def faults_and_auth() -> Response | None:
        path = request.path
        if path.startswith("/_sandbox") or path == "/healthz":
            return None
        route = _zoom_path(request.url_rule.rule) if request.url_rule else ""
        fault = sandbox.take_fault(request.method, path, route)
        if fault:
            if fault.get("delay"):
                time.sleep(float(fault["delay"]))
            status = fault.get("status")
            if fault.get("after"):
                g.fault_after = fault  # the request is carried out; its answer is lost
            elif fault.get("drop"):
                return _dropped()
            elif status:
                return _fault_response(fault, status)
            else:
                g.fault = fault
        if path.startswith("/v2/"):
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else None
            sandbox.check_access_token(token)
        return None

    @app.after_request
    def label(response: Response) -> Response:
        after = g.pop("fault_after", None)
        if after:
            # What the request changed stays changed (the sandbox's methods commit as they go).
            response = _dropped() if after.get("drop") else _fault_response(after, after["status"])
        response.headers[SANDBOX_HEADER] = "1"
        if request.path.startswith(("/v2/", "/oauth/", "/rec/download/")):
            rule = _zoom_path(request.url_rule.rule) if request.url_rule else request.path
            status = "dropped" if request.environ.get(DROPPED_KEY) else response.status_code
            sandbox.count_call(request.method, rule, status)
            response.headers.setdefault("x-zm-trackingid", "v=2.0;clid=sandbox")
        return response

    @app.errorhandler(ZoomApiError)
    def zoom_error(exc: ZoomApiError) -> Response:
        if request.path.startswith("/oauth/"):
            kind = {401: "invalid_client"}.get(exc.status, "invalid_request")
            if exc.message == "unsupported grant type":
                kind = "unsupported_grant_type"
            response = jsonify({"reason": exc.message, "error": kind})
        else:
            response = jsonify(exc.body())
        response.status_code = exc.status
        for key, value in exc.headers.items():
            response.headers[key] = value
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = jsonify({"code": exc.code, "message": exc.description})
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:  # pragma: no cover - a sandbox bug
        app.logger.exception("sandbox error")
        response = jsonify({"code": 500, "message": f"Sandbox error: {type(exc).__name__}"})
        response.status_code = 500
        return response

    def _dropped() -> Response:
        # The answer is never sent: DropConnection below closes the connection instead.
        request.environ[DROPPED_KEY] = True
        return Response(status=204)

    def _fault_response(fault: dict[str, Any], status: int) -> Response:
        if fault.get("body") is not None:
            body = fault["body"]
        elif status == 429:
            body = {
                "code": 429,
                "message": "You have reached the maximum per-second rate limit for this API. "
                "Try again later.",
            }
        else:
            body = {"code": status, "message": f"Injected sandbox fault (HTTP {status})."}
        response = jsonify(body)
        response.status_code = status
        if fault.get("retry_after") is not None:
            response.headers["Retry-After"] = str(fault["retry_after"])
        if status == 429:
            response.headers["X-RateLimit-Category"] = "Light"
            response.headers["X-RateLimit-Type"] = "QPS"
        return response

    # --- health and the endpoint list ------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "sandbox": True, "service": "companion Zoom sandbox"})

    @app.get("/_sandbox/")
    @app.get("/_sandbox")
    def admin_index() -> Response:
        return Response(__doc__ or "", content_type="text/plain; charset=utf-8")

    # Zoom's resources, then the sandbox's own admin endpoints (``routes/``).
    for routes in (oauth, meetings, registrants, recordings, links, admin):
        app.register_blueprint(routes.blueprint(sandbox))

    app.wsgi_app = DropConnection(app.wsgi_app)  # type: ignore[method-assign]
    return app


class AnswerDropped(ConnectionResetError):
    """A fault closed the connection without an answer (see :class:`DropConnection`)."""


class DropConnection:
    """WSGI middleware: an answer a ``drop`` fault marked is never sent; the connection closes.

    This is what a client sees when the network or Zoom's edge loses a request or its answer: no
    status at all, only a closed connection (or a timeout). Whether Zoom carried the request out
    is then unknown to the client, which is why a request that is not idempotent (a POST) must
    not simply be sent again (RFC 9110, section 9.2.2: a client may repeat a request after "a
    communication failure ... before the client is able to read the server's response" only when
    it is idempotent). With ``after`` the sandbox first makes the change, so a test can see that
    companion looks for what a lost create made instead of making it twice.

    Under werkzeug's server the socket is shut and :class:`AnswerDropped` (a
    ``ConnectionError``, which werkzeug treats as a dropped connection) ends the request without a
    reply; an in-process caller (the tests' transport) receives the exception itself. Servers that
    do not hand the app its socket (waitress, for ``companion sandbox serve``) answer it with 500.
    """

    def __init__(self, wsgi_app: Any):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        held: list[tuple[Any, ...]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held.append((status, headers, exc_info))
            return _no_write

        body = self.wsgi_app(environ, hold)
        if environ.get(DROPPED_KEY):
            if hasattr(body, "close"):
                body.close()
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise AnswerDropped(f"sandbox fault: no answer to {environ.get('PATH_INFO')}")
        start_response(*held[0])
        return body


def _no_write(data: bytes) -> None:  # pragma: no cover - Flask never uses write()
    raise RuntimeError("the sandbox app does not write() its bodies")


def sandbox_of(app: Flask) -> Sandbox:
    sandbox: Sandbox = app.extensions[EXTENSION_KEY]
    return sandbox
