"""The courses service with the real Zoom client against the Zoom sandbox, on the real clock.

The sandbox computes occurrences, applies account locks and answers with Zoom's status codes on
its own, so these tests check that companion's schedule and settings match an independent
implementation of Zoom, DST included, and that faults never lead to a second meeting. In process,
except where a client gives up on a slow answer (there HTTP and its timeout are the point).
"""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask

from companion.courses import (
    changes,
    jobs,
    lifecycle,
    passcodes,
    presentation,
    timetable,
    verification,
)

from ..factories import create_over_clock_change, series_over_clock_change, settle, start, utc_now
from ..polling import poll

pytestmark = pytest.mark.usefixtures("app_with_zoom")
REAL_CLOCK = True


@pytest.mark.parametrize("tz", ["Europe/London", "America/New_York", "Australia/Sydney"])
def test_schedule_matches_zooms_occurrences_across_the_clock_change(
    db_session, sandbox, teacher, tz
):
    outcome = create_over_clock_change(db_session, sandbox, teacher, timezone=tz)
    course = outcome.course
    assert course.zoom_state == "created" and course.zoom_work == ""
    assert course.safety_state == "safe", course.problems
    # One create costs a handful of calls, not one per class.
    calls = dict(sandbox.client.calls)
    assert calls == {"oauth_token": 1, "create_meeting": 1, "get_meeting": 1}
    meeting = sandbox.client.get_meeting(course.zoom_meeting_id)
    zoom_starts = [o["start_time"] for o in meeting["occurrences"]]
    ours = [c.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") for c in timetable.class_sessions(course)]
    assert zoom_starts == ours
    local_hours = {timetable.local_time(course, c.starts_at).hour for c in course.classes}
    assert local_hours == {17}
    utc_hours = {c.starts_at.hour for c in course.classes}
    assert len(utc_hours) == 2  # the clock change moved the UTC time, not the local one
    assert [c.occurrence_id for c in timetable.class_sessions(course)] == [
        o["occurrence_id"] for o in meeting["occurrences"]
    ]


def test_an_account_lock_makes_the_course_not_safe(db_session, sandbox, teacher, lead):
    sandbox.state.set_locks({"waiting_room": False, "auto_recording": "local"})
    course = create_over_clock_change(db_session, sandbox, teacher).course
    assert course.zoom_state == "created"
    assert course.safety_state == "not_safe"
    assert {p.setting for p in presentation.problem_list(course)} == {
        "waiting_room",
        "auto_recording",
    }
    assert not verification.course_is_safe(course)

    # The drift check tries to put it back, cannot, and keeps it not safe.
    assert jobs.drift_check(_app(), [course.id]) == {"not_safe": 1}
    assert course.safety_state == "not_safe"


def _app() -> Flask:
    from flask import current_app

    return current_app._get_current_object()  # type: ignore[attr-defined]


def test_drift_in_zoom_is_put_back_by_the_check(db_session, sandbox, teacher):
    course = create_over_clock_change(db_session, sandbox, teacher).course
    sandbox.state.tamper_settings(
        course.zoom_meeting_id,
        {"waiting_room": False, "join_before_host": True, "approval_type": 0},
    )
    sandbox.client.calls.clear()
    assert jobs.drift_check(_app(), now=utc_now()) == {"safe": 1}
    assert dict(sandbox.client.calls) == {"get_meeting": 2, "update_meeting": 1}
    settings = sandbox.client.get_meeting(course.zoom_meeting_id)["settings"]
    assert settings["waiting_room"] is True and settings["approval_type"] == 1
    assert course.safety_state == "safe"


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 429, "retry_after": "30"},
        {"status": 500},
    ],
    ids=["down", "rate-limited", "server-error"],
)
def test_zoom_failing_keeps_the_course_pending_then_the_job_creates_it_once(
    db_session, sandbox, teacher, fault
):
    sandbox.state.add_fault({"path": "/v2/users/*/meetings", "method": "POST", **fault})
    outcome = create_over_clock_change(db_session, sandbox, teacher)
    course = outcome.course
    assert course.zoom_state == "pending" and course.zoom_work == "create"
    assert "try again automatically" in course.zoom_error
    assert sandbox.meetings() == []

    assert jobs.retry_pending(_app(), [course.id], now=utc_now() + dt.timedelta(minutes=2)) == {
        "created": 1
    }
    assert course.zoom_state == "created" and course.safety_state == "safe"
    assert len(sandbox.meetings()) == 1


