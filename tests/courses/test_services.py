"""The courses service against the Zoom sandbox: create, verify, repair, change, close, faults."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import current_app
from sqlalchemy import func, select

from companion import work
from companion.audit.models import AuditEvent
from companion.audit.services import verify as verify_chain
from companion.courses import (
    access,
    changes,
    lifecycle,
    passcodes,
    presentation,
    provisioning,
    timetable,
    verification,
    zoomwork,
)
from companion.courses.models import ClassSession, Course
from companion.errors import Conflict, Forbidden, NotFound, ValidationError
from companion.mail.models import OutboxMessage

from .. import factories
from ..factories import NOW, check, make_course, series, settle, start

pytestmark = pytest.mark.usefixtures("app")


def audit_kinds(session, course_id=None):
    query = select(AuditEvent.kind).order_by(AuditEvent.id)
    if course_id is not None:
        query = query.where(AuditEvent.course_id == course_id)
    return list(session.scalars(query))


def outbox(session):
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def course_count(session):
    return session.scalar(select(func.count()).select_from(Course))


# --- create ---------------------------------------------------------------------------------


def test_create_makes_one_verified_meeting_for_the_whole_course(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)

    assert dict(zoom.calls) == {"oauth_token": 1, "create_meeting": 1, "get_meeting": 1}
    assert course.zoom_state == "created"
    assert course.safety_state == "safe"
    assert course.last_verified_at == NOW
    assert verification.course_is_safe(course)
    meeting = sandbox.meeting(course.zoom_meeting_id)
    assert meeting["type"] == 8
    assert f"[companion:{course.companion_ref}]" in meeting["agenda"]
    assert meeting["recurrence"] == {
        "type": 2,
        "repeat_interval": 1,
        "weekly_days": "2",
        "end_times": 10,
    }
    assert meeting["settings"]["waiting_room"] is True
    assert meeting["settings"]["approval_type"] == 1
    # Ten classes, each linked to its Zoom occurrence; the clock change in between is handled.
    classes = timetable.class_sessions(course)
    assert len(classes) == 10
    assert [c.occurrence_id for c in classes] == [
        o["occurrence_id"] for o in meeting["occurrences"]
    ]
    assert {timetable.local_time(course, c.starts_at).hour for c in classes} == {17}
    assert course.ends_at == classes[-1].ends_at
    assert course.join_url == meeting["join_url"]
    assert f"/j/{course.zoom_meeting_id}" in course.join_url


def test_the_passcode_is_stored_encrypted_and_matches_zoom(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    passcode = passcodes.passcode_of(course)
    assert sandbox.meeting(course.zoom_meeting_id)["password"] == passcode
    assert passcode not in course.passcode_encrypted
    details = " ".join(db_session.scalars(select(AuditEvent.detail)))
    assert passcode not in details


def test_the_start_link_is_never_kept(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    url = start(zoom, course, teacher)
    assert url.startswith(f"{sandbox.url}/s/")
    db_session.flush()
    for column in Course.__table__.columns:
        assert "zak=" not in str(getattr(course, column.key) or "")
    assert "zak=" not in " ".join(db_session.scalars(select(AuditEvent.detail)))
    assert "course.start_link_issued" in audit_kinds(db_session, course.id)


def test_lead_becomes_alternative_host_when_the_organisation_says_so(
    db_session, zoom, sandbox, org, teacher
):
    org.lead_as_alternative_host = True
    org.safeguarding_contact_email = "Lead@Example.org"
    course = make_course(db_session, zoom, teacher)
    settings = sandbox.meeting(course.zoom_meeting_id)["settings"]
    assert settings["alternative_hosts"] == "lead@example.org"
    assert course.safety_state == "safe"


@pytest.mark.parametrize(
    "overrides",
    [
        {"class_count": None, "end_date": dt.date(2026, 3, 1)},
        {"class_count": 0},
        {"duration_minutes": 1441},
        {"first_date": dt.date(2026, 3, 29), "weekdays": ("sun",), "start_time": dt.time(1, 30)},
        {"weekdays": ("mon", "someday")},
        {"weekdays": ()},
    ],
)
def test_bad_input_is_refused_before_zoom_is_called(db_session, zoom, teacher, overrides):
    with pytest.raises(ValidationError):
        make_course(db_session, zoom, teacher, **overrides)
    assert zoom.calls.total() == 0
    assert course_count(db_session) == 0


def test_an_empty_title_is_refused(db_session, zoom, teacher):
    with pytest.raises(ValidationError) as err:
        make_course(db_session, zoom, teacher, title="   ")
    assert err.value.field == "title"
    assert zoom.calls.total() == 0


# --- Zoom down, slow, rate limiting: pending, retried, never twice ---------------------------


@pytest.mark.parametrize(
    "failure",
    [{"drop": True}, {"status": 502}, {"status": 429, "retry_after": 30}],
    ids=["down", "server-error", "rate-limited"],
)
def test_zoom_unavailable_keeps_the_course_pending_and_the_job_creates_it_once(
    db_session, zoom, sandbox, teacher, failure
):
    sandbox.fail("create_meeting", **failure)
    course = make_course(db_session, zoom, teacher)
    assert course.zoom_state == "pending"
    assert "companion will try again automatically" in course.zoom_error
    assert course.zoom_work == "create"
    assert course.zoom_attempts == 1
    assert course.zoom_next_attempt_at > NOW
    assert not verification.course_is_safe(course)
    assert len(timetable.class_sessions(course)) == 10  # the plan is there to see
    if failure.get("status") == 429:
        assert course.zoom_next_attempt_at == NOW + dt.timedelta(seconds=30)

    later = NOW + dt.timedelta(hours=1)
    assert work.due_ids(db_session, zoomwork.QUEUE, later) == [course.id]
    assert work.claim(db_session, zoomwork.QUEUE, course.id, later)
    assert not work.claim(db_session, zoomwork.QUEUE, course.id, later)  # one at a time
    step = zoomwork.ZoomStep(zoom)
    app = current_app._get_current_object()
    assert work.run_one(app, zoomwork.QUEUE, step, course.id, now=later, claimed=True) == "created"
    # The retry looked for a meeting it might have made before creating one.
    assert zoom.calls["list_meetings"] == 1
    assert zoom.calls["create_meeting"] == 2
    assert len(sandbox.meeting_ids()) == 1
    assert course.safety_state == "safe"
    assert course.zoom_work == "" and course.zoom_attempts == 0
    assert work.due_ids(db_session, zoomwork.QUEUE, later) == []


def test_a_create_whose_answer_was_lost_is_found_not_made_again(db_session, zoom, sandbox, teacher):
    # Zoom made the meeting, but the answer never arrived (the connection dropped on the way back).
    sandbox.fail("create_meeting", drop=True, after=True)
    course = make_course(db_session, zoom, teacher)
    assert course.zoom_state == "pending"
    assert len(sandbox.meeting_ids()) == 1

    later = NOW + dt.timedelta(minutes=5)
    settle(zoom, course, now=later)
    assert course.zoom_state == "created"
    assert zoom.calls["create_meeting"] == 1  # never created twice
    assert sandbox.meeting_ids() == [course.zoom_meeting_id]
    assert course.safety_state == "safe"
    assert "course.zoom_created" in audit_kinds(db_session, course.id)


def test_a_lookup_that_fails_leaves_the_course_pending(db_session, zoom, sandbox, teacher):
    sandbox.fail("create_meeting", drop=True)
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("list_meetings", status=503)
    later = NOW + dt.timedelta(minutes=5)
    assert settle(zoom, course, now=later) == "pending"
    assert course.zoom_state == "pending"
    assert zoom.calls["create_meeting"] == 1
    assert course.zoom_next_attempt_at == later + dt.timedelta(minutes=2)  # one backoff


def test_classes_that_passed_while_pending_are_not_sent_to_zoom(db_session, zoom, sandbox, teacher):
    sandbox.fail("create_meeting", drop=True)
    course = make_course(db_session, zoom, teacher)
    # Zoom comes back after the first two classes.
    later = dt.datetime(2026, 3, 17, 12, 0, tzinfo=dt.UTC)
    sandbox.clock.set(later)
    settle(zoom, course, now=later)
    assert course.zoom_state == "created"
    meeting = sandbox.meeting(course.zoom_meeting_id)
    assert meeting["recurrence"]["end_times"] == 8
    assert meeting["start_time"] == "2026-03-23T17:00:00Z"
    statuses = [c.status for c in timetable.class_sessions(course)]
    assert statuses == ["cancelled"] * 2 + ["scheduled"] * 8
    assert course.safety_state == "safe"


def test_zoom_refusing_the_meeting_marks_the_course_failed(db_session, zoom, sandbox, teacher):
    sandbox.fail(
        "create_meeting", status=400, body={"code": 1115, "message": "Invalid alternative host"}
    )
    course = make_course(db_session, zoom, teacher)
    assert course.zoom_state == "failed"
    assert "Invalid alternative host" in course.zoom_error
    assert course.zoom_work == ""
    assert "course.zoom_refused" in audit_kinds(db_session, course.id)
    assert work.due_ids(db_session, zoomwork.QUEUE, NOW + dt.timedelta(days=1)) == []
    # After a fix, trying again creates it.
    provisioning.retry_create(db_session, actor=teacher, course_id=course.id, now=NOW)
    assert course.zoom_state == "pending" and course.zoom_work == "create"
    assert settle(zoom, course) == "created"
    assert course.zoom_state == "created"


def test_read_back_failing_leaves_the_course_unverified(db_session, zoom, sandbox, teacher):
    sandbox.fail("get_meeting", drop=True)
    course = make_course(db_session, zoom, teacher)
    assert course.zoom_state == "created"
    assert course.safety_state == "unverified"
    assert not verification.course_is_safe(course)
    # The occurrences from the create answer still link the classes.
    assert all(c.occurrence_id for c in course.classes)
    check(zoom, course)
    assert course.safety_state == "safe"


# --- verified, not assumed -------------------------------------------------------------------


def test_a_setting_zoom_overrides_marks_the_course_not_safe_and_tells_people(
    db_session, zoom, sandbox, org, teacher, lead
):
    other_lead = factories.user(
        db_session, org, role="safeguarding_lead", email="lead2@example.org"
    )
    sandbox.state.set_locks({"waiting_room": False})  # an account admin locked it off
    course = make_course(db_session, zoom, teacher)

    assert course.zoom_state == "created"
    assert course.safety_state == "not_safe"
    assert not verification.course_is_safe(course)
    (problem,) = presentation.problem_list(course)
    assert problem.setting == "waiting_room"
    assert problem.describe() == "waiting room is off in Zoom (must be on)"
    messages = outbox(db_session)
    assert sorted(m.to_address for m in messages) == sorted(
        [teacher.email, lead.email, other_lead.email]
    )
    assert all(m.subject == "Not safe: Art club" for m in messages)
    assert "waiting room is off in Zoom" in messages[0].body_text
    assert passcodes.passcode_of(course) not in messages[0].body_text
    assert "course.safety_changed" in audit_kinds(db_session, course.id)
    panel = {row.key: row for row in presentation.safety_panel(course)}
    assert panel["waiting_room"].ok is False
    assert panel["passcode"].ok is True


def test_drift_is_put_back_with_one_patch(db_session, zoom, sandbox, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    sandbox.state.tamper_settings(
        course.zoom_meeting_id, {"waiting_room": False, "auto_recording": "none"}
    )
    zoom.calls.clear()

    problems = check(zoom, course, now=NOW + dt.timedelta(hours=1))
    assert problems == []
    assert dict(zoom.calls) == {"get_meeting": 2, "update_meeting": 1}
    assert sandbox.meeting(course.zoom_meeting_id)["settings"]["waiting_room"] is True
    assert course.safety_state == "safe"
    assert "course.drift_repaired" in audit_kinds(db_session, course.id)
    assert outbox(db_session) == []  # fixed before anybody needed to know


def test_drift_that_cannot_be_fixed_raises_the_alarm_once(db_session, zoom, sandbox, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    sandbox.state.set_locks({"auto_recording": "local"})

    check(zoom, course, now=NOW + dt.timedelta(hours=1))
    assert course.safety_state == "not_safe"
    assert [p.setting for p in presentation.problem_list(course)] == ["auto_recording"]
    assert len(outbox(db_session)) == 2  # teacher and lead, one message each

    check(zoom, course, now=NOW + dt.timedelta(hours=2))
    assert len(outbox(db_session)) == 2  # the same problem is not mailed every hour

    # Once the lock is lifted the next check puts it back and says so.
    sandbox.state.clear_locks()
    check(zoom, course, now=NOW + dt.timedelta(hours=3))
    assert course.safety_state == "safe"
    assert [m.subject for m in outbox(db_session)][-2:] == ["Safe again: Art club"] * 2


def test_a_changed_passcode_in_zoom_is_put_back(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    # The host changes it in Zoom's web portal (which edits the meeting as the API does).
    sandbox.state.update_meeting(course.zoom_meeting_id, {"password": "123456"})
    check(zoom, course)
    assert sandbox.meeting(course.zoom_meeting_id)["password"] == passcodes.passcode_of(course)
    assert course.safety_state == "safe"


def test_a_class_moved_in_zoom_is_moved_back(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    occ = sandbox.meeting(course.zoom_meeting_id)["occurrences"][3]
    sandbox.state.update_meeting(
        course.zoom_meeting_id,
        {"start_time": "2026-03-30T18:00:00Z"},
        occurrence_id=occ["occurrence_id"],
    )
    check(zoom, course)
    occurrences = sandbox.meeting(course.zoom_meeting_id)["occurrences"]
    moved_back = next(o for o in occurrences if o["occurrence_id"] == occ["occurrence_id"])
    assert moved_back["start_time"] == "2026-03-30T16:00:00Z"  # 17:00 BST
    assert course.safety_state == "safe"


def test_a_meeting_deleted_in_zoom_is_not_safe(db_session, zoom, sandbox, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    sandbox.state.delete_meeting(course.zoom_meeting_id)
    check(zoom, course)
    assert course.safety_state == "not_safe"
    assert presentation.problem_list(course)[0].setting == "meeting"
    assert len(outbox(db_session)) == 2


def test_check_when_zoom_is_down_changes_nothing(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("get_meeting", drop=True)
    verification.want_check(db_session, [course.id])
    assert settle(zoom, course, now=NOW + dt.timedelta(hours=1)) == "unreachable"
    assert course.safety_state == "safe"
    assert course.last_verified_at == NOW
    assert course.zoom_work == "sync" and "did not answer" in course.zoom_error


# --- changes ---------------------------------------------------------------------------------


def test_move_one_class(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    cls = timetable.class_sessions(course)[2]
    zoom.calls.clear()
    changes.move_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=cls.id,
        day=dt.date(2026, 3, 24),
        at=dt.time(16, 30),
        now=NOW,
    )
    assert zoom.calls.total() == 0  # saved first; Zoom is told after the commit
    settle(zoom, course)
    # Read first (so a re-run after a crash sends nothing twice), one PATCH, read back.
    assert dict(zoom.calls) == {"get_meeting": 2, "update_meeting": 1}
    assert cls.status == "moved"
    assert cls.starts_at == dt.datetime(2026, 3, 24, 16, 30, tzinfo=dt.UTC)
    assert cls.original_starts_at == dt.datetime(2026, 3, 23, 17, 0, tzinfo=dt.UTC)
    occ = sandbox.meeting(course.zoom_meeting_id)["occurrences"][2]
    assert occ["start_time"] == "2026-03-24T16:30:00Z"
    assert course.safety_state == "safe"
    assert "course.class_moved" in audit_kinds(db_session, course.id)


def test_move_refuses_overlaps_the_past_and_skipped_times(db_session, zoom, teacher):
    course = make_course(db_session, zoom, teacher)
    cls = timetable.class_sessions(course)[2]
    zoom.calls.clear()

    def move(day, at):
        changes.move_class(
            db_session,
            actor=teacher,
            course_id=course.id,
            class_id=cls.id,
            day=day,
            at=at,
            now=NOW,
        )

    with pytest.raises(ValidationError, match="overlaps the class on Monday 16 March"):
        move(dt.date(2026, 3, 16), dt.time(17, 30))
    with pytest.raises(ValidationError, match="future"):
        move(dt.date(2026, 3, 1), dt.time(17, 0))
    with pytest.raises(ValidationError, match="does not exist"):
        move(dt.date(2026, 3, 29), dt.time(1, 15))
    assert zoom.calls.total() == 0


def test_cancel_one_class(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    last = timetable.class_sessions(course)[-1]
    changes.cancel_class(db_session, actor=teacher, course_id=course.id, class_id=last.id, now=NOW)
    settle(zoom, course)
    assert last.status == "cancelled"
    occ = sandbox.meeting(course.zoom_meeting_id)["occurrences"][-1]
    assert occ["status"] == "deleted"
    assert course.safety_state == "safe"
    assert course.ends_at == timetable.class_sessions(course)[-2].ends_at
    with pytest.raises(Conflict):
        changes.cancel_class(
            db_session, actor=teacher, course_id=course.id, class_id=last.id, now=NOW
        )


def test_change_the_whole_series_from_a_later_date(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    rows = timetable.class_sessions(course)
    later = dt.datetime(2026, 3, 17, 9, 0, tzinfo=dt.UTC)  # two classes are history
    sandbox.clock.set(later)
    zoom.calls.clear()
    outcome = changes.update_course(
        db_session,
        actor=teacher,
        course_id=course.id,
        now=later,
        series=series(first_date=dt.date(2026, 3, 23), start_time=dt.time(17, 30), class_count=6),
    )
    assert outcome.warnings == ()
    settle(zoom, course, now=later)
    # Two weeks on, the hour-long token has expired: a new one first.
    assert dict(zoom.calls) == {"oauth_token": 1, "get_meeting": 2, "update_meeting": 1}
    assert course.zoom_work == "" and not course.zoom_resend_series
    classes = timetable.class_sessions(course)
    assert classes[:2] == rows[:2]  # history kept as it was
    assert [c.status for c in classes] == ["scheduled"] * 8 + ["cancelled"] * 2
    assert classes[2] is rows[2]  # same day, same class, new time
    assert timetable.local_time(course, classes[2].starts_at).strftime("%H:%M") == "17:30"
    assert all(c.occurrence_id for c in classes[2:8])
    assert course.safety_state == "safe"
    assert course.start_time == dt.time(17, 30) and course.class_count == 6


def test_change_only_the_title(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    zoom.calls.clear()
    changes.update_course(db_session, actor=teacher, course_id=course.id, now=NOW, title="Painting")
    settle(zoom, course)
    assert sandbox.meeting(course.zoom_meeting_id)["topic"] == "Painting"
    assert dict(zoom.calls) == {"get_meeting": 2, "update_meeting": 1}


def test_a_change_zoom_cannot_take_yet_is_kept_and_sent_later(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("update_meeting", drop=True)
    changes.update_course(db_session, actor=teacher, course_id=course.id, now=NOW, title="Painting")
    assert settle(zoom, course) == "unreachable"
    assert course.title == "Painting"  # saved; Zoom has not got it yet, and the page says so
    assert course.zoom_work == "sync" and "did not answer" in course.zoom_error
    assert sandbox.meeting(course.zoom_meeting_id)["topic"] == "Art club"
    assert course.zoom_next_attempt_at == NOW + dt.timedelta(minutes=1)
    settle(zoom, course, now=NOW + dt.timedelta(minutes=1))
    assert sandbox.meeting(course.zoom_meeting_id)["topic"] == "Painting"
    assert course.zoom_work == "" and course.zoom_error == ""


def test_rotate_the_passcode(db_session, zoom, sandbox, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    old = passcodes.passcode_of(course)
    changes.rotate_passcode(db_session, actor=lead, course_id=course.id, now=NOW)
    settle(zoom, course)
    new = passcodes.passcode_of(course)
    assert new != old
    assert sandbox.meeting(course.zoom_meeting_id)["password"] == new
    assert course.safety_state == "safe"
    assert "course.passcode_rotated" in audit_kinds(db_session, course.id)


def test_cancel_the_course_deletes_the_meeting(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=NOW)
    assert course.zoom_state == "cancelled" and course.zoom_work == "delete"
    settle(zoom, course)
    assert course.zoom_work == ""
    assert sandbox.meeting_ids() == []
    assert all(c.status == "cancelled" for c in course.classes)
    assert not verification.course_is_safe(course)
    with pytest.raises(Conflict):
        changes.rotate_passcode(db_session, actor=teacher, course_id=course.id, now=NOW)


def test_cancel_a_pending_course_removes_a_meeting_an_attempt_made(
    db_session, zoom, sandbox, teacher
):
    sandbox.fail("create_meeting", drop=True, after=True)
    course = make_course(db_session, zoom, teacher)
    assert len(sandbox.meeting_ids()) == 1
    changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=NOW)
    settle(zoom, course, now=NOW + dt.timedelta(minutes=1))
    assert sandbox.meeting_ids() == []
    assert course.zoom_state == "cancelled"
    assert work.due_ids(db_session, zoomwork.QUEUE, NOW + dt.timedelta(days=1)) == []


def test_close_after_the_last_class(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher, class_count=2)
    end = course.ends_at
    assert lifecycle.finished(db_session, end) == []
    after = end + lifecycle.CLOSE_GRACE
    assert lifecycle.finished(db_session, after) == [course.id]
    assert lifecycle.close_course(db_session, course_id=course.id, now=after) == "closed"
    settle(zoom, course, now=after)
    assert sandbox.meeting_ids() == []
    assert course.closed_at == after
    assert "course.closed" in audit_kinds(db_session, course.id)
    # Running it again does nothing.
    assert lifecycle.close_course(db_session, course_id=course.id, now=after) == "gone"
    assert lifecycle.finished(db_session, after) == []


def test_start_link_needs_a_safe_meeting(db_session, zoom, sandbox, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    # An account admin locked join before host on and the waiting room off (with the waiting
    # room on, Zoom turns join before host off whatever is locked).
    sandbox.state.set_locks({"join_before_host": True, "waiting_room": False})
    with pytest.raises(lifecycle.NotSafeToStart, match="join before host is on"):
        start(zoom, course, teacher)
    assert course.safety_state == "not_safe"


def test_a_drifted_meeting_is_repaired_before_starting(db_session, zoom, sandbox, teacher):
    course = make_course(db_session, zoom, teacher)
    sandbox.state.tamper_settings(course.zoom_meeting_id, {"waiting_room": False})
    url = start(zoom, course, teacher)
    assert url.startswith("https://")
    assert sandbox.meeting(course.zoom_meeting_id)["settings"]["waiting_room"] is True


# --- who may see and change ------------------------------------------------------------------


def test_teachers_see_only_their_own_courses(db_session, zoom, org, teacher, lead, admin):
    mine = make_course(db_session, zoom, teacher)
    other_teacher = factories.user(db_session, org, role="teacher")
    theirs = make_course(db_session, zoom, other_teacher, title="Drums")
    other_org = factories.organisation(db_session)
    stranger = factories.user(db_session, other_org, role="admin")

    assert access.list_courses(db_session, teacher) == [mine]
    with pytest.raises(NotFound):
        access.get_course(db_session, teacher, theirs.id)
    assert {c.id for c in access.list_courses(db_session, lead)} == {mine.id, theirs.id}
    assert {c.id for c in access.list_courses(db_session, admin)} == {mine.id, theirs.id}
    assert access.list_courses(db_session, stranger) == []
    with pytest.raises(NotFound):
        access.get_course(db_session, stranger, mine.id)
    with pytest.raises(NotFound):
        changes.cancel_course(db_session, actor=teacher, course_id=theirs.id, now=NOW)
    with pytest.raises(Forbidden):
        changes.cancel_course(db_session, actor=lead, course_id=mine.id, now=NOW)
    with pytest.raises(Forbidden):
        lifecycle.start_plan(db_session, actor=admin, course_id=mine.id, now=NOW)


def test_an_admin_schedules_for_a_teacher(db_session, zoom, org, admin, teacher):
    with pytest.raises(ValidationError) as err:
        provisioning.create_course(db_session, actor=admin, title="X", series=series(), now=NOW)
    assert err.value.field == "teacher_id"
    outcome = provisioning.create_course(
        db_session, actor=admin, title="X", series=series(), now=NOW, teacher_id=teacher.id
    )
    assert outcome.course.teacher_id == teacher.id
    with pytest.raises(ValidationError):
        provisioning.create_course(
            db_session, actor=admin, title="X", series=series(), now=NOW, teacher_id=admin.id
        )


def test_the_audit_chain_stays_intact(db_session, zoom, teacher, lead):
    course = make_course(db_session, zoom, teacher)
    changes.rotate_passcode(db_session, actor=teacher, course_id=course.id, now=NOW)
    changes.cancel_course(db_session, actor=teacher, course_id=course.id, now=NOW)
    assert list(verify_chain(db_session)) == []
    assert db_session.scalar(select(func.count()).select_from(ClassSession)) == 10


def test_a_retry_while_the_job_holds_the_course_does_not_call_zoom(
    db_session, zoom, sandbox, teacher
):
    sandbox.fail("create_meeting", drop=True)
    course = make_course(db_session, zoom, teacher)
    later = NOW + dt.timedelta(minutes=5)
    assert work.claim(db_session, zoomwork.QUEUE, course.id, later)  # the job has it
    zoom.calls.clear()
    provisioning.retry_create(db_session, actor=teacher, course_id=course.id, now=later)
    assert settle(zoom, course, now=later) == "skipped"  # the same claim: nothing twice
    assert zoom.calls.total() == 0
    assert course.zoom_state == "pending"


def test_an_adopted_meeting_is_brought_up_to_date(db_session, zoom, sandbox, teacher):
    # The lost create made a meeting; then the teacher changed the time before the retry.
    sandbox.fail("create_meeting", drop=True, after=True)
    course = make_course(db_session, zoom, teacher)
    sandbox.fail("update_meeting", drop=True)  # nothing reaches Zoom yet
    changes.update_course(
        db_session,
        actor=teacher,
        course_id=course.id,
        now=NOW,
        series=series(start_time=dt.time(18, 0)),
    )
    assert settle(zoom, course) == "pending"  # the request's own run: the meeting is found
    assert course.zoom_state == "pending"
    settle(zoom, course, now=NOW + dt.timedelta(hours=1))
    assert course.zoom_state == "created"
    assert zoom.calls["create_meeting"] == 1
    assert sandbox.meeting(course.zoom_meeting_id)["start_time"] == "2026-03-09T18:00:00Z"
    assert course.safety_state == "safe"


def test_passcodes_and_start_links_never_reach_the_log(
    db_session, zoom, sandbox, teacher, lead, caplog
):
    caplog.set_level("DEBUG")
    sandbox.fail("create_meeting", drop=True, after=True)
    course = make_course(db_session, zoom, teacher)
    settle(zoom, course, now=NOW + dt.timedelta(hours=1))
    first = passcodes.passcode_of(course)
    changes.rotate_passcode(db_session, actor=teacher, course_id=course.id, now=NOW)
    settle(zoom, course, now=NOW + dt.timedelta(hours=1))
    sandbox.state.tamper_settings(course.zoom_meeting_id, {"waiting_room": False})
    check(zoom, course, now=NOW + dt.timedelta(hours=1))
    url = start(zoom, course, teacher)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    for secret in (first, passcodes.passcode_of(course), url, "zak="):
        assert secret not in logged


def test_a_meeting_deleted_in_zoom_makes_the_course_not_safe(
    db_session, zoom, sandbox, teacher, lead
):
    course = make_course(db_session, zoom, teacher)
    sandbox.state.delete_meeting(course.zoom_meeting_id)  # someone deleted it in Zoom's portal

    problems = check(zoom, course, now=NOW + dt.timedelta(hours=1))
    assert [p.setting for p in problems] == ["meeting"]
    assert course.safety_state == "not_safe"
    assert not verification.course_is_safe(course)
    assert {m.to_address for m in outbox(db_session)} == {teacher.email, lead.email}
