"""Zoom's meetings paths: a user's meetings (create, list) and one meeting's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request

from .common import bool_arg, json_body

if TYPE_CHECKING:
    from ..core import Sandbox


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("meetings", __name__)

    @bp.post("/v2/users/<user_id>/meetings")
    def meeting_create(user_id: str) -> Response:
        response = jsonify(sandbox.create_meeting(user_id, json_body()))
        response.status_code = 201
        return response

    @bp.get("/v2/users/<user_id>/meetings")
    def meeting_list(user_id: str) -> Response:
        return jsonify(
            sandbox.list_meetings(
                user_id,
                kind=request.args.get("type"),
                page_size=request.args.get("page_size"),
                next_page_token=request.args.get("next_page_token"),
            )
        )

    @bp.get("/v2/meetings/<meeting_id>")
    def meeting_get(meeting_id: str) -> Response:
        return jsonify(
            sandbox.get_meeting(
                meeting_id,
                occurrence_id=request.args.get("occurrence_id"),
                show_previous=bool_arg("show_previous_occurrences"),
            )
        )

    @bp.patch("/v2/meetings/<meeting_id>")
    def meeting_update(meeting_id: str) -> Response:
        sandbox.update_meeting(
            meeting_id, json_body(), occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    @bp.delete("/v2/meetings/<meeting_id>")
    def meeting_delete(meeting_id: str) -> Response:
        sandbox.delete_meeting(meeting_id, occurrence_id=request.args.get("occurrence_id"))
        return Response(status=204)

    @bp.put("/v2/meetings/<meeting_id>/status")
    def meeting_status(meeting_id: str) -> Response:
        sandbox.meeting_status(meeting_id, json_body())
        return Response(status=204)

    return bp