def test_a_slow_zoom_that_made_the_meeting_is_not_asked_twice(db_session, http_sandbox, teacher):
    sandbox = http_sandbox
    # Zoom answers after the client gave up: the meeting exists, companion does not know it.
    sandbox.state.add_fault({"path": "/v2/users/*/meetings", "method": "POST", "delay": 3})
    course = create_over_clock_change(db_session, sandbox, teacher).course
    assert course.zoom_state == "pending"
    poll(sandbox.meetings, "the slow request to finish on Zoom's side")
    assert len(sandbox.meetings()) == 1

    later = utc_now() + dt.timedelta(minutes=2)
    assert jobs.retry_pending(_app(), [course.id], now=later) == {"created": 1}
    meetings = sandbox.meetings()
    assert len(meetings) == 1
    assert course.zoom_meeting_id == meetings[0]["id"]
    assert course.safety_state == "safe"


def test_every_change_against_the_sandbox(db_session, sandbox, teacher):
    course = create_over_clock_change(db_session, sandbox, teacher).course
    classes = timetable.class_sessions(course)
    t = utc_now()

    # Move one class to the next day, an hour later.
    local = timetable.local_time(course, classes[2].starts_at)
    changes.move_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=classes[2].id,
        day=local.date() + dt.timedelta(days=1),
        at=dt.time(18, 0),
        now=t,
    )
    settle(sandbox.client, course, now=t)
    assert course.safety_state == "safe", course.problems
    assert course.zoom_work == ""

    # Cancel another.
    changes.cancel_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=classes[3].id,
        now=t,
    )
    settle(sandbox.client, course, now=t)
    assert course.safety_state == "safe", course.problems
    meeting = sandbox.client.get_meeting(course.zoom_meeting_id)
    by_id = {o["occurrence_id"]: o for o in meeting["occurrences"]}
    assert by_id[classes[3].occurrence_id]["status"] == "deleted"

    # Rotate the passcode.
    changes.rotate_passcode(db_session, actor=teacher, course_id=course.id, now=t)
    settle(sandbox.client, course, now=t)
    assert sandbox.client.get_meeting(course.zoom_meeting_id)["password"] == passcodes.passcode_of(
        course
    )
    assert course.safety_state == "safe"

    # Change the whole series: later start, fewer classes.
    new = series_over_clock_change("Europe/London", start_time=dt.time(17, 30), class_count=5)
    changes.update_course(db_session, actor=teacher, course_id=course.id, now=t, series=new)
    settle(sandbox.client, course, now=t)
    assert course.safety_state == "safe", course.problems
    live = [c for c in timetable.class_sessions(course) if c.takes_place]
    assert len(live) == 5
    zoom_starts = [
        o["start_time"]
        for o in sandbox.client.get_meeting(course.zoom_meeting_id)["occurrences"]
        if o["status"] == "available"
    ]
    assert zoom_starts == [c.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") for c in live]

    # A fresh start link each time, never kept.
    url = start(sandbox.client, course, teacher, now=t)
    assert url.startswith(sandbox.url + "/s/")
    assert "zak=" in url

    # Cancel the course: the meeting is gone from Zoom.
    changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=t)
    settle(sandbox.client, course, now=t)
    assert sandbox.meetings() == []


def test_close_after_the_last_class_kills_the_meeting(db_session, sandbox, teacher):
    course = create_over_clock_change(db_session, sandbox, teacher, class_count=2).course
    later = course.ends_at + lifecycle.CLOSE_GRACE
    assert jobs.close_finished(_app(), now=later) == {"closed": 1}
    assert course.zoom_state == "closed"
    assert sandbox.meetings() == []
