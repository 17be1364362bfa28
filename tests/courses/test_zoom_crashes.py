"""A course's Zoom work stopped dead at each point of a step (after the claim; after Zoom answered,
before the answer was recorded) is recovered by the next run once the claim has run out: one
meeting, the change applied once, no audit entry or email twice, the course in the right state.

Against the Zoom sandbox (in process, through the real client), so what Zoom holds after the crash
is what an independent implementation of Zoom did, not what a fake was told to remember.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.courses import (
    changes,
    jobs,
    lifecycle,
    passcodes,
    presentation,
    provisioning,
    timetable,
    zoomwork,
)
from companion.courses import schedule as sched
from companion.courses.models import Course
from companion.mail.models import OutboxMessage

from ..crashes import Crash, crash_fixture
from ..factories import settle
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")
REAL_CLOCK = True

POINTS = ["after_claim", "after_call"]


crash_at = crash_fixture(zoomwork.QUEUE.name)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def weekly(**overrides: Any) -> sched.Series:
    first = now().date() + dt.timedelta(days=7)
    values: dict[str, Any] = {
        "first_date": first,
        "weekdays": (sched.WEEKDAYS[first.weekday()],),
        "start_time": dt.time(17, 0),
        "duration_minutes": 45,
        "timezone": "Europe/London",
        "class_count": 6,
        "end_date": None,
    }
    values.update(overrides)
    return sched.Series(**values)


def saved(db_session: Session, teacher: Any, **overrides: Any) -> Course:
    """What the create request commits: the course, pending in Zoom, its work due now."""
    course = provisioning.create_course(
        db_session, actor=teacher, title="Cello ensemble", series=weekly(**overrides), now=now()
    ).course
    db_session.commit()
    return course


def in_zoom(db_session: Session, sandbox: SandboxZoom, teacher: Any, **overrides: Any) -> Course:
    course = saved(db_session, teacher, **overrides)
    assert settle(sandbox.client, course, now=now()) == "created"
    assert course.safety_state == "safe", course.problems
    return course


def crashed(
    sandbox: SandboxZoom,
    course: Course,
    crash_at: Callable[[str], None],
    point: str,
    run: Callable[[], Any] | None = None,
) -> None:
    """Run the course's work (``run``, or as a request does after its commit) into the crash."""
    crash_at(point)
    with pytest.raises(Crash):
        if run is None:
            settle(sandbox.client, course, now=now())
        else:
            run()
    session = Session.object_session(course)
    assert session is not None
    session.expire_all()
    # The claim (and the attempt it counted) is committed; nothing Zoom said is.
    assert course.zoom_work != ""
    assert course.zoom_claimed_until is not None and course.zoom_claimed_until > now()


def recover(app: Flask, course: Course, at: dt.datetime) -> dict[str, int]:
    """The worker's next runs: nothing while the claim holds, the work once it has run out."""
    assert jobs.retry_pending(app, now=at) == {}
    result = jobs.retry_pending(app, now=at + zoomwork.QUEUE.claim_for + dt.timedelta(seconds=1))
    session = Session.object_session(course)
    assert session is not None
    session.expire_all()
    assert course.zoom_work == "" and course.zoom_claimed_until is None
    assert course.zoom_attempts == 0 and course.zoom_synced_seq == course.zoom_work_seq
    return result


def audits(db_session: Session, course: Course) -> Counter[str]:
    return Counter(
        db_session.scalars(select(AuditEvent.kind).where(AuditEvent.course_id == course.id))
    )


def mail(db_session: Session) -> Counter[tuple[str, str]]:
    return Counter(db_session.execute(select(OutboxMessage.kind, OutboxMessage.to_address)).all())


def live_starts(sandbox: SandboxZoom, course: Course) -> list[str]:
    meeting = sandbox.client.get_meeting(course.zoom_meeting_id)
    return [o["start_time"] for o in meeting["occurrences"] if o["status"] == "available"]


def planned_starts(course: Course) -> list[str]:
    return [
        c.starts_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for c in timetable.class_sessions(course)
        if c.takes_place
    ]


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_creating_makes_no_second_meeting(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = saved(db_session, teacher)
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point)
    assert course.zoom_state == "pending" and course.zoom_meeting_id is None
    assert course.zoom_attempts == 1
    # Zoom made the meeting only when the crash came after its answer.
    assert sandbox.client.calls["create_meeting"] == (point == "after_call")

    assert recover(app, course, now()) == {"created": 1}
    # Made once in all: a meeting made by the lost attempt is found by its marker and adopted.
    assert sandbox.client.calls["create_meeting"] == 1
    assert sandbox.client.calls["list_meetings"] == 1
    (meeting,) = sandbox.meetings()
    assert course.zoom_meeting_id == meeting["id"]
    assert (course.zoom_state, course.safety_state, course.zoom_error) == ("created", "safe", "")
    assert live_starts(sandbox, course) == planned_starts(course)
    assert audits(db_session, course) == {
        "course.created": 1,
        "course.zoom_created": 1,
        "course.safety_changed": 1,
    }
    assert mail(db_session) == {}


