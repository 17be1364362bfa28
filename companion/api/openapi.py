"""The OpenAPI 3 document of /api/v1, built from the routes and the models they declare.

Each operation is declared once where it is routed (:class:`~.views.Routes`); the schemas are the
models' own JSON schemas (:mod:`.shapes`), written in OpenAPI 3.0's dialect of JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

# Ids are 32-bit database integers in every table.
from ..courses.access import MAX_ID
from .shapes import Answer, Body, Error, Query

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})

ERROR_TEXT = {
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
# Every operation can answer 401 (no valid token) and 403 (role refused, or a lead or admin
# without two-factor: ``two_factor_required``), so each says so without declaring it.
ACCESS_ERRORS = (401, 403)


@dataclass(frozen=True)
class Operation:
    """One documented operation: what it takes, what it answers, and how it can fail."""

    method: str
    operation_id: str
    summary: str
    ok: tuple[int, str, type[Answer]]  # status, description, model
    tags: tuple[str, ...]
    body: type[Body] | None = None
    query: type[Query] | None = None
    errors: tuple[int, ...] = ()
    description: str | None = None


# Endpoint ("blueprint.view") -> its operation, filled in as the api modules are imported.
OPERATIONS: dict[str, Operation] = {}


class _Dialect(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # the property names say it


def openapi30(node: Any) -> Any:
    """JSON Schema (2020-12, as Pydantic writes it) in OpenAPI 3.0's dialect: ``nullable``
    instead of a null type, and a ``$ref`` with siblings wrapped in ``allOf``. Descriptions
    taken from docstrings are unwrapped to one line."""
    if isinstance(node, list):
        return [openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi30(value) for key, value in node.items()}
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        (schema,) = [option for option in options if option != {"type": "null"}]
        if "$ref" in schema:
            schema = {"allOf": [schema]}
        return {**schema, **rest, "nullable": True}
    if "$ref" in node and len(node) > 1:
        return {"allOf": [{"$ref": node.pop("$ref")}], **node}
    return node


Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


def _json(description: str, schema: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query_parameters(model: type[Query]) -> list[dict[str, Any]]:
    schema = openapi30(model.model_json_schema(schema_generator=_Dialect))
    return [
        {"name": name, "in": "query", "required": name in schema.get("required", ()), "schema": s}
        for name, s in schema["properties"].items()
    ]


_ARGUMENT = re.compile(r"<(?:([a-z]+):)?([a-z_]+)>")


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    params = []
    for converter, name in _ARGUMENT.findall(rule):
        schema = (
            {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            if converter == "int"
            else {"type": "string"}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    status, text, answer = op.ok
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    out["tags"] = list(op.tags)
    if op.query is not None:
        out["parameters"] = _query_parameters(op.query)
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[op.body, "validation"]}},
        }
    responses = {str(status): _json(text, refs[answer, "serialization"])}
    for error in sorted({*op.errors, *ACCESS_ERRORS}):
        responses[str(error)] = _json(ERROR_TEXT.get(error, "Error"), refs[Error, "serialization"])
    out["responses"] = responses
    return out


def document(app: Flask, prefix: str = "/api/v1") -> dict[str, Any]:
    """The document of every declared operation ``app`` routes under ``prefix``."""
    routed = [
        (rule.rule, OPERATIONS[rule.endpoint])
        for rule in app.url_map.iter_rules()
        if rule.endpoint in OPERATIONS and rule.rule.startswith(prefix + "/")
    ]
    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
    for _, op in routed:
        models[op.ok[2], "serialization"] = None
        if op.body is not None:
            models[op.body, "validation"] = None
    refs, schemas = models_json_schema(
        list(models), ref_template="#/components/schemas/{model}", schema_generator=_Dialect
    )
    paths: dict[str, Any] = {}
    for rule, op in routed:
        item = paths.setdefault(_ARGUMENT.sub(r"{\2}", rule[len(prefix) :]), {})
        if parameters := _path_parameters(rule):
            item["parameters"] = parameters
        item[op.method] = _operation(op, refs)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "companion API",
            "version": "1",
            "description": "Staff API of companion. Authenticate with `Authorization: Bearer "
            "<token>`; create a token on your account page or with `companion token create`.",
        },
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": openapi30(schemas.get("$defs", {})),
        },
    }
