"""Zoom's cloud recording paths, and the download links of their files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote

from flask import Blueprint, Response, g, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from .. import media
from .common import html_page, json_body

if TYPE_CHECKING:
    from ..core import Sandbox

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# What Zoom answers a recording download with a bad or expired token: 200 and an HTML page.
DOWNLOAD_ERROR_TEXT = (
    "Only the host or a user with permission can download this recording. "
    "The download link or its token is invalid or has expired."
)


def _recording_ref(ref: str) -> str:
    # UUIDs that start with "/" or contain "//" must be double-encoded by the caller; the
    # server has decoded once already, so decode the rest here.
    return unquote(ref) if "%" in ref else ref


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("recordings", __name__)

    @bp.get("/v2/meetings/<path:ref>/recordings")
    def recording_get(ref: str) -> Response:
        return jsonify(
            sandbox.get_recordings(
                _recording_ref(ref),
                include_fields=request.args.get("include_fields"),
                ttl=request.args.get("ttl"),
            )
        )

    @bp.delete("/v2/meetings/<path:ref>/recordings")
    def recording_delete(ref: str) -> Response:
        sandbox.delete_recordings(_recording_ref(ref), action=request.args.get("action"))
        return Response(status=204)

    @bp.delete("/v2/meetings/<path:ref>/recordings/<recording_id>")
    def recording_delete_one(ref: str, recording_id: str) -> Response:
        sandbox.delete_recording_file(
            _recording_ref(ref), recording_id, action=request.args.get("action")
        )
        return Response(status=204)

    @bp.put("/v2/meetings/<path:ref>/recordings/status")
    def recording_status(ref: str) -> Response:
        # recordingStatusUpdate: {"action": "recover"} takes the instance out of the trash.
        sandbox.recover_recordings(_recording_ref(ref), json_body())
        return Response(status=200)

    @bp.get("/v2/users/<user_id>/recordings")
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
                trash_type=request.args.get("trash_type"),
            )
        )

    # --- file downloads --------------------------------------------------------------------

    @bp.get("/rec/download/<file_id>")
    def download(file_id: str) -> BaseResponse:
        doc = sandbox.file_doc(file_id)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        fault = g.get("fault") or {}
        if doc is None or doc["status"] != "completed":
            return html_page("Recording not found", "This recording does not exist.", 404)
        if fault.get("html") or not sandbox.download_token_valid(
            token, doc.get("_instance") or doc["meeting_id"]
        ):
            return html_page("Zoom", DOWNLOAD_ERROR_TEXT)
        return redirect(sandbox.signed_file_path(doc), code=302)

    @bp.get("/rec/files/<file_id>/<name>")
    def recording_file(file_id: str, name: str) -> Response:
        if not sandbox.file_link_valid(file_id, request.args.get("exp"), request.args.get("sig")):
            return html_page("Link expired", "This download link is invalid or has expired.", 403)
        doc = sandbox.file_doc(file_id)
        if doc is None or doc["status"] != "completed":
            return html_page("Recording not found", "This recording does not exist.", 404)
        size = media.source_size(doc["_source"])
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
                pieces = iter([media.source_bytes(source)[start : end + 1]])
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

    @bp.get("/rec/play/<file_id>")
    def recording_play(file_id: str) -> Response:
        return html_page("Recording", f"The sandbox does not play recordings ({file_id}).")

    @bp.get("/rec/share/<token>")
    def recording_share(token: str) -> Response:
        return html_page("Recording", "Shared recordings are not available in the sandbox.")

    return bp
