"""The teacher pages: create and edit with errors beside fields, the course page, every button."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from companion.courses import passcodes, timetable
from companion.courses.models import Course

from .. import factories
from ..staff_helpers import post_form, sign_in, text

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def next_weekday(weekday: int, weeks: int = 1) -> dt.date:
    today = dt.datetime.now(dt.UTC).date()
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7 + 7 * weeks)


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Violin for beginners",
        "first_date": next_weekday(0).isoformat(),
        "weekdays": ["mon"],
        "start_time": "17:00",
        "timezone": "Europe/London",
        "duration_minutes": "45",
        "end_mode": "count",
        "class_count": "6",
        "end_date": "",
    }
    data.update(overrides)
    return data


def create(client, **overrides):
    return post_form(client, "/courses/new", form(**overrides), form_page="/courses/new")


def only_course(db_session) -> Course:
    return db_session.scalars(select(Course)).one()


def field_error(page: str, name: str) -> str:
    """The error shown beside a field (the macro puts it in the field's div)."""
    match = re.search(
        rf'<(?:div|fieldset) class="field has-error">(?:(?!</(?:div|fieldset)>).)*?'
        rf'name="{name}".*?<p class="error" role="alert">([^<]+)</p>',
        page,
        re.S,
    )
    assert match, f"no error beside {name}"
    return match.group(1)


def test_teacher_creates_a_course_and_sees_it_verified(client, db_session, zoom, teacher):
    sign_in(client, teacher.email)
    response = create(client)
    assert response.status_code == 302
    course = only_course(db_session)
    assert response.headers["Location"].endswith(f"/courses/{course.id}")
    assert dict(zoom.calls) == {"oauth_token": 1, "create_meeting": 1, "get_meeting": 1}

    page = text(client.get(f"/courses/{course.id}"))
    assert "In Zoom and its settings were verified" in page or "verified" in page
    assert (
        page.count("✓ on") == 6
    )  # waiting room, passcode, recording, registration, host, schedule
    assert "Last verified in Zoom" in page
    assert passcodes.passcode_of(course) in page
    first = course.first_date.strftime("%a %-d %b %Y").replace(" 0", " ")
    assert first in page
    assert "17:00–17:45" in page
    assert page.count('class="class-scheduled"') == 6

    listing = text(client.get("/courses/"))
    assert "Violin for beginners" in listing and "Safe" in listing


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (
            {"end_mode": "date", "class_count": "", "end_date": "2020-01-01"},
            "end_date",
            "before the first class",
        ),
        ({"class_count": "0"}, "class_count", "between 1 and 50"),
        ({"duration_minutes": "1441"}, "duration_minutes", "between 1 and 300"),
        ({"weekdays": []}, "weekdays", "at least one weekday"),
        ({"weekdays": ["tue"]}, "first_date", "the course meets on Tuesdays"),
        ({"end_mode": "date", "class_count": "", "end_date": ""}, "end_date", "last class"),
    ],
)
def test_bad_input_is_shown_beside_the_field_and_zoom_is_not_called(
    client, db_session, zoom, teacher, overrides, field, words
):
    sign_in(client, teacher.email)
    response = create(client, **overrides)
    assert response.status_code == 422
    assert words in field_error(text(response), field)
    assert zoom.calls.total() == 0
    assert db_session.scalars(select(Course)).all() == []


def test_a_time_skipped_by_the_clock_change_is_named(client, db_session, zoom, teacher):
    # The last Sunday of March, 01:30 in London, does not exist.
    today = dt.date.today()
    year = today.year + (1 if today >= dt.date(today.year, 3, 20) else 0)
    last_sunday = max(
        dt.date(year, 3, d) for d in range(25, 32) if dt.date(year, 3, d).weekday() == 6
    )
    sign_in(client, teacher.email)
    response = create(
        client,
        first_date=(last_sunday - dt.timedelta(days=7)).isoformat(),
        weekdays=["sun"],
        start_time="01:30",
        class_count="3",
    )
    if (last_sunday - dt.timedelta(days=7) - today).days > 366:
        pytest.skip("the next clock change is more than a year away")
    assert response.status_code == 422
    assert "clocks go forward" in field_error(text(response), "start_time")
    assert zoom.calls.total() == 0


def test_zoom_down_keeps_the_course_pending(client, db_session, zoom, sandbox, teacher):
    sandbox.fail("create_meeting", drop=True)
    sign_in(client, teacher.email)
    response = create(client)
    assert response.status_code == 302
    course = only_course(db_session)
    assert course.zoom_state == "pending"
    page = text(client.get(f"/courses/{course.id}"))
    assert "Pending in Zoom" in page
    assert "companion will try again automatically" in page
    assert "No family links or passcodes are sent" in page
    # The page watches the course's Zoom state (a static script: the CSP allows no inline one).
    assert f'data-poll="/courses/{course.id}/zoom-state"' in page
    assert "/static/course_zoom.js" in page
    state = client.get(f"/courses/{course.id}/zoom-state").get_json()
    assert state["state"] == "pending" and state["work"] == "create" and state["busy"]
    assert "try again automatically" in state["error"]

    post_form(client, f"/courses/{course.id}/retry", form_page=f"/courses/{course.id}")
    assert course.zoom_state == "created"
    assert zoom.calls["create_meeting"] == 2 and len(sandbox.meeting_ids()) == 1
    state = client.get(f"/courses/{course.id}/zoom-state").get_json()
    assert state["state"] == "created" and state["work"] is None and not state["busy"]


