"""The courses jobs: retry pending creates, drift check, close finished courses."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from companion.courses import jobs, lifecycle
from companion.mail.models import OutboxMessage

from ..factories import NOW, make_course
from ..zoom_sandbox import MEETING_DAILY_LIMIT


def test_retry_pending_creates_each_course_once(app_with_zoom, db_session, zoom, sandbox, teacher):
    sandbox.fail("create_meeting", drop=True, times=2)
    first = make_course(db_session, zoom, teacher)
    second = make_course(db_session, zoom, teacher, title="Drums")
    assert first.zoom_state == second.zoom_state == "pending"

    # Not due yet: nothing happens.
    assert jobs.retry_pending(app_with_zoom, now=NOW) == {}
    later = NOW + dt.timedelta(hours=1)
    assert jobs.retry_pending(app_with_zoom, now=later) == {"created": 2}
    assert first.zoom_state == second.zoom_state == "created"
    assert len(sandbox.meeting_ids()) == 2
    assert zoom.calls["create_meeting"] == 4  # two failed, two made: none twice
    # Running it again finds nothing to do.
    assert jobs.retry_pending(app_with_zoom, now=later) == {}
    assert jobs.retry_pending(app_with_zoom, [first.id], now=later) == {"skipped": 1}


def test_retry_pending_keeps_waiting_while_zoom_rate_limits(
    app_with_zoom, db_session, zoom, sandbox, teacher
):
    sandbox.fail("create_meeting", drop=True)
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("create_meeting", status=429, retry_after=3600, body=MEETING_DAILY_LIMIT)
    later = NOW + dt.timedelta(hours=1)
    assert jobs.retry_pending(app_with_zoom, now=later) == {"pending": 1}
    assert course.zoom_next_attempt_at == later + dt.timedelta(hours=1)
    assert "rate limiting" in course.zoom_error
    assert course.zoom_claimed_until is None


def test_drift_check_reads_each_course_once(
    app_with_zoom, db_session, zoom, sandbox, teacher, lead
):
    courses = [make_course(db_session, zoom, teacher, title=f"Course {i}") for i in range(3)]
    sandbox.state.tamper_settings(courses[1].zoom_meeting_id, {"mute_upon_entry": False})
    # Deleted in Zoom's portal: cannot be fixed.
    sandbox.state.delete_meeting(courses[2].zoom_meeting_id)
    zoom.calls.clear()

    result = jobs.drift_check(app_with_zoom, now=NOW + dt.timedelta(hours=1))
    assert result == {"safe": 2, "not_safe": 1}
    # One GET per course; a PATCH and a second GET only where something drifted.
    assert dict(zoom.calls) == {"get_meeting": 4, "update_meeting": 1}
    assert [c.safety_state for c in courses] == ["safe", "safe", "not_safe"]
    alarms = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "course.not_safe")
    )
    assert sorted(m.to_address for m in alarms) == sorted([teacher.email, lead.email])


def test_drift_check_survives_zoom_being_down(app_with_zoom, db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("get_meeting", drop=True)
    assert jobs.drift_check(app_with_zoom, now=NOW) == {"unreachable": 1}
    assert course.safety_state == "safe"


def test_close_finished_deletes_old_meetings(app_with_zoom, db_session, zoom, sandbox, teacher):
    short = make_course(db_session, zoom, teacher, class_count=1)
    long = make_course(db_session, zoom, teacher, class_count=10)
    after_short = short.ends_at + lifecycle.CLOSE_GRACE
    assert jobs.close_finished(app_with_zoom, now=after_short) == {"closed": 1}
    assert short.zoom_state == "closed" and long.zoom_state == "created"
    assert sandbox.meeting_ids() == [long.zoom_meeting_id]
    assert jobs.close_finished(app_with_zoom, now=after_short) == {}
    # Drift checks leave closed courses alone.
    assert jobs.drift_check(app_with_zoom, now=after_short) == {"safe": 1}