def test_a_change_made_after_a_lost_create_is_in_the_meeting_it_adopts(
    app, db_session, sandbox, teacher, crash_at
):
    course = saved(db_session, teacher)
    crashed(sandbox, course, crash_at, "after_call")
    # The teacher renames the course and adds a class while companion does not know the meeting.
    changes.update_course(
        db_session,
        actor=teacher,
        course_id=course.id,
        now=now(),
        title="Cello ensemble (advanced)",
        series=weekly(class_count=7),
    )
    db_session.commit()

    assert recover(app, course, now()) == {"created": 1}
    (meeting,) = sandbox.meetings()
    assert course.zoom_meeting_id == meeting["id"]
    assert sandbox.client.calls["create_meeting"] == 1
    assert sandbox.client.get_meeting(meeting["id"])["topic"] == "Cello ensemble (advanced)"
    assert len(live_starts(sandbox, course)) == 7
    assert live_starts(sandbox, course) == planned_starts(course)
    assert course.safety_state == "safe", course.problems
    assert audits(db_session, course)["course.zoom_created"] == 1


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_changing_the_series_applies_it_once(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    meeting_id = course.zoom_meeting_id
    changes.update_course(
        db_session,
        actor=teacher,
        course_id=course.id,
        now=now(),
        series=weekly(start_time=dt.time(17, 30), class_count=4),
    )
    db_session.commit()
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point)
    assert course.zoom_resend_series

    assert recover(app, course, now()) == {"safe": 1}
    # The new series was sent once: a second attempt finds Zoom has it and sends nothing.
    assert sandbox.client.calls["update_meeting"] == 1
    assert [m["id"] for m in sandbox.meetings()] == [meeting_id]
    assert not course.zoom_resend_series
    assert len(live_starts(sandbox, course)) == 4
    assert live_starts(sandbox, course) == planned_starts(course)
    assert all(c.occurrence_id for c in timetable.class_sessions(course) if c.takes_place)
    assert course.safety_state == "safe", course.problems
    assert audits(db_session, course) == {
        "course.created": 1,
        "course.zoom_created": 1,
        "course.safety_changed": 1,
        "course.updated": 1,
    }
    assert mail(db_session) == {}


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_moving_a_class_moves_it_once(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    cls = timetable.class_sessions(course)[1]
    day = timetable.local_time(course, cls.starts_at).date() + dt.timedelta(days=1)
    changes.move_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=cls.id,
        day=day,
        at=dt.time(18, 0),
        now=now(),
    )
    db_session.commit()
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point)

    assert recover(app, course, now()) == {"safe": 1}
    assert sandbox.client.calls["update_meeting"] == 1
    assert live_starts(sandbox, course) == planned_starts(course)
    assert course.safety_state == "safe", course.problems
    assert audits(db_session, course)["course.class_moved"] == 1
    assert len(sandbox.meetings()) == 1


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_cancelling_a_class_deletes_it_once(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    cls = timetable.class_sessions(course)[2]
    changes.cancel_class(db_session, actor=teacher, course_id=course.id, class_id=cls.id, now=now())
    db_session.commit()
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point)

    assert recover(app, course, now()) == {"safe": 1}
    assert sandbox.client.calls["delete_meeting"] == 1
    occurrences = sandbox.client.get_meeting(course.zoom_meeting_id)["occurrences"]
    assert {o["occurrence_id"]: o["status"] for o in occurrences}[cls.occurrence_id] == "deleted"
    assert live_starts(sandbox, course) == planned_starts(course)
    assert len(sandbox.meetings()) == 1
    assert cls.status == "cancelled" and course.safety_state == "safe", course.problems
    assert audits(db_session, course)["course.class_cancelled"] == 1
    assert mail(db_session) == {}


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_rotating_the_passcode_applies_it_once(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    old = passcodes.passcode_of(course)
    changes.rotate_passcode(db_session, actor=teacher, course_id=course.id, now=now())
    db_session.commit()
    new = passcodes.passcode_of(course)
    assert new != old
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point)

    assert recover(app, course, now()) == {"safe": 1}
    assert sandbox.client.calls["update_meeting"] == 1
    assert sandbox.client.get_meeting(course.zoom_meeting_id)["password"] == new
    assert passcodes.passcode_of(course) == new and course.safety_state == "safe"
    kinds = audits(db_session, course)
    assert kinds["course.passcode_rotated"] == 1
    # A person's change put into Zoom is not drift repaired.
    assert kinds["course.drift_repaired"] == 0
    assert mail(db_session) == {}


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("how", ["cancel", "close"])
def test_a_crash_while_deleting_the_meeting_is_recovered(
    app, db_session, sandbox, teacher, crash_at, point, how
):
    course = in_zoom(db_session, sandbox, teacher, class_count=2)
    assert course.ends_at is not None
    if how == "cancel":
        at = now()
        changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=at)
        db_session.commit()
        run = None
        state = "cancelled"
    else:
        at = course.ends_at + lifecycle.CLOSE_GRACE

        def run() -> Any:
            # The worker's close job: close the finished course, then delete its meeting.
            return jobs.close_finished(app, now=at)

        state = "closed"
    crashed(sandbox, course, crash_at, point, run)
    assert course.zoom_state == state and course.zoom_work == "delete"
    # Closing again finds nothing more to close; the deletion is the queue's to finish.
    assert jobs.close_finished(app, now=at) == {}

    assert recover(app, course, at) == {state: 1}
    assert sandbox.meetings() == []
    assert course.zoom_state == state and course.zoom_error == ""
    kinds = audits(db_session, course)
    assert kinds[f"course.{state}"] == 1
    assert kinds["course.zoom_deleted"] == 1
    assert mail(db_session) == {}


