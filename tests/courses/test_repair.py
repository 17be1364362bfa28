"""Repair against the Zoom sandbox: a class whose length drifted in Zoom, a class companion
cancelled that Zoom still holds open, a repair Zoom refuses (the course stays not safe, people
are told, and the next check puts it right), and a meeting made while the course was cancelled.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app
from sqlalchemy import select

from companion import work
from companion.audit.models import AuditEvent
from companion.courses import changes, jobs, presentation, provisioning, timetable, zoomwork
from companion.courses.verification import course_is_safe
from companion.mail.models import OutboxMessage

from ..factories import create_over_clock_change, series_over_clock_change, settle, utc_now

pytestmark = pytest.mark.usefixtures("app_with_zoom")
REAL_CLOCK = True  # Zoom's sandbox in process on the real clock, the real client on it


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def kinds(db_session: Any, kind: str) -> list[AuditEvent]:
    db_session.expire_all()
    return list(db_session.scalars(select(AuditEvent).where(AuditEvent.kind == kind)))


def mails(db_session: Any, kind: str) -> list[OutboxMessage]:
    return list(db_session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))


def occurrences(sandbox: Any, course: Any) -> dict[str, dict[str, Any]]:
    meeting = sandbox.client.get_meeting(course.zoom_meeting_id)
    return {o["occurrence_id"]: o for o in meeting["occurrences"]}


@pytest.fixture
def no_hooks() -> Iterator[None]:
    yield
    work.hooks.before_call.clear()
    work.hooks.after_call.clear()
    work.hooks.after_claim.clear()


def test_a_class_whose_length_drifted_in_zoom_is_put_back(db_session, sandbox, teacher):
    course = create_over_clock_change(db_session, sandbox, teacher).course
    cls = timetable.class_sessions(course)[2]
    # Someone lengthens one class in Zoom's web portal (an occurrence update, as the API does).
    sandbox.state.update_meeting(
        course.zoom_meeting_id, {"duration": 90}, occurrence_id=cls.occurrence_id
    )
    assert occurrences(sandbox, course)[cls.occurrence_id]["duration"] == 90

    assert jobs.drift_check(_app(), [course.id], now=utc_now()) == {"safe": 1}
    assert occurrences(sandbox, course)[cls.occurrence_id]["duration"] == cls.duration_minutes
    assert course.safety_state == "safe"
    (repaired,) = kinds(db_session, "course.drift_repaired")
    assert "schedule" in json.loads(repaired.detail)["settings"]


def test_a_cancelled_class_zoom_still_holds_open_is_deleted_there(db_session, sandbox, teacher):
    course = create_over_clock_change(db_session, sandbox, teacher).course
    cls = timetable.class_sessions(course)[3]
    # Zoom fails to take the class away when the teacher cancels it...
    sandbox.state.add_fault(
        {"path": "/v2/meetings/*", "method": "DELETE", "status": 503, "count": -1}
    )
    changes.cancel_class(
        db_session, actor=teacher, course_id=course.id, class_id=cls.id, now=utc_now()
    )
    settle(sandbox.client, course, now=utc_now())
    assert cls.status == "cancelled"  # cancelled for companion and for the families at once
    assert occurrences(sandbox, course)[cls.occurrence_id]["status"] == "available"
    assert course.zoom_work != ""  # ...so the work is kept and tried again
    sandbox.state.clear_faults()

    assert jobs.drift_check(_app(), [course.id], now=utc_now() + dt.timedelta(minutes=5)) == {
        "safe": 1
    }
    assert occurrences(sandbox, course)[cls.occurrence_id]["status"] == "deleted"
    assert course.zoom_work == "" and course.safety_state == "safe"


def test_a_repair_zoom_refuses_leaves_the_course_not_safe_until_a_check_succeeds(
    db_session, sandbox, teacher, lead
):
    course = create_over_clock_change(db_session, sandbox, teacher).course
    sandbox.state.tamper_settings(course.zoom_meeting_id, {"waiting_room": False})
    fault = sandbox.state.add_fault(
        {"path": "/v2/meetings/*", "method": "PATCH", "status": 400, "count": -1}
    )

    assert jobs.drift_check(_app(), [course.id], now=utc_now()) == {"not_safe": 1}
    assert course.safety_state == "not_safe"
    assert not course_is_safe(course)
    assert "waiting_room" in {p.setting for p in presentation.problem_list(course)}
    assert "Zoom refused" in course.zoom_error
    assert kinds(db_session, "course.zoom_refused")
    told = {m.to_address for m in mails(db_session, "course.not_safe")}
    assert {teacher.email, lead.email} <= told
    assert sandbox.client.get_meeting(course.zoom_meeting_id)["settings"]["waiting_room"] is False

    # Zoom takes changes again: the next check repairs it and says so.
    sandbox.state.clear_faults()
    assert fault["remaining"] == -1
    assert jobs.drift_check(_app(), [course.id], now=utc_now()) == {"safe": 1}
    assert course.safety_state == "safe" and course.zoom_error == ""
    assert sandbox.client.get_meeting(course.zoom_meeting_id)["settings"]["waiting_room"] is True
    assert mails(db_session, "course.safe_again")


def test_a_meeting_made_while_the_course_was_cancelled_is_deleted_next(
    db_session, sandbox, teacher, no_hooks
):
    outcome = provisioning.create_course(
        db_session,
        actor=teacher,
        title="Cello ensemble",
        series=series_over_clock_change("Europe/London"),
        now=utc_now(),
    )
    course = outcome.course

    def teacher_cancels(queue: str, item_id: Any) -> None:
        # While the create is on its way to Zoom, the teacher cancels the course (their request
        # commits meanwhile); the meeting Zoom then makes must not be left behind.
        if queue == zoomwork.QUEUE.name and item_id == course.id:
            work.hooks.after_claim.clear()
            changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=utc_now())
            db_session.flush()

    work.hooks.after_claim.append(teacher_cancels)
    settle(sandbox.client, course, now=utc_now())
    assert course.zoom_state == "cancelled"
    assert course.zoom_meeting_id is not None  # known, so that it can be deleted
    assert len(sandbox.meetings()) == 1

    settle(sandbox.client, course, now=utc_now())
    assert sandbox.meetings() == []
    assert kinds(db_session, "course.zoom_deleted")
    assert course.zoom_work == ""
