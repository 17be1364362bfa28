"""The pages a meeting's join, start and registration links open (Zoom would open its app)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from ..errors import ZoomApiError
from .common import html_page

if TYPE_CHECKING:
    from ..core import Sandbox


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("links", __name__)

    @bp.get("/j/<int:meeting_id>")
    def join_page(meeting_id: int) -> Response:
        try:
            doc = sandbox.meeting_doc(meeting_id)
        except ZoomApiError:
            return html_page("Invalid meeting ID", "This meeting link is not valid.", 404)
        settings = sandbox.effective_settings(meeting_id)
        if settings.get("approval_type") in (0, 1):
            return html_page(
                "Registration required",
                "This meeting requires registration; use your own registration link.",
                403,
            )
        return html_page("Join meeting", f"Zoom would now open '{doc['topic']}'.")

    @bp.get("/w/<int:meeting_id>")
    def registrant_join_page(meeting_id: int) -> Response:
        try:
            doc = sandbox.meeting_doc(meeting_id)
        except ZoomApiError:
            return html_page("Invalid meeting ID", "This meeting link is not valid.", 404)
        reg = sandbox.registrant_by_token(meeting_id, request.args.get("tk", ""))
        if reg is None or reg["status"] != "approved":
            return html_page("Invalid link", "This registration link is not valid.", 403)
        who = " ".join(p for p in (reg.get("first_name"), reg.get("last_name")) if p)
        return html_page("Join meeting", f"Zoom would now let {who} into '{doc['topic']}'.")

    @bp.get("/s/<int:meeting_id>")
    def start_page(meeting_id: int) -> Response:
        if not sandbox.start_token_valid(request.args.get("zak"), meeting_id):
            return html_page("Link expired", "This start link is invalid or has expired.", 403)
        doc = sandbox.meeting_doc(meeting_id)
        return html_page("Start meeting", f"Zoom would now start '{doc['topic']}' as the host.")

    @bp.get("/meeting/register/<token>")
    def registration_page(token: str) -> Response:
        return html_page(
            "Registration",
            "Self-registration is closed: registrants are added by companion.",
            403,
        )

    return bp
