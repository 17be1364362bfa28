"""CONTRACT: every answer the sandbox gives is one Zoom's own OpenAPI spec allows.

Each response body is validated against the response schema of its operation in Zoom's OpenAPI
document (``tests/zoom_spec``, patched): types, enums, formats. Every field the sandbox
sends must be a field the spec names (so the sandbox cannot invent field names companion would
then depend on), and every status code must be one the spec documents for that operation. The
OAuth token endpoint and webhook payloads are not in this spec; they are covered by
test_auth.py and test_simulation.py against Zoom's documented shapes.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from companion.zoom.client import _recording_meeting
from companion.zoom.sandbox import Sandbox

from .. import zoom_spec
from .conftest import Api

# The spec has no OAS 3.0 features a JSON Schema validator misreads except these.
_DROP = {
    "example",
    "examples",
    "deprecated",
    "discriminator",
    "xml",
    "externalDocs",
    "readOnly",
    "writeOnly",
    "nullable",
}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string", "minLength": 1},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def load_spec() -> dict[str, Any]:
    return zoom_spec.patched()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """Inline local $refs and turn OAS 3.0 ``nullable`` into JSON Schema."""
    if isinstance(node, list):
        return [_resolve(spec, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _resolve(spec, target)
    out = {k: _resolve(spec, v) for k, v in node.items() if k not in _DROP}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def operation(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return spec["paths"][path][method.lower()]


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict | None:
    response = operation(spec, path, method)["responses"][str(status)]
    content = response.get("content") or {}
    if "application/json" not in content:
        return None
    return _resolve(spec, content["application/json"]["schema"])


def _properties(schema: Any) -> dict[str, Any] | None:
    """All properties a schema allows, across allOf/anyOf/oneOf; None if it does not say."""
    if not isinstance(schema, dict):
        return None
    found: dict[str, Any] | None = None
    if "properties" in schema:
        found = dict(schema["properties"])
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key, []):
            more = _properties(branch)
            if more is not None:
                found = {**(found or {}), **more}
    return found


def _items(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return None
    if "items" in schema:
        return schema["items"]
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key, []):
            found = _items(branch)
            if found is not None:
                return found
    return None


def unknown_fields(schema: Any, value: Any, where: str = "$") -> list[str]:
    if isinstance(value, dict):
        props = _properties(schema)
        if props is None:
            return []
        out = []
        for key, item in value.items():
            if key not in props:
                out.append(f"{where}.{key}")
            else:
                out += unknown_fields(props[key], item, f"{where}.{key}")
        return out
    if isinstance(value, list):
        items = _items(schema)
        return [
            f for n, item in enumerate(value) for f in unknown_fields(items, item, f"{where}[{n}]")
        ]
    return []


class Checked:
    """Validates every sandbox response against the spec and remembers what was covered."""

    def __init__(self, spec: dict[str, Any], api: Api):
        self.spec = spec
        self.api = api
        self.covered: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, template: str, url: str, **kwargs: Any) -> Any:
        r = self.api.call(method, "/v2" + url, **kwargs)
        op = operation(self.spec, template, method)
        documented = set(op["responses"])
        assert str(r.status_code) in documented, (
            f"{method} {template} answered {r.status_code}; the spec documents {sorted(documented)}"
        )
        schema = response_schema(self.spec, template, method, r.status_code)
        if schema is None and r.status_code >= 400:
            # The spec lists Zoom's error codes in prose; the body is {"code", "message"}.
            schema = ERROR_SCHEMA
        if schema is None:
            assert r.data == b"", f"{method} {template} {r.status_code} must have no body"
        else:
            body = r.get_json()
            validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
            errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
            assert not errors, f"{method} {template}: {errors}"
            extra = unknown_fields(schema, body)
            assert not extra, f"{method} {template}: fields not in Zoom's spec: {extra}"
        self.covered.add((method, template, r.status_code))
        return r


@pytest.fixture
def checked(spec: dict[str, Any], api: Api) -> Checked:
    return Checked(spec, api)


def test_every_endpoint_answers_as_the_spec_says(checked: Checked, sandbox: Sandbox) -> None:
    from .conftest import weekly_class

    c = checked
    meeting = c(
        "POST", "/users/{userId}/meetings", "/users/me/meetings", json=weekly_class()
    ).get_json()
    mid = meeting["id"]
    c(
        "POST",
        "/users/{userId}/meetings",
        "/users/me/meetings",
        json={"topic": "Once", "type": 2, "start_time": "2027-10-01T10:00:00Z", "duration": 30},
    )
    c("POST", "/users/{userId}/meetings", "/users/me/meetings", json=weekly_class(duration=0))
    c("POST", "/users/{userId}/meetings", "/users/nobody/meetings", json=weekly_class())
    c("GET", "/users/{userId}/meetings", "/users/me/meetings?page_size=1")
    c("GET", "/users/{userId}/meetings", "/users/me/meetings?type=upcoming")
    c("GET", "/users/{userId}/meetings", "/users/nobody/meetings")

    occurrence = meeting["occurrences"][1]["occurrence_id"]
    c("GET", "/meetings/{meetingId}", f"/meetings/{mid}")
    c("GET", "/meetings/{meetingId}", f"/meetings/{mid}?occurrence_id={occurrence}")
    c("GET", "/meetings/{meetingId}", "/meetings/98765432100")
    c(
        "PATCH",
        "/meetings/{meetingId}",
        f"/meetings/{mid}",
        json={"topic": "Renamed", "settings": {"mute_upon_entry": True}},
    )
    c(
        "PATCH",
        "/meetings/{meetingId}",
        f"/meetings/{mid}?occurrence_id={occurrence}",
        json={"duration": 50},
    )
    c("PATCH", "/meetings/{meetingId}", f"/meetings/{mid}", json={"duration": 0})
    c("PATCH", "/meetings/{meetingId}", "/meetings/98765432100", json={})

    pending = c(
        "POST",
        "/meetings/{meetingId}/registrants",
        f"/meetings/{mid}/registrants",
        json={"email": "a@example.org", "first_name": "A", "last_name": "B"},
    ).get_json()
    c(
        "POST",
        "/meetings/{meetingId}/registrants",
        f"/meetings/{mid}/registrants",
        json={"email": "b@example.org", "first_name": "B", "auto_approve": True},
    )
    c(
        "POST",
        "/meetings/{meetingId}/registrants",
        f"/meetings/{mid}/registrants",
        json={"email": "broken"},
    )
    c(
        "POST",
        "/meetings/{meetingId}/registrants",
        "/meetings/98765432100/registrants",
        json={"email": "c@example.org", "first_name": "C"},
    )
    c("GET", "/meetings/{meetingId}/registrants", f"/meetings/{mid}/registrants")
    c("GET", "/meetings/{meetingId}/registrants", f"/meetings/{mid}/registrants?status=pending")
    c("GET", "/meetings/{meetingId}/registrants", f"/meetings/{mid}/registrants?page_size=1")
    c(
        "GET",
        "/meetings/{meetingId}/registrants/{registrantId}",
        f"/meetings/{mid}/registrants/{pending['registrant_id']}",
    )
    c(
        "PUT",
        "/meetings/{meetingId}/registrants/status",
        f"/meetings/{mid}/registrants/status",
        json={"action": "approve", "registrants": [{"id": pending["registrant_id"]}]},
    )
    c(
        "GET",
        "/meetings/{meetingId}/registrants/{registrantId}",
        f"/meetings/{mid}/registrants/{pending['registrant_id']}",
    )
    c(
        "PUT",
        "/meetings/{meetingId}/registrants/status",
        f"/meetings/{mid}/registrants/status",
        json={"action": "nope"},
    )
    c("GET", "/meetings/{meetingId}/registrants/{registrantId}", f"/meetings/{mid}/registrants/x")
    c("GET", "/meetings/{meetingId}/registrants", "/meetings/98765432100/registrants")

    # Every kind of file Zoom can make, captions and timeline without id, participant audio.
    sandbox.set_recording_settings({k: True for k in sandbox.recording_settings()})
    summary = sandbox.simulate_class(mid, meeting["occurrences"][0]["occurrence_id"])
    # Encoded as the client encodes it: twice when it starts with "/" or holds "//" (Zoom's rule),
    # or the path would change under the router (a "//" is merged and answered with a redirect).
    uuid = _recording_meeting(summary["uuid"])
    c("GET", "/meetings/{meetingId}/recordings", f"/meetings/{mid}/recordings")
    c(
        "GET",
        "/meetings/{meetingId}/recordings",
        f"/meetings/{uuid}/recordings?include_fields=download_access_token",
    )
    c("GET", "/meetings/{meetingId}/recordings", "/meetings/98765432100/recordings")
    day = summary["start_time"][:10]
    c("GET", "/users/{userId}/recordings", f"/users/me/recordings?from={day}&to={day}")
    c("GET", "/users/{userId}/recordings", "/users/nobody/recordings")
    file_id = summary["recording_files"][1]["id"]
    c(
        "DELETE",
        "/meetings/{meetingId}/recordings/{recordingId}",
        f"/meetings/{uuid}/recordings/{file_id}",
    )
    c(
        "DELETE",
        "/meetings/{meetingId}/recordings/{recordingId}",
        f"/meetings/{uuid}/recordings/{file_id}",
    )
    c("DELETE", "/meetings/{meetingId}/recordings", f"/meetings/{mid}/recordings?action=trash")
    c("GET", "/users/{userId}/recordings", f"/users/me/recordings?from={day}&to={day}&trash=true")
    c(
        "GET",
        "/users/{userId}/recordings",
        f"/users/me/recordings?trash=true&trash_type=recording_file&meeting_id={mid}",
    )
    status = "/meetings/{meetingUUID}/recordings/status"
    c("PUT", status, f"/meetings/{uuid}/recordings/status", json={"action": "recover"})
    c("PUT", status, f"/meetings/{uuid}/recordings/status", json={"action": "recover"})
    c("GET", "/meetings/{meetingId}/recordings", f"/meetings/{uuid}/recordings")
    c("DELETE", "/meetings/{meetingId}/recordings", f"/meetings/{uuid}/recordings?action=delete")
    c("DELETE", "/meetings/{meetingId}/recordings", f"/meetings/{mid}/recordings")

    c(
        "DELETE",
        "/meetings/{meetingId}/registrants/{registrantId}",
        f"/meetings/{mid}/registrants/{pending['registrant_id']}",
    )
    c(
        "DELETE",
        "/meetings/{meetingId}/registrants/{registrantId}",
        f"/meetings/{mid}/registrants/{pending['registrant_id']}",
    )

    sandbox.simulate_class(mid, participants=[], end=False)
    c("PUT", "/meetings/{meetingId}/status", f"/meetings/{mid}/status", json={"action": "end"})
    c("PUT", "/meetings/{meetingId}/status", f"/meetings/{mid}/status", json={"action": "x"})
    c("DELETE", "/meetings/{meetingId}", f"/meetings/{mid}?occurrence_id={occurrence}")
    c("DELETE", "/meetings/{meetingId}", f"/meetings/{mid}?occurrence_id=1")
    c("DELETE", "/meetings/{meetingId}", f"/meetings/{mid}")
    c("PUT", "/meetings/{meetingId}/status", f"/meetings/{mid}/status", json={"action": "recover"})
    c("DELETE", "/meetings/{meetingId}", "/meetings/98765432100")

    served = {(m, t) for m, t, _ in c.covered}
    assert served == {
        ("POST", "/users/{userId}/meetings"),
        ("GET", "/users/{userId}/meetings"),
        ("GET", "/meetings/{meetingId}"),
        ("PATCH", "/meetings/{meetingId}"),
        ("DELETE", "/meetings/{meetingId}"),
        ("PUT", "/meetings/{meetingId}/status"),
        ("POST", "/meetings/{meetingId}/registrants"),
        ("GET", "/meetings/{meetingId}/registrants"),
        ("GET", "/meetings/{meetingId}/registrants/{registrantId}"),
        ("PUT", "/meetings/{meetingId}/registrants/status"),
        ("DELETE", "/meetings/{meetingId}/registrants/{registrantId}"),
        ("GET", "/meetings/{meetingId}/recordings"),
        ("DELETE", "/meetings/{meetingId}/recordings"),
        ("DELETE", "/meetings/{meetingId}/recordings/{recordingId}"),
        ("GET", "/users/{userId}/recordings"),
        ("PUT", "/meetings/{meetingUUID}/recordings/status"),
    }
    # Success and failure were both exercised for every endpoint.
    for method, template in served:
        codes = {code for m, t, code in c.covered if (m, t) == (method, template)}
        assert any(code < 300 for code in codes) and any(code >= 400 for code in codes), (
            method,
            template,
            codes,
        )


def test_the_checker_catches_what_it_should(spec: dict[str, Any]) -> None:
    """The contract check itself: a wrong type and an invented field are both reported."""
    schema = response_schema(spec, "/meetings/{meetingId}", "get", 200)
    assert schema is not None
    validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
    assert validator.is_valid({"id": 1, "topic": "x"})
    assert not validator.is_valid({"id": "1"})
    assert not validator.is_valid({"settings": {"approval_type": 7}})
    assert not validator.is_valid({"start_time": "next tuesday"})
    assert unknown_fields(schema, {"id": 1, "settings": {"waiting_rooms": True}}) == [
        "$.settings.waiting_rooms"
    ]
    listing = response_schema(spec, "/users/{userId}/recordings", "get", 200)
    assert unknown_fields(listing, {"meetings": [{"recording_files": [{"idd": "x"}]}]}) == [
        "$.meetings[0].recording_files[0].idd"
    ]
