"""Zoom's OAuth token endpoint (Server-to-Server OAuth, ``grant_type=account_credentials``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request

if TYPE_CHECKING:
    from ..core import Sandbox


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("oauth", __name__)

    @bp.post("/oauth/token")
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

    return bp