def test_not_safe_course_shows_the_reason(client, db_session, zoom, sandbox, teacher):
    sandbox.state.set_locks({"waiting_room": False})
    sign_in(client, teacher.email)
    create(client)
    course = only_course(db_session)
    page = text(client.get(f"/courses/{course.id}"))
    assert "Not safe" in page
    assert "✗ not safe" in page
    assert "waiting room is off in Zoom (must be on)" in page


def test_teachers_see_only_their_courses_the_lead_sees_all(
    client, db_session, zoom, org, teacher, lead
):
    other = factories.user(db_session, org, role="teacher")
    sign_in(client, other.email)
    create(client, title="Drums for others")
    course = only_course(db_session)

    mine = client.application.test_client()
    sign_in(mine, teacher.email)
    assert mine.get(f"/courses/{course.id}").status_code == 404
    assert mine.get(f"/courses/{course.id}/edit").status_code == 404
    assert "Drums for others" not in text(mine.get("/courses/"))

    lead_client = client.application.test_client()
    sign_in(lead_client, lead.email)
    assert lead_client.get(f"/courses/{course.id}").status_code == 200
    assert "Drums for others" in text(lead_client.get("/courses/"))
    assert lead_client.get(f"/courses/{course.id}/edit").status_code == 403
    assert lead_client.get("/courses/new").status_code == 403


def test_every_button_on_the_course_page(client, db_session, zoom, sandbox, teacher):
    sign_in(client, teacher.email)
    create(client)
    course = only_course(db_session)
    page_url = f"/courses/{course.id}"
    classes = timetable.class_sessions(course)

    # Move one class.
    move_url = f"{page_url}/classes/{classes[1].id}/move"
    new_day = timetable.local_time(course, classes[1].starts_at).date() + dt.timedelta(days=1)
    r = post_form(
        client,
        move_url,
        {"date": new_day.isoformat(), "start_time": "18:15", "duration_minutes": "45"},
        form_page=move_url,
    )
    assert r.status_code == 302
    assert classes[1].status == "moved"
    assert timetable.local_time(course, classes[1].starts_at).strftime("%H:%M") == "18:15"

    # A move onto another class is refused beside the date.
    clash = timetable.local_time(course, classes[2].starts_at)
    r = post_form(
        client,
        move_url,
        {"date": clash.date().isoformat(), "start_time": "17:15", "duration_minutes": "45"},
        form_page=move_url,
    )
    assert r.status_code == 422
    assert "overlaps the class" in field_error(text(r), "date")

    # Cancel one class.
    post_form(client, f"{page_url}/classes/{classes[2].id}/cancel", form_page=page_url)
    assert classes[2].status == "cancelled"

    # Rotate the passcode.
    old = passcodes.passcode_of(course)
    post_form(client, f"{page_url}/passcode", form_page=page_url)
    assert passcodes.passcode_of(course) != old
    assert sandbox.meeting(course.zoom_meeting_id)["password"] == passcodes.passcode_of(course)

    # Re-check now repairs drift.
    sandbox.state.tamper_settings(course.zoom_meeting_id, {"waiting_room": False})
    r = post_form(client, f"{page_url}/verify", form_page=page_url)
    page = text(client.get(page_url))
    assert "re-checking the meeting in Zoom" in page
    assert course.safety_state == "safe" and course.zoom_work == ""
    assert sandbox.meeting(course.zoom_meeting_id)["settings"]["waiting_room"] is True
    assert "data-poll" not in page  # nothing left to wait for: the page stays still

    # Start class: straight to Zoom with a fresh link, never stored.
    r = post_form(client, f"{page_url}/start", form_page=page_url)
    assert r.status_code == 303
    assert r.headers["Location"].startswith(f"{sandbox.url}/s/")

    # Edit: the title and the time of the whole series.
    edit_url = f"{page_url}/edit"
    r = post_form(
        client,
        edit_url,
        form(
            title="Violin (beginners)", start_time="17:30", first_date=course.first_date.isoformat()
        ),
        form_page=edit_url,
    )
    assert r.status_code == 302, text(r)
    assert course.title == "Violin (beginners)"
    assert sandbox.meeting(course.zoom_meeting_id)["topic"] == "Violin (beginners)"
    assert course.start_time == dt.time(17, 30)
    assert course.safety_state == "safe"

    # Cancel the course, after a confirmation page.
    assert "cannot be undone" in text(client.get(f"{page_url}/cancel"))
    post_form(client, f"{page_url}/cancel", form_page=f"{page_url}/cancel")
    assert course.zoom_state == "cancelled"
    assert sandbox.meeting_ids() == []


def test_only_the_courses_teacher_starts_it(client, db_session, zoom, org, teacher, admin):
    sign_in(client, teacher.email)
    create(client)
    course = only_course(db_session)
    admin_client = client.application.test_client()
    sign_in(admin_client, admin.email)
    r = post_form(admin_client, f"/courses/{course.id}/start", form_page=f"/courses/{course.id}")
    assert r.status_code == 403
    assert zoom.calls["get_meeting"] == 1  # only the read-back after create


def test_admin_creates_for_a_teacher(client, db_session, zoom, teacher, admin):
    sign_in(client, admin.email)
    page = text(client.get("/courses/new"))
    assert teacher.email in page
    r = create(client, teacher_id=str(teacher.id))
    assert r.status_code == 302
    assert only_course(db_session).teacher_id == teacher.id
