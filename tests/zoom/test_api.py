"""The typed seam to Zoom: the client has exactly the protocol's operations, and every field of
the answer shapes is one Zoom's OpenAPI document (``tests/zoom_spec``) has, with its type."""

from __future__ import annotations

import inspect
from typing import Any, Literal, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from companion.zoom import ZoomClient, api

from .. import zoom_spec

OPERATIONS = sorted(
    name
    for name, member in vars(api.ZoomApi).items()
    if callable(member) and not name.startswith("_")
)


def _without_ellipsis(signature: inspect.Signature) -> list[tuple[str, Any, Any, Any]]:
    # The protocol writes "= ..." where the client's default is one of its constants.
    return [
        (p.name, p.kind, None if p.default is Ellipsis else p.default, p.annotation)
        for p in signature.parameters.values()
    ]


@pytest.mark.parametrize("name", OPERATIONS)
def test_the_client_has_each_operation_with_the_protocols_signature(name):
    protocol_method = getattr(api.ZoomApi, name)
    client_method = getattr(ZoomClient, name)
    want = inspect.signature(protocol_method)
    got = inspect.signature(client_method)
    assert get_type_hints(client_method) == get_type_hints(protocol_method)
    for (p_name, p_kind, p_default, _), (c_name, c_kind, c_default, _) in zip(
        _without_ellipsis(want), _without_ellipsis(got), strict=True
    ):
        assert (c_name, c_kind) == (p_name, p_kind)
        if p_default is not None:
            assert c_default == p_default, f"{name}({p_name})"


def test_a_client_is_a_zoom_api():
    client = ZoomClient(account_id="a", client_id="c", client_secret="s")
    try:
        assert isinstance(client, api.ZoomApi)
    finally:
        client.close()


def test_the_protocol_names_every_public_operation_of_the_client():
    # Everything a service may call on the client is in the protocol (close() is the app's).
    public = {
        name
        for name, member in vars(ZoomClient).items()
        if inspect.isfunction(member) and not name.startswith("_") and name != "close"
    }
    assert public == set(OPERATIONS)


# -- the shapes against Zoom's document ------------------------------------------------------------


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    schema = _resolve(spec, schema)
    found: dict[str, dict[str, Any]] = {}
    for part in schema.get("allOf", []):
        found.update(_properties(spec, part))
    for name, prop in (schema.get("properties") or {}).items():
        found[name] = _resolve(spec, prop)
    return found


def _answer(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    operation = spec["paths"][path][method]
    return operation["responses"][status]["content"]["application/json"]["schema"]


JSON_TYPES = {int: "integer", str: "string", bool: "boolean", float: "number"}


def _check(
    spec: dict[str, Any],
    shape: type,
    schema: dict[str, Any],
    where: str,
    absent: frozenset[str] = frozenset(),
) -> None:
    """Every key of ``shape`` but ``absent`` is a property of ``schema`` with the same JSON type."""
    properties = _properties(spec, schema)
    for key, hint in get_type_hints(shape).items():
        if key in absent:
            assert key not in properties, f"{where}.{key} is in Zoom's document after all"
            continue
        assert key in properties, f"{where}.{key} is not in Zoom's document"
        prop = properties[key]
        if "allOf" in prop:
            prop = {"type": "object", **prop}
        here = f"{where}.{key}"
        if is_typeddict(hint):
            assert prop.get("type") == "object", here
            _check(spec, hint, prop, here)
        elif get_origin(hint) is list:
            assert prop.get("type") == "array", here
            (item,) = get_args(hint)
            _check(spec, item, _resolve(spec, prop["items"]), here + "[]")
        elif get_origin(hint) is Literal:
            values = get_args(hint)
            assert prop.get("type") == JSON_TYPES[type(values[0])], here
            if "enum" in prop:
                assert set(values) <= set(prop["enum"]), here
        else:
            assert hint in JSON_TYPES, f"{here}: a shape field is one JSON type"
            assert prop.get("type") == JSON_TYPES[hint], here


# One Meeting shape for two answers: the read has no registration_url (companion takes it
# from the create), the create no uuid, host id or status.
ONLY_CREATED = frozenset({"registration_url"})
ONLY_READ = frozenset({"uuid", "host_id", "status"})


@pytest.mark.parametrize(
    ("shape", "path", "method", "status", "within", "absent"),
    [
        (api.Meeting, "/meetings/{meetingId}", "get", "200", None, ONLY_CREATED),
        (api.Meeting, "/users/{userId}/meetings", "post", "201", None, ONLY_READ),
        (api.MeetingSummary, "/users/{userId}/meetings", "get", "200", "meetings", frozenset()),
        (
            api.Registrant,
            "/meetings/{meetingId}/registrants/{registrantId}",
            "get",
            "200",
            None,
            frozenset(),
        ),
        (
            api.Registrant,
            "/meetings/{meetingId}/registrants",
            "get",
            "200",
            "registrants",
            frozenset(),
        ),
        (
            api.AddedRegistrant,
            "/meetings/{meetingId}/registrants",
            "post",
            "201",
            None,
            frozenset(),
        ),
        (
            api.MeetingRecordings,
            "/meetings/{meetingId}/recordings",
            "get",
            "200",
            None,
            frozenset(),
        ),
        (
            api.MeetingRecordings,
            "/users/{userId}/recordings",
            "get",
            "200",
            "meetings",
            # The list carries no download token (only the single read gives one).
            frozenset({"download_access_token", "participant_audio_files"}),
        ),
    ],
)
def test_each_answer_shape_is_in_zooms_document(shape, path, method, status, within, absent):
    spec = zoom_spec.patched()
    schema = _answer(spec, path, method, status)
    if within is not None:
        schema = _resolve(spec, _properties(spec, schema)[within]["items"])
    _check(spec, shape, schema, shape.__name__, absent)


def test_the_registrant_reference_is_what_the_status_request_takes():
    spec = zoom_spec.patched()
    body = spec["paths"]["/meetings/{meetingId}/registrants/status"]["put"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    item = _resolve(spec, _properties(spec, schema)["registrants"]["items"])
    _check(spec, api.RegistrantRef, item, "RegistrantRef")
