"""Domain errors and the one place they become HTTP.

Services raise :class:`CompanionError` subclasses that carry data; they know nothing of HTTP.
``init_app`` turns them (and Werkzeug's own HTTP errors) into JSON for the API and into an HTML
page or a flashed form message for the UI. No stack trace ever reaches a user.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class CompanionError(Exception):
    """Base of every domain error: a stable ``code``, a human ``message`` and optional details."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ValidationError(CompanionError):
    """Input was understood but is not acceptable; ``field`` names the culprit when there is one.

    ``problems`` lists every problem (``{"field", "message"}``) when a whole request body was
    checked at once; the first of them is ``field`` and the message."""

    code = "invalid"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        problems: list[dict[str, str]] | None = None,
        **details: Any,
    ):
        super().__init__(message, **details)
        self.field = field
        self.problems = problems


class NotFound(CompanionError):
    code = "not_found"
    status = 404


class Conflict(CompanionError):
    code = "conflict"
    status = 409


class Forbidden(CompanionError):
    code = "forbidden"
    status = 403


class Unauthorized(CompanionError):
    code = "unauthorized"
    status = 401


class Throttled(CompanionError):
    code = "throttled"
    status = 429

    def __init__(self, message: str, *, retry_after: int, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class ExternalServiceError(CompanionError):
    """A service we depend on (Zoom, SMTP) failed; the work is kept and retried."""

    code = "external_service"
    status = 503


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/zoom/")


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    resp = jsonify({"error": body})
    resp.status_code = status
    return resp


def domain_error_response(exc: CompanionError) -> Response:
    """The response for a domain error: JSON under /api/, the error page elsewhere."""
    field = getattr(exc, "field", None)
    if wants_json():
        problems = getattr(exc, "problems", None)
        resp = error_response(exc.status, exc.code, exc.message, field=field, problems=problems)
    else:
        resp = Response(
            render_template("error.html", status=exc.status, message=exc.message),
            status=exc.status,
        )
    if isinstance(exc, Throttled):
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def init_app(app: Flask) -> None:
    @app.errorhandler(CompanionError)
    def _domain_error(exc: CompanionError) -> Any:
        return domain_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        message = exc.description or exc.name
        code = exc.name.lower().replace(" ", "_")
        if wants_json():
            resp = error_response(status, code, message)
        else:
            resp = Response(
                render_template("error.html", status=status, message=message), status=status
            )
        # Keep the Allow header of 405 and similar.
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                resp.headers[key] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "Something went wrong on our side. Nothing was changed; please try again."
        if wants_json():
            return error_response(500, "internal", message)
        return Response(render_template("error.html", status=500, message=message), status=500)
