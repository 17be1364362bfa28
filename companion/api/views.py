"""The JSON API: /api/v1, staff bearer tokens, JSON errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from ..access import STAFF, allow, current_user, public
from ..errors import CompanionError
from ..security import csrf
from . import openapi

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer tokens are not sent automatically by browsers, so CSRF does not apply here.
csrf.exempt(bp)


class UnsupportedMediaType(CompanionError):
    code = "unsupported_media_type"
    status = 415


@bp.before_request
def _require_json_body() -> None:
    if request.method in ("POST", "PUT", "PATCH") and not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a clear 400."""
    from ..errors import ValidationError

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", code="bad_json")
    return data


def user_json(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "organisation": {
            "id": user.organisation.id,
            "name": user.organisation.name,
            "timezone": user.organisation.timezone,
        },
    }


@bp.get("/openapi.json")
@public
def openapi_document() -> Any:
    return jsonify(openapi.document())


@bp.get("/me")
@allow(*STAFF)
def me() -> Any:
    return jsonify(user_json(current_user()))