def test_a_course_cancelled_after_its_create_was_lost_leaves_no_meeting(
    app, db_session, sandbox, teacher, crash_at
):
    course = saved(db_session, teacher)
    crashed(sandbox, course, crash_at, "after_call")
    assert len(sandbox.meetings()) == 1 and course.zoom_meeting_id is None
    changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=now())
    db_session.commit()
    # The attempt that may have made a meeting was counted, so the deletion looks for it.
    assert course.zoom_work == "delete"

    assert recover(app, course, now()) == {"cancelled": 1}
    assert sandbox.meetings() == []
    assert audits(db_session, course)["course.zoom_deleted"] == 1


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_during_the_drift_check_repairs_once(
    app, db_session, sandbox, teacher, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    sandbox.state.tamper_settings(
        course.zoom_meeting_id, {"waiting_room": False, "join_before_host": True}
    )
    sandbox.client.calls.clear()
    crashed(sandbox, course, crash_at, point, lambda: jobs.drift_check(app, now=now()))
    assert course.safety_state == "safe"  # nothing Zoom said was recorded

    assert recover(app, course, now()) == {"safe": 1}
    assert sandbox.client.calls["update_meeting"] == 1
    settings = sandbox.client.get_meeting(course.zoom_meeting_id)["settings"]
    assert settings["waiting_room"] is True and settings["join_before_host"] is False
    assert course.safety_state == "safe" and course.last_verified_at is not None
    # The repair is on the audit trail when the check that made it recorded it; a crash after
    # Zoom answered loses that answer, and the next check finds nothing left to repair.
    assert audits(db_session, course)["course.drift_repaired"] == (point == "after_claim")
    assert mail(db_session) == {}
    assert len(sandbox.meetings()) == 1


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_during_the_check_of_a_locked_meeting_tells_people_once(
    app, db_session, sandbox, teacher, lead, crash_at, point
):
    course = in_zoom(db_session, sandbox, teacher)
    # An account admin locks the waiting room off: companion cannot put it back.
    sandbox.state.set_locks({"waiting_room": False})
    crashed(sandbox, course, crash_at, point, lambda: jobs.drift_check(app, now=now()))
    assert recover(app, course, now()) == {"not_safe": 1}
    assert course.safety_state == "not_safe"
    assert {p.setting for p in presentation.problem_list(course)} == {"waiting_room"}
    told = {("course.not_safe", teacher.email): 1, ("course.not_safe", lead.email): 1}
    assert mail(db_session) == told

    # The lock is lifted; the next check (crashed too) finds the meeting safe, and says so once.
    sandbox.state.set_locks({"waiting_room": None})
    crashed(sandbox, course, crash_at, point, lambda: jobs.drift_check(app, now=now()))
    assert recover(app, course, now()) == {"safe": 1}
    assert course.safety_state == "safe"
    told |= {("course.safe_again", teacher.email): 1, ("course.safe_again", lead.email): 1}
    assert mail(db_session) == told
    assert audits(db_session, course)["course.safety_changed"] == 3  # unverified, not safe, safe
