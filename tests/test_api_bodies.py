"""The API's request models: bad bodies and queries are refused in the API's own words, with the
field named and every problem listed, before any service runs; the document's schemas are the
same models'."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.api.openapi import openapi30

COURSE = {
    "title": "Guitar club",
    "first_date": "2026-03-09",
    "weekdays": ["mon", "thu"],
    "start_time": "16:30",
    "duration_minutes": 50,
    "class_count": 8,
}
FAMILY = {
    "course_id": 1,
    "child_first_name": "Amira",
    "child_last_name": "Khan",
    "contacts": [{"name": "Rana Khan", "email": "rana@example.net"}],
}


@pytest.fixture
def auth(db_session: Session, teacher: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + accounts.create_token(db_session, user=teacher, name="t")}


def without(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


def refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "invalid"
    assert error["problems"][0] == {"field": error["field"], "message": error["message"]}
    return error


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "message"),
    [
        ("post", "/courses", {}, "title", "Give the course a title."),
        ("post", "/courses", {**COURSE, "colour": 1, "a": 2}, "a", "Unknown field(s): a, colour."),
        (
            "post",
            "/courses",
            without(COURSE, "first_date", "weekdays"),
            "first_date",
            "Missing field(s): first_date, weekdays.",
        ),
        ("post", "/courses", {**COURSE, "first_date": "9/3/2026"}, "first_date", None),
        ("post", "/courses", {**COURSE, "start_time": "16:30:15"}, "start_time", None),
        ("post", "/courses", {**COURSE, "weekdays": "mon"}, "weekdays", None),
        (
            "post",
            "/courses",
            {**COURSE, "weekdays": ["mon", "mon"]},
            "weekdays",
            "Monday is listed twice.",
        ),
        (
            "post",
            "/courses",
            {**COURSE, "timezone": "Nowhere/Land"},
            "timezone",
            "'Nowhere/Land' is not a known time zone.",
        ),
        (
            "post",
            "/courses",
            {**COURSE, "duration_minutes": 45.0},
            "duration_minutes",
            "duration_minutes must be a whole number.",
        ),
        (
            "post",
            "/courses",
            {**COURSE, "class_count": -1},
            "class_count",
            "class_count must be between 0 and 10000.",
        ),
        (
            "post",
            "/courses",
            {**COURSE, "end_date": "2026-04-30"},
            "class_count",
            "Give either class_count or end_date, not both.",
        ),
        (
            "post",
            "/courses",
            {**COURSE, "class_count": None},
            "class_count",
            "Give class_count or end_date.",
        ),
        ("patch", "/courses/1", {"title": None}, "title", "Give the course a title."),
        ("patch", "/courses/1", {"timezone": None}, "timezone", "Give the time zone by name."),
        ("post", "/courses/1/classes/1/move", {}, "date", "Missing field: date."),
        (
            "post",
            "/courses/1/classes/1/move",
            {"date": "2026-03-10", "start_time": "15:00", "duration_minutes": 301},
            "duration_minutes",
            "duration_minutes must be between 1 and 300.",
        ),
        ("post", "/families", without(FAMILY, "course_id"), "course_id", None),
        ("post", "/families", {**FAMILY, "course_id": True}, "course_id", None),
        ("post", "/families", {**FAMILY, "child_last_name": None}, "child_last_name", None),
        (
            "post",
            "/families",
            {**FAMILY, "contacts": [{"name": "A", "email": "a@x.net", "phone": 1}]},
            "contacts",
            "Contact 1 must be an object with a name and an email.",
        ),
        (
            "post",
            "/families",
            {**FAMILY, "contacts": [{"name": "A", "email": f"{c}@x.net"} for c in "abc"]},
            "contacts",
            "A family has at most 2 parent/carer contacts.",
        ),
        (
            "get",
            "/families?course_id=C1",
            None,
            "course_id",
            "Give the course as ?course_id=<id>.",
        ),
    ],
)
def test_refused_in_the_apis_words(
    client: FlaskClient,
    auth: dict[str, str],
    method: str,
    path: str,
    body: Any,
    field: str,
    message: str | None,
) -> None:
    response = client.open("/api/v1" + path, method=method.upper(), json=body, headers=auth)
    error = refused(response)
    assert error["field"] == field
    if message is not None:
        assert error["message"] == message


def test_every_problem_is_reported(client: FlaskClient, auth: dict[str, str]) -> None:
    body = {"title": 7, "duration_minutes": "x", "colour": "red"}
    error = refused(client.post("/api/v1/courses", json=body, headers=auth))
    assert error["problems"] == [
        {"field": "colour", "message": "Unknown field(s): colour."},
        {"field": "title", "message": "Give the course a title."},
        {"field": "first_date", "message": "Missing field(s): first_date, weekdays, start_time."},
        {"field": "duration_minutes", "message": "duration_minutes must be a whole number."},
    ]

    error = refused(client.post("/api/v1/courses/1/classes/1/move", json={}, headers=auth))
    assert [p["message"] for p in error["problems"]] == [
        "Missing field: date.",
        "Missing field: start_time.",
    ]

    body = {"child_first_name": 7, "contacts": [{"name": "A"}]}
    error = refused(client.post("/api/v1/families", json=body, headers=auth))
    assert error["problems"] == [
        {"field": "course_id", "message": "Give course_id, the course's id."},
        {"field": "child_first_name", "message": "Give the child's first name as a string."},
        {
            "field": "child_last_name",
            "message": "Give the child's surname (or initial) as a string.",
        },
        {"field": "contacts", "message": "Contact 1 needs a name and an email, both strings."},
    ]


def test_a_body_with_one_problem_lists_it(client: FlaskClient, auth: dict[str, str]) -> None:
    error = refused(client.post("/api/v1/courses", json={**COURSE, "title": 7}, headers=auth))
    assert error["problems"] == [{"field": "title", "message": "Give the course a title."}]


def test_the_document_publishes_the_models_rules(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    create = schemas["CourseCreate"]
    assert create["additionalProperties"] is False
    assert set(create["required"]) == {
        "title",
        "first_date",
        "weekdays",
        "start_time",
        "duration_minutes",
    }
    props = create["properties"]
    # A rule's own check, and the limits the service checks, published together.
    assert props["duration_minutes"] == {"type": "integer", "minimum": 1, "maximum": 300}
    assert props["class_count"]["nullable"] is True  # null is taken as "not given"
    assert "nullable" not in props["timezone"]
    assert "timezone" not in create["required"]
    move = schemas["ClassMove"]["properties"]
    assert move["start_time"] == {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}
    assert "passcode" not in schemas["CourseSummary"]["properties"]
    assert "warnings" not in schemas["Course"]["required"]
    assert "class" in schemas["ClassAudioOnly"]["required"]


def test_json_schema_in_openapi_30s_dialect() -> None:
    ref = {"$ref": "#/components/schemas/Family"}
    assert openapi30({"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}) == {
        "type": "integer",
        "default": None,
        "nullable": True,
    }
    assert openapi30({"anyOf": [ref, {"type": "null"}]}) == {"allOf": [ref], "nullable": True}
    assert openapi30({**ref, "description": "The family."}) == {
        "allOf": [ref],
        "description": "The family.",
    }
    assert openapi30({"description": "Two\n    lines."}) == {"description": "Two lines."}
