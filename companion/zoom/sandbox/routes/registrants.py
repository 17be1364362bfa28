"""Zoom's registrants paths: add, list, get, approve or deny, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request

from .common import json_body

if TYPE_CHECKING:
    from ..core import Sandbox


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("registrants", __name__)

    @bp.post("/v2/meetings/<meeting_id>/registrants")
    def registrant_create(meeting_id: str) -> Response:
        body = sandbox.add_registrant(
            meeting_id, json_body(), occurrence_ids=request.args.get("occurrence_ids")
        )
        response = jsonify(body)
        response.status_code = 201
        return response

    @bp.get("/v2/meetings/<meeting_id>/registrants")
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

    @bp.put("/v2/meetings/<meeting_id>/registrants/status")
    def registrant_status(meeting_id: str) -> Response:
        sandbox.registrant_status(
            meeting_id, json_body(), occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    @bp.get("/v2/meetings/<meeting_id>/registrants/<registrant_id>")
    def registrant_get(meeting_id: str, registrant_id: str) -> Response:
        return jsonify(sandbox.get_registrant(meeting_id, registrant_id))

    @bp.delete("/v2/meetings/<meeting_id>/registrants/<registrant_id>")
    def registrant_delete(meeting_id: str, registrant_id: str) -> Response:
        sandbox.delete_registrant(
            meeting_id, registrant_id, occurrence_id=request.args.get("occurrence_id")
        )
        return Response(status=204)

    return bp
