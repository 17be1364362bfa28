"""Reading the meeting back and proving it is safe.

After every create or change the meeting is read back and compared with what companion asked
for (:mod:`.safety`); a course whose meeting differs is "not safe", the setting is named, the
teacher and the safeguarding lead(s) are mailed, and :func:`course_is_safe` says no. Family links
and passcodes are only sent for a course that is safe.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import mail, sealing
from ..access import LEAD
from ..accounts.models import User
from ..audit.services import record as audit
from ..errors import Conflict
from ..zoom.api import Meeting
from . import safety
from . import schedule as sched
from .access import get_course
from .events import emit
from .models import ClassSession, Course, SafetyState, ZoomState, ZoomWork
from .passcodes import _set_passcode, passcode_of
from .safety import SafetyProblem
from .timetable import class_sessions
from .wanted import want

log = logging.getLogger(__name__)


def course_is_safe(course: Course) -> bool:
    """True only when the meeting exists in Zoom and its last check found every setting as
    enforced. Family links and passcodes are only sent for a course for which this is true."""
    return course.zoom_state == ZoomState.CREATED and course.safety_state == SafetyState.SAFE


def _expected_hosts(course: Course) -> tuple[str, ...]:
    org = course.organisation
    email = (org.safeguarding_contact_email or "").strip().lower()
    return (email,) if org.lead_as_alternative_host and email else ()


def expected_of(course: Course, now: dt.datetime) -> safety.Expected:
    """What the meeting must have that is the course's own: its passcode and alternative hosts."""
    try:
        passcode = passcode_of(course)
    except sealing.Unreadable:
        # The key changed: companion's copy is lost, so the only safe move is a new passcode,
        # which the next repair sends to Zoom.
        log.warning("course %s: stored passcode unreadable; a new one will be set", course.id)
        passcode = safety.generate_passcode()
        _set_passcode(course, passcode, now)
    hosts = _expected_hosts(course)
    course.alternative_hosts = ";".join(hosts)
    return safety.Expected(passcode=passcode, alternative_hosts=hosts)


def take_urls(course: Course, meeting: Meeting) -> None:
    # Only the participants' links; the host's start_url is never kept.
    if isinstance(meeting.get("join_url"), str):
        course.join_url = meeting["join_url"][:1000]
    if isinstance(meeting.get("registration_url"), str):
        course.registration_url = meeting["registration_url"][:1000]


def schedule_problems(
    course: Course, meeting: Meeting, now: dt.datetime
) -> tuple[list[ClassSession], sched.ScheduleCheck]:
    tz = sched.zone(course.timezone)
    expected = [c for c in class_sessions(course) if c.takes_place]
    planned = [
        sched.PlannedClass(c.starts_at, c.starts_at.astimezone(tz), c.duration_minutes)
        for c in expected
    ]
    check = sched.match_occurrences(planned, meeting, since=now)
    for cls, occ in zip(expected, check.matched, strict=True):
        if occ is not None:
            cls.occurrence_id = occ.occurrence_id
    return expected, check


def evaluate(
    course: Course, meeting: Meeting, expected: safety.Expected, now: dt.datetime
) -> list[SafetyProblem]:
    problems = safety.verify(meeting, expected)
    _, check = schedule_problems(course, meeting, now)
    problems += [SafetyProblem("schedule", "as companion planned", text) for text in check.problems]
    return problems


def meeting_gone(
    session: Session, course: Course, *, now: dt.datetime, actor: User | None
) -> list[SafetyProblem]:
    """Someone deleted the meeting in Zoom: the course is not safe, and people are told."""
    return record_safety(
        session,
        course,
        [SafetyProblem("meeting", "exists in Zoom", "the meeting no longer exists in Zoom")],
        now=now,
        actor=actor,
    )


def record_safety(
    session: Session,
    course: Course,
    problems: list[SafetyProblem],
    *,
    now: dt.datetime,
    actor: User | None,
) -> list[SafetyProblem]:
    before = course.safety_state
    after = SafetyState.NOT_SAFE if problems else SafetyState.SAFE
    settings = sorted({p.setting for p in problems})
    key = ",".join(settings)
    course.safety_state = after
    course.safety_problems = json.dumps([p.as_dict() for p in problems], default=str)
    course.last_verified_at = now
    if before != after or (problems and key != course.safety_alerted):
        audit(
            session,
            "course.safety_changed",
            actor=actor,
            organisation_id=course.organisation_id,
            subject=("course", course.id),
            course_id=course.id,
            before=before,
            after=after,
            settings=settings,
        )
        emit("safety_changed", session, course, before=before, after=after)
    if problems and key != course.safety_alerted:
        _tell(session, course, "course.not_safe", problems=list(problems))
        course.safety_alerted = key[:500]
    elif not problems and course.safety_alerted:
        _tell(session, course, "course.safe_again")
        course.safety_alerted = ""
    session.flush()
    return problems


def _recipients(session: Session, course: Course) -> list[tuple[str, str]]:
    leads = session.scalars(
        select(User)
        .where(
            User.organisation_id == course.organisation_id,
            User.role == LEAD,
            User.active.is_(True),
        )
        .order_by(User.id)
    ).all()
    people = [(course.teacher.email, course.teacher.name)]
    people += [(u.email, u.name) for u in leads]
    org = course.organisation
    if not leads and org.safeguarding_contact_email:
        people.append((org.safeguarding_contact_email, org.safeguarding_contact_name))
    seen: set[str] = set()
    unique = []
    for email, name in people:
        if email and email.lower() not in seen:
            seen.add(email.lower())
            unique.append((email, name))
    return unique


def _course_link(course: Course) -> str:
    return f"{current_app.config['BASE_URL']}/courses/{course.id}"


def _tell(session: Session, course: Course, kind: str, **facts: Any) -> None:
    for email, name in _recipients(session, course):
        mail.send(
            session,
            kind=kind,
            to_address=email,
            to_name=name,
            organisation_id=course.organisation_id,
            course=course,
            link=_course_link(course),
            **facts,
        )


def verify_now(session: Session, *, actor: User, course_id: int, now: dt.datetime) -> Course:
    """ "Re-check now": ask for the scheduled check (read, repair, verify) of one course now."""
    course = get_course(session, actor, course_id)
    if course.zoom_state != ZoomState.CREATED or course.zoom_meeting_id is None:
        raise Conflict("This course has no meeting in Zoom to check.")
    want(course, ZoomWork.SYNC, changed=False)
    session.flush()
    return course


def want_check(session: Session, course_ids: Iterable[int]) -> list[int]:
    """Ask for the drift check of these courses (in Zoom, no other work waiting); their ids."""
    ids = list(course_ids)
    if not ids:
        return []
    session.execute(
        update(Course)
        .where(
            Course.id.in_(ids),
            Course.zoom_state == ZoomState.CREATED,
            Course.zoom_work == ZoomWork.NONE,
        )
        .values(zoom_work=ZoomWork.SYNC, zoom_next_attempt_at=None)
        .execution_options(synchronize_session="fetch")
    )
    return ids
