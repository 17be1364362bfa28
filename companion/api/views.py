"""The JSON API: /api/v1, staff bearer tokens, JSON errors, one declaration per operation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request

from ..access import STAFF, allow, current_user, public
from ..errors import CompanionError, ValidationError
from ..security import csrf
from . import openapi
from .openapi import Operation
from .shapes import Answer, Body, Me, Query

View = TypeVar("View", bound=Callable[..., Answer | Response])


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


class Routes:
    """The operations of one API blueprint, each declared once: :meth:`route` routes it in
    Flask and describes it in the OpenAPI document.

    The view gets the path's values, plus ``body`` (the parsed request model) and ``query``
    when the operation declares them, and returns the answer model, which is sent with the
    declared status; a view may also return a ready :class:`~flask.Response` (an error that
    carries more than a domain error does).
    """

    def __init__(self, blueprint: Blueprint, tag: str) -> None:
        self.blueprint = blueprint
        self.tag = tag

    def route(
        self,
        method: str,
        rule: str,
        *,
        operation_id: str,
        summary: str,
        ok: tuple[int, str, type[Answer]],
        body: type[Body] | None = None,
        query: type[Query] | None = None,
        errors: tuple[int, ...] = (),
        description: str | None = None,
    ) -> Callable[[View], View]:
        operation = Operation(
            method=method.lower(),
            operation_id=operation_id,
            summary=summary,
            ok=ok,
            tags=(self.tag,),
            body=body,
            query=query,
            errors=errors,
            description=description,
        )
        status, _, answer = ok

        def decorator(view: View) -> View:
            # functools.wraps keeps the view's access rule (companion.access.allow) on the
            # endpoint Flask calls.
            @functools.wraps(view)
            def endpoint(**values: Any) -> Response:
                if body is not None:
                    values["body"] = body.parse(json_body())
                if query is not None:
                    values["query"] = query.parse(request.args.to_dict())
                result = view(**values)
                if isinstance(result, Response):
                    return result
                if not isinstance(result, answer):
                    raise TypeError(f"{view.__name__} answered {type(result).__name__}")
                response = jsonify(result.model_dump(mode="json", by_alias=True))
                response.status_code = status
                return response

            self.blueprint.add_url_rule(rule, view_func=endpoint, methods=[method.upper()])
            openapi.OPERATIONS[f"{self.blueprint.name}.{view.__name__}"] = operation
            return view

        return decorator


bp = api_blueprint("api", __name__)
routes = Routes(bp, tag="staff")


@bp.get("/openapi.json")
@public
def openapi_document() -> Any:
    # Built once per app: the routes and models do not change while it runs.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if "companion.openapi" not in app.extensions:
        app.extensions["companion.openapi"] = openapi.document(app)
    return jsonify(app.extensions["companion.openapi"])


@routes.route(
    "GET",
    "/me",
    operation_id="getMe",
    summary="The staff member who owns the token",
    ok=(200, "The caller", Me),
)
@allow(*STAFF)
def me() -> Me:
    return Me.of(current_user())
