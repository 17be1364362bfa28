"""Creating a course: saved "pending in Zoom", its meeting created after the commit.

Nothing reaches Zoom until the whole input is valid (see :mod:`.schedule`). Zoom being down, slow
or rate limiting never loses a course: it is kept "pending in Zoom" and created later by
:mod:`.zoomwork`, first looking for a meeting an earlier attempt may already have made (by the
reference written into the agenda, :func:`marker`), so no course is created twice.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ..accounts.models import User
from ..audit.services import record as audit
from ..errors import Conflict, ValidationError
from . import safety
from . import schedule as sched
from .access import changeable, teacher_for
from .events import emit
from .models import Course, SafetyState, ZoomState, ZoomWork
from .passcodes import _set_passcode
from .timetable import apply_series, class_sessions, local_time, reconcile_classes
from .wanted import want

# Zoom refuses a start time in the past; a class this close is not worth creating.
CREATE_MARGIN = dt.timedelta(minutes=2)
MAX_TITLE = 200


def check_title(title: str | None) -> str:
    text = " ".join((title or "").split())
    if not text:
        raise ValidationError("Give the course a title.", field="title")
    if len(text) > MAX_TITLE:
        raise ValidationError(f"Keep the title to {MAX_TITLE} characters.", field="title")
    return text


@dataclass
class Outcome:
    """What a create or change saved, and the warnings to show (a class skipped by the clock
    change...). What Zoom made of it is on the course once its Zoom work has run."""

    course: Course
    warnings: tuple[str, ...] = ()


def marker(ref: str) -> str:
    return f"[companion:{ref}]"


def create_course(
    session: Session,
    *,
    actor: User,
    title: str,
    series: sched.Series,
    now: dt.datetime,
    teacher_id: int | None = None,
    zoom_user_id: str = "me",
) -> Outcome:
    """Save a course "pending in Zoom"; the meeting is created after the commit (see
    :mod:`.zoomwork`), so nobody waits on Zoom while the database is locked.

    Bad input raises ValidationError before anything is saved.
    """
    teacher = teacher_for(session, actor, teacher_id)
    title = check_title(title)
    schedule = sched.compute(series, now=now)
    course = Course(
        organisation_id=actor.organisation_id,
        teacher_id=teacher.id,
        title=title,
        zoom_user_id=zoom_user_id,
        zoom_state=ZoomState.PENDING,
        safety_state=SafetyState.UNVERIFIED,
        companion_ref="c" + secrets.token_hex(12),
        zoom_attempts=0,
        zoom_work_seq=0,
        zoom_synced_seq=0,
        zoom_resend_series=False,
        created_at=now,
        updated_at=now,
    )
    apply_series(course, schedule.series)
    course.organisation = actor.organisation
    course.teacher = teacher
    _set_passcode(course, safety.generate_passcode(), now)
    want(course, ZoomWork.CREATE)
    session.add(course)
    session.flush()
    reconcile_classes(session, course, schedule, now, keep_history=False)
    audit(
        session,
        "course.created",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        title=title,
        classes=schedule.count,
        teacher_id=teacher.id,
    )
    emit("course_created", session, course)
    return Outcome(course, schedule.warnings)


def zoom_plan(course: Course, now: dt.datetime) -> sched.Schedule | None:
    """The series to send to Zoom: the classes still to come (earlier ones cannot be created)."""
    remaining = [
        c for c in class_sessions(course) if c.takes_place and c.starts_at > now + CREATE_MARGIN
    ]
    if not remaining:
        return None
    first = local_time(course, remaining[0].starts_at)
    plan = sched.compute(
        sched.Series(
            first_date=first.date(),
            weekdays=course.weekday_list,
            start_time=course.start_time,
            duration_minutes=course.duration_minutes,
            timezone=course.timezone,
            class_count=len(remaining),
        )
    )
    return plan


def create_body(course: Course, plan: sched.Schedule, expected: safety.Expected) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": course.title,
        # The reference comes first: Zoom's meeting list cuts the agenda at 250 characters.
        "agenda": f"{marker(course.companion_ref)} Class run with companion.",
        **sched.meeting_times(plan),
        "password": expected.passcode,
        "default_password": False,
        "settings": safety.meeting_settings(expected),
    }
    return body


def retry_create(session: Session, *, actor: User, course_id: int, now: dt.datetime) -> Outcome:
    """A person asks to try a pending or refused course again now.

    Only the intent is recorded; the attempt is the work engine's, under the same claim as the
    worker's, so a retry pressed while an attempt is in flight does nothing twice.
    """
    course = changeable(session, actor, course_id)
    if course.zoom_state not in (ZoomState.PENDING, ZoomState.FAILED):
        raise Conflict("This course is already in Zoom.")
    course.zoom_state = ZoomState.PENDING
    course.zoom_error = ""
    want(course, ZoomWork.CREATE, changed=False)
    session.flush()
    return Outcome(course)
