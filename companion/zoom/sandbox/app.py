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

import html
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, g, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from . import delivery, media
from .core import Sandbox
from .errors import ZoomApiError, bad_request
from .simulate import end_instance, simulate_class

SANDBOX_HEADER = "X-Companion-Sandbox"
EXTENSION_KEY = "zoom_sandbox"
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - companion Zoom sandbox</title></head>
<body><p><strong>companion Zoom sandbox - this is not Zoom.</strong></p>
<h1>{title}</h1><p>{text}</p></body></html>
"""
# What Zoom answers a recording download with a bad or expired token: 200 and an HTML page.
DOWNLOAD_ERROR_TEXT = (
    "Only the host or a user with permission can download this recording. "
    "The download link or its token is invalid or has expired."
)


def _page(title: str, text: str, status: int = 200) -> Response:
    body = HTML_PAGE.format(title=html.escape(title), text=html.escape(text))
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _json_body(*, required: bool = True) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise bad_request("Request Body should be a valid JSON object.")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Request Body should be a valid JSON object.") from None


def _bool_arg(name: str) -> bool:
    return str(request.args.get(name, "")).lower() in ("1", "true", "yes")


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


def _recording_ref(ref: str) -> str:
    # UUIDs that start with "/" or contain "//" must be double-encoded by the caller; the
    # server has decoded once already, so decode the rest here.
    return unquote(ref) if "%" in ref else ref


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
        fault = sandbox.take_fault(request.method, path)
        if fault:
            if fault.get("delay"):
                time.sleep(float(fault["delay"]))
            status = fault.get("status")
            if status:
                return _fault_response(fault, status)
            g.fault = fault
        if path.startswith("/v2/"):
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else None
            sandbox.check_access_token(token)
        return None

    @app.after_request
    def label(response: Response) -> Response:
        response.headers[SANDBOX_HEADER] = "1"
        if request.path.startswith(("/v2/", "/oauth/", "/rec/download/")):
            rule = _zoom_path(request.url_rule.rule) if request.url_rule else request.path
            sandbox.count_call(request.method, rule, response.status_code)
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

    # --- health and OAuth ------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "sandbox": True, "service": "companion Zoom sandbox"})

    @app.post("/oauth/token")
    def oauth_token() -> Response:
        values = request.values
        auth = request.authorization
        body = sandbox.oauth_token(
            grant_type=values.get("grant_type"),
            account_id=values.get("account_id"),
            client_id=auth.username if auth and auth.type == "basic" else None,
            client_secret=auth.password if auth and auth.type == "basic" else None,
        )
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- meetings --------------------------------------------------------------------------

    @app.post("/v2/users/<user_id>/meetings")
    def meeting_create(user_id: str) -> Response:
        response = jsonify(sandbox.create_meeting(user_id, _json_body()))
        response.status_code = 201
        return response

    @app.get("/v2/users/<user_id>/meetings")
    def meeting_list(user_id: str) -> Response:
        return jsonify(
            sandbox.list_meetings(
                user_id,
                kind=request.args.get("type"),
                page_size=request.args.get("page_size"),
                next_page_token=request.args.get("next_page_token"),
            )
        )

    @app.get("/v2/meetings/<meeting_id>")
    def meeting_get(meeting_id: str) -> Response:
        return jsonify(
            sandbox.get_meeting(
                meeting_id,
                occurrence_id=request.args.get("occurrence_id"),
                show_previous=_bool_arg("show_previous_occurrences"),
            )
        )

    @app.patch("/v2/meetings/<meeting_id>")
    def meeting_update(meeting_id: str) -> Response:
        sandbox.update_meeting(
            meeting_id, _json_body(), occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    @app.delete("/v2/meetings/<meeting_id>")
    def meeting_delete(meeting_id: str) -> Response:
        sandbox.delete_meeting(meeting_id, occurrence_id=request.args.get("occurrence_id"))
        return Response(status=204)

    @app.put("/v2/meetings/<meeting_id>/status")
    def meeting_status(meeting_id: str) -> Response:
        sandbox.meeting_status(meeting_id, _json_body())
        return Response(status=204)

    # --- registrants -----------------------------------------------------------------------

    @app.post("/v2/meetings/<meeting_id>/registrants")
    def registrant_create(meeting_id: str) -> Response:
        body = sandbox.add_registrant(
            meeting_id, _json_body(), occurrence_ids=request.args.get("occurrence_ids")
        )
        response = jsonify(body)
        response.status_code = 201
        return response

    @app.get("/v2/meetings/<meeting_id>/registrants")
    def registrant_list(meeting_id: str) -> Response:
        return jsonify(
            sandbox.list_registrants(
                meeting_id,
                status=request.args.get("status"),
                page_size=request.args.get("page_size"),
                next_page_token=request.args.get("next_page_token"),
                occurrence_id=request.args.get("occurrence_id"),
            )
        )

    @app.put("/v2/meetings/<meeting_id>/registrants/status")
    def registrant_status(meeting_id: str) -> Response:
        sandbox.registrant_status(
            meeting_id, _json_body(), occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    @app.get("/v2/meetings/<meeting_id>/registrants/<registrant_id>")
    def registrant_get(meeting_id: str, registrant_id: str) -> Response:
        return jsonify(sandbox.get_registrant(meeting_id, registrant_id))

    @app.delete("/v2/meetings/<meeting_id>/registrants/<registrant_id>")
    def registrant_delete(meeting_id: str, registrant_id: str) -> Response:
        sandbox.delete_registrant(
            meeting_id, registrant_id, occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    # --- recordings ------------------------------------------------------------------------

    @app.get("/v2/meetings/<path:ref>/recordings")
    def recording_get(ref: str) -> Response:
        return jsonify(
            sandbox.get_recordings(
                _recording_ref(ref),
                include_fields=request.args.get("include_fields"),
                ttl=request.args.get("ttl"),
            )
        )

    @app.delete("/v2/meetings/<path:ref>/recordings")
    def recording_delete(ref: str) -> Response:
        sandbox.delete_recordings(_recording_ref(ref), action=request.args.get("action"))
        return Response(status=204)

    @app.delete("/v2/meetings/<path:ref>/recordings/<recording_id>")
    def recording_delete_one(ref: str, recording_id: str) -> Response:
        sandbox.delete_recording_file(
            _recording_ref(ref), recording_id, action=request.args.get("action")
        )
        return Response(status=204)

    @app.get("/v2/users/<user_id>/recordings")
    def recording_list(user_id: str) -> Response:
        return jsonify(
            sandbox.list_user_recordings(
                user_id,
                from_=request.args.get("from"),
                to=request.args.get("to"),
                page_size=request.args.get("page_size"),
                next_page_token=request.args.get("next_page_token"),
                trash=request.args.get("trash"),
                meeting_id=request.args.get("meeting_id"),
            )
        )

    # --- file downloads --------------------------------------------------------------------

    @app.get("/rec/download/<file_id>")
    def download(file_id: str) -> Response:
        doc = sandbox.file_doc(file_id)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        fault = g.get("fault") or {}
        if doc is None or doc["status"] != "completed":
            return _page("Recording not found", "This recording does not exist.", 404)
        if fault.get("html") or not sandbox.download_token_valid(token, doc["meeting_id"]):
            return _page("Zoom", DOWNLOAD_ERROR_TEXT)
        return redirect(sandbox.signed_file_path(doc), code=302)

    @app.get("/rec/files/<file_id>/<name>")
    def recording_file(file_id: str, name: str) -> Response:
        if not sandbox.file_link_valid(file_id, request.args.get("exp"), request.args.get("sig")):
            return _page("Link expired", "This download link is invalid or has expired.", 403)
        doc = sandbox.file_doc(file_id)
        if doc is None or doc["status"] != "completed":
            return _page("Recording not found", "This recording does not exist.", 404)
        size = int(doc["file_size"])
        start, end = 0, size - 1
        status = 200
        wanted = request.headers.get("Range")
        match = _RANGE_RE.match(wanted or "")
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(0, size - int(match.group(2)))
            if start > end or start >= size:
                response = Response(status=416)
                response.headers["Content-Range"] = f"bytes */{size}"
                return response
            status = 206
        truncate = (g.get("fault") or {}).get("truncate_after")
        source = doc["_source"]

        def body() -> Iterator[bytes]:
            sent = 0
            if source["kind"] == "synthetic":
                pieces: Iterator[bytes] = media.synthetic_stream(end + 1, source["seed"], start)
            else:
                pieces = iter([media.media_bytes(source["name"])[start : end + 1]])
            for piece in pieces:
                if truncate is not None and sent + len(piece) > int(truncate):
                    # Simulate a connection cut mid-file: fewer bytes than Content-Length.
                    yield piece[: max(0, int(truncate) - sent)]
                    return
                sent += len(piece)
                yield piece

        response = Response(
            body(),
            status=status,
            content_type=media.CONTENT_TYPES.get(doc["file_type"], "application/octet-stream"),
            direct_passthrough=True,
        )
        response.headers["Content-Length"] = str(end - start + 1)
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return response

    @app.get("/rec/play/<file_id>")
    def recording_play(file_id: str) -> Response:
        return _page("Recording", f"The sandbox does not play recordings ({file_id}).")

    @app.get("/rec/share/<token>")
    def recording_share(token: str) -> Response:
        return _page("Recording", "Shared recordings are not available in the sandbox.")

    # --- join and start links --------------------------------------------------------------

    @app.get("/j/<int:meeting_id>")
    def join_page(meeting_id: int) -> Response:
        try:
            doc = sandbox.meeting_doc(meeting_id)
        except ZoomApiError:
            return _page("Invalid meeting ID", "This meeting link is not valid.", 404)
        settings = sandbox.effective_settings(meeting_id)
        if settings.get("approval_type") in (0, 1):
            return _page(
                "Registration required",
                "This meeting requires registration; use your own registration link.",
                403,
            )
        return _page("Join meeting", f"Zoom would now open '{doc['topic']}'.")

    @app.get("/w/<int:meeting_id>")
    def registrant_join_page(meeting_id: int) -> Response:
        try:
            doc = sandbox.meeting_doc(meeting_id)
        except ZoomApiError:
            return _page("Invalid meeting ID", "This meeting link is not valid.", 404)
        reg = sandbox.registrant_by_token(meeting_id, request.args.get("tk", ""))
        if reg is None or reg["status"] != "approved":
            return _page("Invalid link", "This registration link is not valid.", 403)
        who = " ".join(p for p in (reg.get("first_name"), reg.get("last_name")) if p)
        return _page("Join meeting", f"Zoom would now let {who} into '{doc['topic']}'.")

    @app.get("/s/<int:meeting_id>")
    def start_page(meeting_id: int) -> Response:
        if not sandbox.start_token_valid(request.args.get("zak"), meeting_id):
            return _page("Link expired", "This start link is invalid or has expired.", 403)
        doc = sandbox.meeting_doc(meeting_id)
        return _page("Start meeting", f"Zoom would now start '{doc['topic']}' as the host.")

    @app.get("/meeting/register/<token>")
    def registration_page(token: str) -> Response:
        return _page(
            "Registration",
            "Self-registration is closed: registrants are added by companion.",
            403,
        )

    # --- admin -----------------------------------------------------------------------------

    @app.get("/_sandbox/")
    @app.get("/_sandbox")
    def admin_index() -> Response:
        return Response(__doc__ or "", content_type="text/plain; charset=utf-8")

    @app.get("/_sandbox/state")
    def admin_state() -> Response:
        return jsonify(sandbox.state())

    @app.post("/_sandbox/reset")
    def admin_reset() -> Response:
        sandbox.reset()
        return jsonify({"reset": True})

    @app.get("/_sandbox/stats")
    def admin_stats() -> Response:
        return jsonify(sandbox.stats())

    @app.delete("/_sandbox/stats")
    def admin_stats_reset() -> Response:
        sandbox.reset_stats()
        return Response(status=204)

    @app.get("/_sandbox/locks")
    def admin_locks() -> Response:
        return jsonify(sandbox.locks())

    @app.post("/_sandbox/locks")
    def admin_set_locks() -> Response:
        return jsonify(sandbox.set_locks(_json_body()))

    @app.delete("/_sandbox/locks")
    def admin_clear_locks() -> Response:
        sandbox.clear_locks()
        return Response(status=204)

    @app.get("/_sandbox/faults")
    def admin_faults() -> Response:
        return jsonify(sandbox.faults())

    @app.post("/_sandbox/faults")
    def admin_add_fault() -> Response:
        body = _json_body()
        specs = body if isinstance(body, list) else [body]
        added = [sandbox.add_fault(spec) for spec in specs]
        response = jsonify(added if isinstance(body, list) else added[0])
        response.status_code = 201
        return response

    @app.delete("/_sandbox/faults")
    def admin_clear_faults() -> Response:
        sandbox.clear_faults()
        return Response(status=204)

    @app.post("/_sandbox/meetings/<meeting_id>/settings")
    def admin_tamper(meeting_id: str) -> Response:
        return jsonify(sandbox.tamper_settings(meeting_id, _json_body()))

    @app.post("/_sandbox/meetings/<meeting_id>/end")
    def admin_end(meeting_id: str) -> Response:
        doc = sandbox.meeting_doc(meeting_id)
        if not doc.get("live_instance"):
            raise bad_request("No class of this meeting is live.")
        return jsonify(end_instance(sandbox, doc["live_instance"]))

    @app.post("/_sandbox/simulate")
    def admin_simulate() -> Response:
        body = _json_body()
        if not isinstance(body, dict) or "meeting_id" not in body:
            raise bad_request('Send {"meeting_id": ..., optional "occurrence_id", ...}.')
        participants = body.get("participants")
        count = body.get("participant_count")
        if participants is None and count is not None:
            participants = _first_participants(sandbox, body["meeting_id"], int(count))
        summary = simulate_class(
            sandbox,
            body["meeting_id"],
            occurrence_id=body.get("occurrence_id"),
            participants=participants,
            teacher=body.get("teacher") or "Teacher",
            start_at=body.get("start_at"),
            minutes=body.get("minutes"),
            end=body.get("end", True),
            record=body.get("record"),
            recording_bytes=body.get("recording_bytes"),
            pace=float(body.get("pace") or 0),
        )
        response = jsonify(summary)
        response.status_code = 201
        return response

    @app.get("/_sandbox/deliveries")
    def admin_deliveries() -> Response:
        since = int(request.args.get("since") or 0)
        return jsonify(delivery.deliveries(sandbox, since_id=since))

    @app.get("/_sandbox/deliveries/<int:delivery_id>")
    def admin_delivery(delivery_id: int) -> Response:
        try:
            return jsonify(delivery.delivery(sandbox, delivery_id))
        except KeyError:
            raise ZoomApiError(404, 404, f"No delivery {delivery_id}.") from None

    @app.post("/_sandbox/deliveries/<int:delivery_id>/redeliver")
    def admin_redeliver(delivery_id: int) -> Response:
        try:
            return jsonify(delivery.redeliver(sandbox, delivery_id))
        except KeyError:
            raise ZoomApiError(404, 404, f"No delivery {delivery_id}.") from None

    @app.post("/_sandbox/deliver")
    def admin_deliver() -> Response:
        attempted = delivery.deliver_due(sandbox, force=_bool_arg("force"))
        return jsonify({"attempted": attempted})

    @app.post("/_sandbox/validate-endpoint")
    def admin_validate() -> Response:
        return jsonify(delivery.validate_endpoint(sandbox))

    @app.post("/_sandbox/tokens/revoke")
    def admin_revoke() -> Response:
        return jsonify({"revoked": sandbox.revoke_access_tokens()})

    return app


def _first_participants(sandbox: Sandbox, meeting_id: Any, count: int) -> list[Any]:
    """``count`` participants: approved registrants first, then guests to make up the number."""
    doc = sandbox.meeting_doc(meeting_id)
    regs = [r["id"] for r in sandbox.registrants_of(doc["id"], "approved")][:count]
    guests = [{"name": f"Guest {n + 1}"} for n in range(count - len(regs))]
    return [*regs, *guests]


def sandbox_of(app: Flask) -> Sandbox:
    return app.extensions[EXTENSION_KEY]
