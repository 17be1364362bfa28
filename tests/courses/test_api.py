"""Courses in the JSON API, and a schemathesis run over every course operation."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from companion.accounts import services as accounts
from companion.courses import provisioning
from companion.courses import schedule as sched
from companion.courses.models import Course

from .. import factories

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def next_monday(weeks: int = 1) -> dt.date:
    today = dt.datetime.now(dt.UTC).date()
    return today + dt.timedelta(days=(0 - today.weekday()) % 7 + 7 * weeks)


def bearer(session, user) -> dict[str, str]:
    return {"Authorization": "Bearer " + accounts.create_token(session, user=user, name="t")}


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Guitar club",
        "first_date": next_monday().isoformat(),
        "weekdays": ["mon", "thu"],
        "start_time": "16:30",
        "duration_minutes": 50,
        "class_count": 8,
    }
    data.update(overrides)
    return data


def test_create_get_and_list(client, db_session, zoom, teacher):
    auth = bearer(db_session, teacher)
    r = client.post("/api/v1/courses", json=body(), headers=auth)
    assert r.status_code == 201, r.json
    course = r.json
    assert course["zoom"]["state"] == "created"
    assert course["safety"] == {
        "state": "safe",
        "safe": True,
        "last_verified_at": course["safety"]["last_verified_at"],
        "problems": [],
        "panel": course["safety"]["panel"],
    }
    assert all(row["ok"] is True for row in course["safety"]["panel"])
    assert course["weekdays"] == ["mon", "thu"]
    assert course["timezone"] == "Europe/London"  # the organisation's
    assert len(course["passcode"]) == 10
    assert course["warnings"] == []
    assert isinstance(course["zoom"]["meeting_id"], int)

    got = client.get(f"/api/v1/courses/{course['id']}", headers=auth).json
    assert got["passcode"] == course["passcode"]
    listed = client.get("/api/v1/courses", headers=auth).json["courses"]
    assert [c["id"] for c in listed] == [course["id"]]
    assert "passcode" not in listed[0]

    classes = client.get(f"/api/v1/courses/{course['id']}/classes", headers=auth).json["classes"]
    assert len(classes) == 8
    assert all(c["local_start"].endswith(("+00:00", "+01:00")) for c in classes)
    assert {c["local_start"][11:16] for c in classes} == {"16:30"}
    assert all(c["zoom_occurrence_id"] for c in classes)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"class_count": None, "end_date": "2020-01-01"}, "end_date"),
        ({"class_count": 0}, "class_count"),
        ({"duration_minutes": 1441}, "duration_minutes"),
        ({"weekdays": ["mon", "someday"]}, "weekdays"),
        ({"weekdays": [1, 4]}, "weekdays"),
        ({"weekdays": "mon"}, "weekdays"),
        ({"start_time": "25:00"}, "start_time"),
        ({"first_date": "next week"}, "first_date"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"class_count": 3, "end_date": "2030-01-01"}, "class_count"),
        ({"colour": "blue"}, "colour"),
        ({"title": 7}, "title"),
        ({"duration_minutes": 45.5}, "duration_minutes"),
        ({"teacher_id": 10**30}, "teacher_id"),
    ],
)
def test_bad_input_is_422_with_the_field_and_zoom_is_not_called(
    client, db_session, zoom, teacher, overrides, field
):
    data = body(**overrides)
    data = {k: v for k, v in data.items() if v is not None}
    r = client.post("/api/v1/courses", json=data, headers=bearer(db_session, teacher))
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"] == field
    assert r.json["error"]["message"]
    assert zoom.calls.total() == 0
    assert db_session.scalars(select(Course)).all() == []


def test_a_body_that_is_not_json_is_415(client, db_session, teacher):
    r = client.post(
        "/api/v1/courses",
        data="title=x",
        headers=bearer(db_session, teacher),
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 415
    assert r.json["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "failure", [{"drop": True}, {"status": 429, "retry_after": 20}], ids=["down", "rate-limited"]
)
def test_zoom_unavailable_is_503_and_the_course_is_kept_pending(
    client, db_session, zoom, sandbox, teacher, failure
):
    sandbox.fail("create_meeting", **failure)
    auth = bearer(db_session, teacher)
    r = client.post("/api/v1/courses", json=body(), headers=auth)
    assert r.status_code == 503
    assert r.json["error"]["code"] == "zoom_unavailable"
    assert "pending in Zoom" in r.json["error"]["message"]
    assert int(r.headers["Retry-After"]) > 0
    course_id = r.json["error"]["course_id"]
    got = client.get(f"/api/v1/courses/{course_id}", headers=auth).json
    assert got["zoom"]["state"] == "pending"
    assert got["safety"]["safe"] is False

    r = client.post(f"/api/v1/courses/{course_id}/retry", headers=auth)
    assert r.status_code == 200
    assert r.json["zoom"]["state"] == "created"
    assert zoom.calls["create_meeting"] == 2 and len(sandbox.meeting_ids()) == 1


def test_changes_through_the_api(client, db_session, zoom, sandbox, teacher, lead):
    auth = bearer(db_session, teacher)
    course = client.post("/api/v1/courses", json=body(), headers=auth).json
    cid = course["id"]
    classes = client.get(f"/api/v1/courses/{cid}/classes", headers=auth).json["classes"]

    day = dt.date.fromisoformat(classes[0]["local_start"][:10]) + dt.timedelta(days=1)
    r = client.post(
        f"/api/v1/courses/{cid}/classes/{classes[0]['id']}/move",
        json={"date": day.isoformat(), "start_time": "15:00"},
        headers=auth,
    )
    assert r.status_code == 200, r.json
    assert r.json["status"] == "moved"
    assert r.json["local_start"][:16] == f"{day.isoformat()}T15:00"

    r = client.post(f"/api/v1/courses/{cid}/classes/{classes[1]['id']}/cancel", headers=auth)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    r = client.post(f"/api/v1/courses/{cid}/classes/{classes[1]['id']}/cancel", headers=auth)
    assert r.status_code == 409

    r = client.patch(f"/api/v1/courses/{cid}", json={"title": "Guitar club (Y5)"}, headers=auth)
    assert r.status_code == 200 and r.json["title"] == "Guitar club (Y5)"
    r = client.patch(f"/api/v1/courses/{cid}", json={"start_time": "17:00"}, headers=auth)
    assert r.status_code == 200, r.json
    assert r.json["start_time"] == "17:00"
    assert r.json["safety"]["safe"] is True

    lead_auth = bearer(db_session, lead)
    old = course["passcode"]
    r = client.post(f"/api/v1/courses/{cid}/passcode", headers=lead_auth)
    assert r.status_code == 200 and r.json["passcode"] != old
    r = client.post(f"/api/v1/courses/{cid}/verify", headers=lead_auth)
    assert r.status_code == 200 and r.json["safety"]["state"] == "safe"
    r = client.post(f"/api/v1/courses/{cid}/cancel", headers=lead_auth)
    assert r.status_code == 403

    r = client.post(f"/api/v1/courses/{cid}/cancel", headers=auth)
    assert r.status_code == 200 and r.json["zoom"]["state"] == "cancelled"
    assert sandbox.meeting_ids() == []


def test_other_teachers_courses_are_404(client, db_session, zoom, org, teacher):
    other = factories.user(db_session, org, role="teacher")
    theirs = client.post("/api/v1/courses", json=body(), headers=bearer(db_session, other)).json
    auth = bearer(db_session, teacher)
    for method, path in [
        ("get", f"/api/v1/courses/{theirs['id']}"),
        ("get", f"/api/v1/courses/{theirs['id']}/classes"),
        ("post", f"/api/v1/courses/{theirs['id']}/cancel"),
        ("post", f"/api/v1/courses/{theirs['id']}/passcode"),
        ("get", "/api/v1/courses/99999999999999999999"),
    ]:
        r = getattr(client, method)(path, headers=auth)
        assert r.status_code == 404, path
    assert client.get("/api/v1/courses", headers=auth).json["courses"] == []


def test_requests_without_a_token_are_401(client):
    assert client.get("/api/v1/courses").status_code == 401
    assert client.post("/api/v1/courses", json=body()).status_code == 401


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(app_with_zoom, db_session, zoom, org, teacher, admin):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    # A course to act on, so ids in paths sometimes exist.
    provisioning.create_course(
        db_session,
        actor=teacher,
        title="Fuzzed",
        series=sched.Series(
            first_date=next_monday(),
            weekdays=("mon",),
            start_time=dt.time(17, 0),
            duration_minutes=45,
            timezone="Europe/London",
            class_count=4,
        ),
        now=dt.datetime.now(dt.UTC),
    )
    db_session.flush()
    token = accounts.create_token(db_session, user=teacher, name="fuzz")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app_with_zoom)
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    def fuzz(op: Any) -> None:
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            statuses[response.status_code] += 1
            if response.status_code >= 500 and response.status_code not in (502, 503):
                failures.append(f"{op.method.upper()} {op.path}: {response.status_code}")

        run()

    operations = [o.ok() for o in schema.get_all_operations()]
    fuzzed = [op for op in operations if op.path.startswith("/courses")]
    assert len(fuzzed) == 11
    for op in fuzzed:
        fuzz(op)
    assert failures == []
    assert statuses[200] + statuses[201] > 0 and statuses[422] > 0
