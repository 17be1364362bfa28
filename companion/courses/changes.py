"""Changing a course: move or cancel a class, change the title, teacher or series, cancel the
course, rotate its passcode.

Each change is saved at once with what Zoom must be told (:mod:`.wanted`); Zoom gets it right
after the commit (:mod:`.zoomwork`), and the meeting is read back and verified.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from .. import policy
from ..accounts.models import User
from ..audit.services import record as audit
from ..errors import Conflict, Forbidden, ValidationError
from . import safety
from . import schedule as sched
from .access import changeable, get_class, get_course, require_in_zoom, teacher_for
from .events import emit
from .models import ClassSession, ClassStatus, Course, ZoomState, ZoomWork
from .passcodes import _set_passcode
from .provisioning import Outcome, check_title
from .timetable import (
    apply_series,
    class_sessions,
    local_time,
    reconcile_classes,
    refresh_ends_at,
    series_of,
    upcoming_classes,
)
from .wanted import want, want_deleted


def _check_duration(minutes: int, field: str = "duration_minutes") -> int:
    if not isinstance(minutes, int) or isinstance(minutes, bool):
        raise ValidationError("Give the duration in whole minutes.", field=field)
    if not 1 <= minutes <= sched.MAX_DURATION_MINUTES:
        raise ValidationError(
            f"A class lasts 1 to {sched.MAX_DURATION_MINUTES} minutes.", field=field
        )
    return minutes


def move_class(
    session: Session,
    *,
    actor: User,
    course_id: int,
    class_id: int,
    day: dt.date,
    at: dt.time,
    now: dt.datetime,
    duration_minutes: int | None = None,
) -> ClassSession:
    """Move one class to another local day and time (its Zoom occurrence follows after the
    commit)."""
    course = changeable(session, actor, course_id)
    cls = get_class(course, class_id)
    if not cls.takes_place:
        raise Conflict("This class is cancelled; it cannot be moved.")
    if cls.starts_at <= now:
        raise Conflict("This class has already started; it can no longer be moved.")
    duration = _check_duration(duration_minutes or cls.duration_minutes)
    today = local_time(course, now).date()
    if not today - dt.timedelta(days=1) <= day <= today + dt.timedelta(days=sched.MAX_DAYS_AHEAD):
        raise ValidationError("Move the class to a date within the next year.", field="date")
    starts = sched.local_day_and_time(day, at, course.timezone)
    if starts <= now:
        raise ValidationError("Move the class to a time in the future.", field="start_time")
    ends = starts + dt.timedelta(minutes=duration)
    for other in course.classes:
        if (
            other is not cls
            and other.takes_place
            and other.starts_at < ends
            and starts < other.ends_at
        ):
            when = local_time(course, other.starts_at)
            raise ValidationError(
                f"That overlaps the class on {when:%A %-d %B at %H:%M}.", field="date"
            )
    require_in_zoom(course)
    if starts == cls.starts_at and duration == cls.duration_minutes:
        return cls
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now”, then move it.")
    before = cls.starts_at
    cls.original_starts_at = cls.original_starts_at or before
    cls.starts_at = starts
    cls.duration_minutes = duration
    cls.status = ClassStatus.MOVED
    refresh_ends_at(course)
    # The occurrence keeps its id; the sync moves it in Zoom and reads the meeting back.
    want(course, ZoomWork.SYNC)
    audit(
        session,
        "course.class_moved",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("class", cls.id),
        course_id=course.id,
        before=before.isoformat(),
        after=starts.isoformat(),
        duration=duration,
    )
    emit("schedule_changed", session, course, classes=[cls])
    session.flush()
    return cls


def cancel_class(
    session: Session,
    *,
    actor: User,
    course_id: int,
    class_id: int,
    now: dt.datetime,
) -> ClassSession:
    """Cancel one class: its Zoom occurrence is deleted after the commit so its link does not
    open."""
    course = changeable(session, actor, course_id)
    cls = get_class(course, class_id)
    if not cls.takes_place:
        raise Conflict("This class is already cancelled.")
    if cls.starts_at <= now:
        raise Conflict("This class has already started; it can no longer be cancelled.")
    require_in_zoom(course)
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now” first.")
    cls.status = ClassStatus.CANCELLED
    cls.cancelled_at = now
    refresh_ends_at(course)
    # The sync deletes the occurrence in Zoom (an occurrence open for a cancelled class is what
    # the drift check repairs), so its link stops opening.
    want(course, ZoomWork.SYNC)
    audit(
        session,
        "course.class_cancelled",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("class", cls.id),
        course_id=course.id,
        starts_at=cls.starts_at.isoformat(),
    )
    emit("schedule_changed", session, course, classes=[cls])
    session.flush()
    return cls


def _series_differs(course: Course, series: sched.Series) -> bool:
    return series_of(course) != sched.Series(
        first_date=series.first_date,
        weekdays=sched.parse_weekdays(list(series.weekdays)),
        start_time=series.start_time,
        duration_minutes=series.duration_minutes,
        timezone=series.timezone,
        class_count=series.class_count,
        end_date=series.end_date,
    )


def update_course(
    session: Session,
    *,
    actor: User,
    course_id: int,
    now: dt.datetime,
    title: str | None = None,
    teacher_id: int | None = None,
    series: sched.Series | None = None,
) -> Outcome:
    """Change the title, the teacher or the whole series (from its new first date on).

    The change is saved at once; Zoom gets it right after the commit (one PATCH, then the
    meeting is read back and verified). Zoom failing keeps the change waiting for Zoom, and the
    course page says so.
    """
    course = changeable(session, actor, course_id)
    changed: list[str] = []
    new_title = None
    if title is not None:
        new_title = check_title(title)
        if new_title != course.title:
            changed.append("title")
    teacher = None
    if teacher_id is not None and teacher_id != course.teacher_id:
        teacher = teacher_for(session, actor, teacher_id)
        changed.append("teacher")
    schedule = None
    if series is not None and _series_differs(course, series):
        schedule = sched.compute(series, now=now)
        changed.append("series")
    if not changed:
        return Outcome(course)

    in_zoom = course.zoom_state == ZoomState.CREATED
    if new_title is not None:
        course.title = new_title
    if teacher is not None:
        course.teacher_id = teacher.id
        course.teacher = teacher
    if schedule is not None:
        apply_series(course, schedule.series)
        reconcile_classes(session, course, schedule, now, keep_history=in_zoom)
    course.updated_at = now
    if course.zoom_state == ZoomState.FAILED:
        # Zoom refused the meeting; the change may be what it needed: try again.
        course.zoom_state = ZoomState.PENDING
        course.zoom_error = ""
    if "title" in changed or schedule is not None or course.zoom_state == ZoomState.PENDING:
        want(course, ZoomWork.SYNC, series=schedule is not None)
    audit(
        session,
        "course.updated",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        changed=changed,
    )
    if schedule is not None:
        emit("schedule_changed", session, course, classes=upcoming_classes(course, now))
    session.flush()
    return Outcome(course, schedule.warnings if schedule is not None else ())


def cancel_course(session: Session, *, actor: User, course_id: int, now: dt.datetime) -> Course:
    """Cancel the course; its meeting is deleted in Zoom right after the commit, so no link of
    it works any more (until Zoom confirms, the page says the deletion is under way)."""
    course = changeable(session, actor, course_id)
    course.zoom_state = ZoomState.CANCELLED
    course.cancelled_at = now
    course.zoom_error = ""
    want_deleted(course)
    for cls in class_sessions(course):
        if cls.takes_place and cls.starts_at > now:
            cls.status = ClassStatus.CANCELLED
            cls.cancelled_at = now
    refresh_ends_at(course)
    audit(
        session,
        "course.cancelled",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        meeting_id=course.zoom_meeting_id,
    )
    emit("course_cancelled", session, course)
    session.flush()
    return course


def rotate_passcode(session: Session, *, actor: User, course_id: int, now: dt.datetime) -> Course:
    """Give the meeting a new passcode (the old one leaked, or someone left); Zoom is told
    right after the commit, and the meeting is read back and verified."""
    course = get_course(session, actor, course_id)
    if not policy.may_rotate_passcode(actor, course):
        raise Forbidden("Only the course's teacher, an admin or the safeguarding lead can do this.")
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; its meeting no longer exists.")
    _set_passcode(course, safety.generate_passcode(), now)
    want(course, ZoomWork.SYNC)
    audit(
        session,
        "course.passcode_rotated",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
    )
    emit("passcode_rotated", session, course)
    session.flush()
    return course
