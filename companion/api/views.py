"""The JSON API: /api/v1, staff bearer tokens, JSON errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, jsonify, request

from ..access import STAFF, allow, current_user, public
from ..errors import CompanionError, ValidationError
from ..security import csrf
from . import openapi


class UnsupportedMediaType(CompanionError):
    code = "unsupported_media_type"
    status = 415


def require_json_body() -> None:
    """Anything sent to the API must be JSON; actions without a body (cancel, verify) send none."""
    sent = bool(request.content_length) or bool(request.headers.get("Content-Type"))
    if request.method in ("POST", "PUT", "PATCH") and sent and not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under /api/v1: bearer tokens (so no CSRF), JSON bodies only."""
    blueprint = Blueprint(name, import_name, url_prefix="/api/v1")
    # Bearer tokens are not sent automatically by browsers, so CSRF does not apply here.
    csrf.exempt(blueprint)
    blueprint.before_request(require_json_body)
    return blueprint


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a clear 422."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", code="bad_json")
    return data


bp = api_blueprint("api", __name__)


def json_time(at: dt.datetime | None) -> str | None:
    """A UTC time as the API writes it everywhere: 2026-01-07T16:00:00Z."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


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
