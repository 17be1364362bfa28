"""The OpenAPI 3 document of /api/v1, assembled from each domain's fragment."""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}


def error_responses(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing, unknown or revoked token",
        403: "The token's role may not do this",
        404: "No such object, or not yours",
        409: "Conflicts with the current state",
        415: "Body is not application/json",
        422: "Request understood but not acceptable",
        429: "Too many requests",
        503: "Zoom or another service is unavailable; the work is kept",
    }
    return {
        str(s): {
            "description": text.get(s, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


ME = {
    "type": "object",
    "required": ["id", "email", "name", "role", "organisation"],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
        "role": {"type": "string", "enum": ["teacher", "safeguarding_lead", "admin"]},
        "organisation": {
            "type": "object",
            "required": ["id", "name", "timezone"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "timezone": {"type": "string"},
            },
        },
    },
}

BASE_PATHS: dict[str, Any] = {
    "/me": {
        "get": {
            "operationId": "getMe",
            "summary": "The staff member who owns the token",
            "tags": ["staff"],
            "responses": {
                "200": {
                    "description": "The caller",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Me"}}
                    },
                },
                **error_responses(401),
            },
        }
    }
}

# Domain packages add their paths and schemas here at import time of their api module.
EXTRA_PATHS: dict[str, Any] = {}
EXTRA_SCHEMAS: dict[str, Any] = {}


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _with_access_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation can answer 401 (no valid token) and 403 (role refused, or a lead or admin
    without two-factor: ``two_factor_required``); say so once here rather than in each domain."""
    out: dict[str, Any] = {}
    for path, item in paths.items():
        out[path] = dict(item)
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue  # path-level "parameters" and the like
            responses = dict(operation.get("responses", {}))
            for status, answer in error_responses(401, 403).items():
                responses.setdefault(status, answer)
            out[path][method] = {**operation, "responses": responses}
    return out


def document(server_url: str = "/api/v1") -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "companion API",
            "version": "1",
            "description": "Staff API of companion. Authenticate with `Authorization: Bearer "
            "<token>`; create a token on your account page or with `companion token create`.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": _with_access_errors({**BASE_PATHS, **EXTRA_PATHS}),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR, "Me": ME, **EXTRA_SCHEMAS},
        },
    }
