"""Courses: create the Zoom meeting behind each course, prove it is safe, keep it so, close it.

Every function takes a Session and plain values (plus the Zoom client, the acting user and
``now``), flushes, and never commits. Rules the rest of companion relies on:

* Nothing reaches Zoom until the whole input is valid (see :mod:`.schedule`).
* After every create or change the meeting is read back and compared with what companion asked
  for (:mod:`.safety`); a course whose meeting differs is "not safe", the setting is named, the
  teacher and the safeguarding lead(s) are mailed, and :func:`course_is_safe` says no.
* No function here calls Zoom. A change is saved with what Zoom must be told (``zoom_work``,
  see :func:`_want`); after the commit :mod:`.zoomwork` tells Zoom with no transaction open and
  records the answer in a transaction of its own, so a slow Zoom never holds the database.
* Zoom being down, slow or rate limiting never loses a course: it is kept "pending in Zoom" and
  created later, first looking for a meeting an earlier attempt may already have made (by the
  reference written into the agenda), so no course is created twice.
* The passcode is stored encrypted and never logged; the host's start link is fetched when the
  teacher presses "Start class" and is never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .. import mail, sealing, signals
from ..access import ADMIN, LEAD, TEACHER
from ..accounts.models import User
from ..audit.services import record as audit
from ..errors import (
    CompanionError,
    Conflict,
    ExternalServiceError,
    Forbidden,
    NotFound,
    ValidationError,
)
from ..sealing import Purpose
from ..zoom import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
)
from . import safety
from . import schedule as sched
from .models import ClassSession, Course
from .safety import SafetyProblem

log = logging.getLogger(__name__)

# Zoom failures worth trying again without a person changing anything. An auth failure is a
# configuration problem an admin fixes; the course waits for that rather than failing.
TRANSIENT = (ZoomConnectionError, ZoomServerError, ZoomRateLimited, ZoomAuthError)
# A meeting is closed this long after its last class, so a class that overran is not cut off
# and Zoom has time to hand over the recording.
CLOSE_GRACE = dt.timedelta(hours=2)
# Zoom refuses a start time in the past; a class this close is not worth creating.
CREATE_MARGIN = dt.timedelta(minutes=2)
MAX_TITLE = 200


# --- errors the views turn into responses ----------------------------------------------------


class ZoomUnavailable(ExternalServiceError):
    """Zoom did not answer (or is rate limiting); nothing was changed, or the work was kept."""

    code = "zoom_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class ZoomRefused(CompanionError):
    """Zoom answered and refused; a person has to change something."""

    code = "zoom_refused"
    status = 502


class NotSafeToStart(Conflict):
    code = "not_safe"


def _zoom_failure(exc: ZoomError, doing: str) -> CompanionError:
    """A domain error for a Zoom failure; the message never contains Zoom's body or headers."""
    if isinstance(exc, ZoomRateLimited):
        wait = int(exc.retry_after or 60)
        when = "tomorrow" if exc.daily else f"in {max(1, wait // 60 or 1)} minute(s)"
        return ZoomUnavailable(
            f"Zoom is limiting requests right now, so {doing} did not happen. Try again {when}.",
            retry_after=wait,
        )
    if isinstance(exc, TRANSIENT):
        return ZoomUnavailable(
            f"Zoom did not answer, so {doing} did not happen. Nothing was changed; "
            "try again in a minute.",
            retry_after=60,
        )
    if isinstance(exc, ZoomNotFound):
        return ZoomRefused(f"Zoom no longer has this course's meeting, so {doing} failed.")
    return ZoomRefused(f"Zoom refused {doing}: {exc.message}")


# --- signals: other parts of companion react to course changes -------------------------------


def _emit(event: str, session: Session, course: Course, **details: Any) -> None:
    """Tell the packages that react to ``event`` (see companion.signals), in this transaction.

    Receivers are connected by create_app (each package's init_app), not by importing them, so
    the worker and commands tell parents exactly as a request does.
    """
    if event not in signals.COURSE_EVENTS:
        raise ValueError(f"unknown course event {event!r}")
    signal = signals.COURSE_EVENTS[event]
    if signal is not None:
        signal.send(course, session=session, **details)


# --- what other packages use -----------------------------------------------------------------


def course_is_safe(course: Course) -> bool:
    """True only when the meeting exists in Zoom and its last check found every setting as
    enforced. Family links and passcodes are only sent for a course for which this is true."""
    return course.zoom_state == "created" and course.safety_state == "safe"


def passcode_of(course: Course) -> str:
    """The meeting passcode in clear (to show to the teacher and enrolled families only)."""
    return sealing.unseal(Purpose.COURSE_PASSCODE, course.passcode_encrypted)


def class_sessions(course: Course) -> list[ClassSession]:
    """Every class, cancelled ones included, oldest first."""
    return sorted(course.classes, key=lambda c: (c.starts_at, c.id or 0))


def upcoming_classes(course: Course, now: dt.datetime) -> list[ClassSession]:
    """Classes that take place and have not ended yet."""
    return [c for c in class_sessions(course) if c.takes_place and c.ends_at > now]


def local_time(course: Course, at: dt.datetime) -> dt.datetime:
    return at.astimezone(sched.zone(course.timezone))


def _set_passcode(course: Course, passcode: str, now: dt.datetime) -> None:
    course.passcode_encrypted = sealing.seal(Purpose.COURSE_PASSCODE, passcode)
    course.passcode_set_at = now


# --- who may see and change a course ---------------------------------------------------------


def _visible(user: User) -> Any:
    query = select(Course).where(Course.organisation_id == user.organisation_id)
    if user.role == TEACHER:
        query = query.where(Course.teacher_id == user.id)
    return query


def list_courses(session: Session, user: User, *, open_only: bool = False) -> list[Course]:
    """Courses the user may see: a teacher their own, the admin and the lead all of theirs."""
    query = _visible(user)
    if open_only:
        query = query.where(Course.zoom_state.in_(("pending", "created", "failed")))
    return list(session.scalars(query.order_by(Course.first_date.desc(), Course.id.desc())))


MAX_ID = 2**31 - 1


def get_course(session: Session, user: User, course_id: int) -> Course:
    """The course if the user may see it; otherwise "not found", so ids reveal nothing."""
    if not 0 < course_id <= MAX_ID:
        raise NotFound("No such course.")
    course = session.scalars(_visible(user).where(Course.id == course_id)).first()
    if course is None:
        raise NotFound("No such course.")
    return course


def may_change(user: User, course: Course) -> bool:
    return user.role == ADMIN or (user.role == TEACHER and course.teacher_id == user.id)


def _changeable(session: Session, user: User, course_id: int) -> Course:
    course = get_course(session, user, course_id)
    if not may_change(user, course):
        raise Forbidden(
            "Only the course's teacher or an admin can change it; the safeguarding lead can "
            "re-check it and rotate its passcode."
        )
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; it can no longer be changed.")
    return course


def get_class(course: Course, class_id: int) -> ClassSession:
    for cls in course.classes:
        if cls.id == class_id:
            return cls
    raise NotFound("No such class in this course.")


def teachers(session: Session, organisation_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(
                User.organisation_id == organisation_id,
                User.role == TEACHER,
                User.active.is_(True),
            )
            .order_by(User.name)
        )
    )


def _teacher_for(session: Session, actor: User, teacher_id: int | None) -> User:
    if actor.role == TEACHER:
        if teacher_id not in (None, actor.id):
            raise Forbidden("A teacher schedules their own courses.")
        return actor
    if actor.role != ADMIN:
        raise Forbidden("Only teachers and admins schedule courses.")
    if teacher_id is None:
        raise ValidationError("Choose the teacher of this course.", field="teacher_id")
    teacher = session.get(User, teacher_id) if 0 < teacher_id <= MAX_ID else None
    if (
        teacher is None
        or teacher.organisation_id != actor.organisation_id
        or teacher.role != TEACHER
        or not teacher.active
    ):
        raise ValidationError("Choose an active teacher of your organisation.", field="teacher_id")
    return teacher


def _check_title(title: str | None) -> str:
    text = " ".join((title or "").split())
    if not text:
        raise ValidationError("Give the course a title.", field="title")
    if len(text) > MAX_TITLE:
        raise ValidationError(f"Keep the title to {MAX_TITLE} characters.", field="title")
    return text


# --- creating a course -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a create or change saved, and the warnings to show (a class skipped by the clock
    change...). What Zoom made of it is on the course once its Zoom work has run."""

    course: Course
    warnings: tuple[str, ...] = ()


def series_of(course: Course) -> sched.Series:
    return sched.Series(
        first_date=course.first_date,
        weekdays=course.weekday_list,
        start_time=course.start_time,
        duration_minutes=course.duration_minutes,
        timezone=course.timezone,
        class_count=course.class_count,
        end_date=course.end_date,
    )


def edit_defaults(course: Course, now: dt.datetime) -> sched.Series:
    """The series as an edit starts from: from the next class on, once the course has started
    (a change of the whole series can only reach classes still to come)."""
    series = series_of(course)
    upcoming = [c for c in class_sessions(course) if c.takes_place and c.starts_at > now]
    started = any(c.starts_at <= now for c in course.classes)
    if not started or not upcoming:
        return series
    return sched.Series(
        first_date=local_time(course, upcoming[0].starts_at).date(),
        weekdays=series.weekdays,
        start_time=series.start_time,
        duration_minutes=series.duration_minutes,
        timezone=series.timezone,
        class_count=None if series.end_date else len(upcoming),
        end_date=series.end_date,
    )


def _apply_series(course: Course, series: sched.Series) -> None:
    course.first_date = series.first_date
    course.weekdays = ",".join(sched.parse_weekdays(list(series.weekdays)))
    course.start_time = series.start_time
    course.duration_minutes = series.duration_minutes
    course.timezone = series.timezone
    course.class_count = series.class_count
    course.end_date = series.end_date


def _expected_hosts(course: Course) -> tuple[str, ...]:
    org = course.organisation
    email = (org.safeguarding_contact_email or "").strip().lower()
    return (email,) if org.lead_as_alternative_host and email else ()


def _expected(course: Course, now: dt.datetime) -> safety.Expected:
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


def _marker(ref: str) -> str:
    return f"[companion:{ref}]"


def create_course(
    session: Session,
    zoom: Any = None,
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

    Bad input raises ValidationError before anything is saved. ``zoom`` is not used: it is kept
    so that callers written before the work engine need not change.
    """
    teacher = _teacher_for(session, actor, teacher_id)
    title = _check_title(title)
    schedule = sched.compute(series, now=now)
    course = Course(
        organisation_id=actor.organisation_id,
        teacher_id=teacher.id,
        title=title,
        zoom_user_id=zoom_user_id,
        zoom_state="pending",
        safety_state="unverified",
        companion_ref="c" + secrets.token_hex(12),
        zoom_attempts=0,
        zoom_work_seq=0,
        zoom_synced_seq=0,
        zoom_resend_series=False,
        created_at=now,
        updated_at=now,
    )
    _apply_series(course, schedule.series)
    course.organisation = actor.organisation
    course.teacher = teacher
    _set_passcode(course, safety.generate_passcode(), now)
    _want(course, "create")
    session.add(course)
    session.flush()
    _reconcile_classes(session, course, schedule, now, keep_history=False)
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
    _emit("course_created", session, course)
    return Outcome(course, schedule.warnings)


def _want(course: Course, work: str, *, changed: bool = True, series: bool = False) -> None:
    """Record what Zoom must be told about the course; the work engine tells it after the commit.

    Deleting wins over everything; until the meeting exists every change is part of creating it
    (the create sends the course as it is then). ``changed`` says the course's desired state
    changed, so a step that prepared an older version leaves the work for another run.
    """
    current = course.zoom_work or ""
    if current == "delete" or work == "delete":
        course.zoom_work = "delete"
    elif course.zoom_meeting_id is None:
        course.zoom_work = "create"
    else:
        course.zoom_work = "sync"
    if series:
        course.zoom_resend_series = True
    if changed:
        course.zoom_work_seq = (course.zoom_work_seq or 0) + 1
    # Due now; a claim held by a run in flight still keeps everyone else out.
    course.zoom_next_attempt_at = None


def _zoom_plan(course: Course, now: dt.datetime) -> sched.Schedule | None:
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


def _create_body(course: Course, plan: sched.Schedule, expected: safety.Expected) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": course.title,
        # The reference comes first: Zoom's meeting list cuts the agenda at 250 characters.
        "agenda": f"{_marker(course.companion_ref)} Class run with companion.",
        **sched.meeting_times(plan),
        "password": expected.passcode,
        "default_password": False,
        "settings": safety.meeting_settings(expected),
    }
    return body


def retry_create(
    session: Session, zoom: Any = None, *, actor: User, course_id: int, now: dt.datetime
) -> Outcome:
    """A person asks to try a pending or refused course again now.

    Only the intent is recorded; the attempt is the work engine's, under the same claim as the
    worker's, so a retry pressed while an attempt is in flight does nothing twice.
    """
    course = _changeable(session, actor, course_id)
    if course.zoom_state not in ("pending", "failed"):
        raise Conflict("This course is already in Zoom.")
    course.zoom_state = "pending"
    course.zoom_error = ""
    _want(course, "create", changed=False)
    session.flush()
    return Outcome(course)


# --- reading back and verifying --------------------------------------------------------------


def _take_urls(course: Course, meeting: dict[str, Any]) -> None:
    # Only the participants' links; the host's start_url is never kept.
    if isinstance(meeting.get("join_url"), str):
        course.join_url = meeting["join_url"][:1000]
    if isinstance(meeting.get("registration_url"), str):
        course.registration_url = meeting["registration_url"][:1000]


def _refresh_ends_at(course: Course) -> None:
    taking_place = [c.ends_at for c in course.classes if c.takes_place]
    every = [c.ends_at for c in course.classes]
    course.ends_at = max(taking_place or every) if every else None


def _schedule_problems(
    course: Course, meeting: dict[str, Any], now: dt.datetime
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


def _evaluate(
    course: Course, meeting: dict[str, Any], expected: safety.Expected, now: dt.datetime
) -> list[SafetyProblem]:
    problems = safety.verify(meeting, expected)
    _, check = _schedule_problems(course, meeting, now)
    problems += [SafetyProblem("schedule", "as companion planned", text) for text in check.problems]
    return problems


def _meeting_gone(
    session: Session, course: Course, *, now: dt.datetime, actor: User | None
) -> list[SafetyProblem]:
    """Someone deleted the meeting in Zoom: the course is not safe, and people are told."""
    return _record_safety(
        session,
        course,
        [SafetyProblem("meeting", "exists in Zoom", "the meeting no longer exists in Zoom")],
        now=now,
        actor=actor,
    )


def _record_safety(
    session: Session,
    course: Course,
    problems: list[SafetyProblem],
    *,
    now: dt.datetime,
    actor: User | None,
) -> list[SafetyProblem]:
    before = course.safety_state
    after = "not_safe" if problems else "safe"
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
        _emit("safety_changed", session, course, before=before, after=after)
    if problems and key != course.safety_alerted:
        _tell(session, course, _alarm_text(course, problems), kind="course.not_safe")
        course.safety_alerted = key[:500]
    elif not problems and course.safety_alerted:
        _tell(session, course, _all_clear_text(course), kind="course.safe_again")
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


def _alarm_text(course: Course, problems: Iterable[SafetyProblem]) -> tuple[str, str]:
    lines = "\n".join(f"  - {p.describe()}" for p in problems)
    body = (
        f'Zoom is not applying companion\'s safety settings to the course "{course.title}" '
        f"(teacher: {course.teacher.name}).\n\n{lines}\n\n"
        "Until this is fixed companion sends no family links for this course and will not "
        "start its classes. companion tried to put the settings back and could not; a setting "
        "locked for the whole Zoom account is the usual cause, so ask whoever manages your "
        "Zoom account.\n\n"
        f"Course page: {_course_link(course)}\n"
    )
    return f"Not safe: {course.title}", body


def _all_clear_text(course: Course) -> tuple[str, str]:
    body = (
        f'The course "{course.title}" was checked again and every safety setting is on in Zoom. '
        f"Nothing more needs doing.\n\nCourse page: {_course_link(course)}\n"
    )
    return f"Safe again: {course.title}", body


def _tell(session: Session, course: Course, text: tuple[str, str], *, kind: str) -> None:
    subject, body = text
    for email, name in _recipients(session, course):
        mail.send(
            session,
            to_address=email,
            to_name=name,
            subject=subject,
            body=body,
            kind=kind,
            organisation_id=course.organisation_id,
        )


# --- changes ---------------------------------------------------------------------------------


def _zoom_utc(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _require_in_zoom(course: Course) -> int:
    if course.zoom_state != "created" or course.zoom_meeting_id is None:
        raise Conflict(
            "This course is not in Zoom yet; its classes can be changed once it is."
            if course.zoom_state in ("pending", "failed")
            else f"This course is {course.zoom_state}."
        )
    return course.zoom_meeting_id


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
    zoom: Any = None,
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
    course = _changeable(session, actor, course_id)
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
    _require_in_zoom(course)
    if starts == cls.starts_at and duration == cls.duration_minutes:
        return cls
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now”, then move it.")
    before = cls.starts_at
    cls.original_starts_at = cls.original_starts_at or before
    cls.starts_at = starts
    cls.duration_minutes = duration
    cls.status = "moved"
    _refresh_ends_at(course)
    # The occurrence keeps its id; the sync moves it in Zoom and reads the meeting back.
    _want(course, "sync")
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
    _emit("schedule_changed", session, course, classes=[cls])
    session.flush()
    return cls


def cancel_class(
    session: Session,
    zoom: Any = None,
    *,
    actor: User,
    course_id: int,
    class_id: int,
    now: dt.datetime,
) -> ClassSession:
    """Cancel one class: its Zoom occurrence is deleted after the commit so its link does not
    open."""
    course = _changeable(session, actor, course_id)
    cls = get_class(course, class_id)
    if not cls.takes_place:
        raise Conflict("This class is already cancelled.")
    if cls.starts_at <= now:
        raise Conflict("This class has already started; it can no longer be cancelled.")
    _require_in_zoom(course)
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now” first.")
    cls.status = "cancelled"
    cls.cancelled_at = now
    _refresh_ends_at(course)
    # The sync deletes the occurrence in Zoom (an occurrence open for a cancelled class is what
    # the drift check repairs), so its link stops opening.
    _want(course, "sync")
    audit(
        session,
        "course.class_cancelled",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("class", cls.id),
        course_id=course.id,
        starts_at=cls.starts_at.isoformat(),
    )
    _emit("schedule_changed", session, course, classes=[cls])
    session.flush()
    return cls


def _reconcile_classes(
    session: Session,
    course: Course,
    schedule: sched.Schedule,
    now: dt.datetime,
    *,
    keep_history: bool,
) -> None:
    """Make the course's future classes those of ``schedule``.

    A class on the same local day as before stays the same row (its time may change), so
    whatever other parts of companion attached to it stays attached. A future class the new
    series drops is cancelled (or deleted when the course never reached Zoom); past classes
    are history and stay as they were.
    """
    tz = sched.zone(course.timezone)
    future = [c for c in class_sessions(course) if c.takes_place and c.starts_at > now]
    by_day: dict[dt.date, ClassSession] = {}
    for cls in future:
        by_day.setdefault(cls.starts_at.astimezone(tz).date(), cls)
    for planned in schedule.classes:
        row = by_day.pop(planned.local_start.date(), None)
        if row is None:
            row = ClassSession(course=course, created_at=now)
            session.add(row)
        elif row.starts_at != planned.starts_at:
            row.occurrence_id = None
        row.starts_at = planned.starts_at
        row.duration_minutes = planned.duration_minutes
        row.status = "scheduled"
        row.original_starts_at = None
    for row in by_day.values():
        if keep_history:
            row.status = "cancelled"
            row.cancelled_at = now
        else:
            course.classes.remove(row)
            session.delete(row)
    _refresh_ends_at(course)
    session.flush()


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
    zoom: Any = None,
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
    course = _changeable(session, actor, course_id)
    changed: list[str] = []
    new_title = None
    if title is not None:
        new_title = _check_title(title)
        if new_title != course.title:
            changed.append("title")
    teacher = None
    if teacher_id is not None and teacher_id != course.teacher_id:
        teacher = _teacher_for(session, actor, teacher_id)
        changed.append("teacher")
    schedule = None
    if series is not None and _series_differs(course, series):
        schedule = sched.compute(series, now=now)
        changed.append("series")
    if not changed:
        return Outcome(course)

    in_zoom = course.zoom_state == "created"
    if new_title is not None:
        course.title = new_title
    if teacher is not None:
        course.teacher_id = teacher.id
        course.teacher = teacher
    if schedule is not None:
        _apply_series(course, schedule.series)
        _reconcile_classes(session, course, schedule, now, keep_history=in_zoom)
    course.updated_at = now
    if course.zoom_state == "failed":
        # Zoom refused the meeting; the change may be what it needed: try again.
        course.zoom_state = "pending"
        course.zoom_error = ""
    if "title" in changed or schedule is not None or course.zoom_state == "pending":
        _want(course, "sync", series=schedule is not None)
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
        _emit("schedule_changed", session, course, classes=upcoming_classes(course, now))
    session.flush()
    return Outcome(course, schedule.warnings if schedule is not None else ())


def cancel_course(
    session: Session, zoom: Any = None, *, actor: User, course_id: int, now: dt.datetime
) -> Course:
    """Cancel the course; its meeting is deleted in Zoom right after the commit, so no link of
    it works any more (until Zoom confirms, the page says the deletion is under way)."""
    course = _changeable(session, actor, course_id)
    course.zoom_state = "cancelled"
    course.cancelled_at = now
    course.zoom_error = ""
    _want_deleted(course)
    for cls in class_sessions(course):
        if cls.takes_place and cls.starts_at > now:
            cls.status = "cancelled"
            cls.cancelled_at = now
    _refresh_ends_at(course)
    audit(
        session,
        "course.cancelled",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        meeting_id=course.zoom_meeting_id,
    )
    _emit("course_cancelled", session, course)
    session.flush()
    return course


def _want_deleted(course: Course) -> None:
    """The meeting must go. A course no attempt ever claimed has nothing in Zoom to delete; any
    other may have a meeting (an attempt that seemed to fail may have made it after all)."""
    if course.zoom_meeting_id is None and not course.zoom_attempts:
        course.zoom_work = ""
        course.zoom_next_attempt_at = None
        return
    _want(course, "delete")


def rotate_passcode(
    session: Session, zoom: Any = None, *, actor: User, course_id: int, now: dt.datetime
) -> Course:
    """Give the meeting a new passcode (the old one leaked, or someone left); Zoom is told
    right after the commit, and the meeting is read back and verified."""
    course = get_course(session, actor, course_id)
    if not (may_change(actor, course) or actor.role == LEAD):
        raise Forbidden("Only the course's teacher, an admin or the safeguarding lead can do this.")
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; its meeting no longer exists.")
    _set_passcode(course, safety.generate_passcode(), now)
    _want(course, "sync")
    audit(
        session,
        "course.passcode_rotated",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
    )
    _emit("passcode_rotated", session, course)
    session.flush()
    return course


def verify_now(
    session: Session, zoom: Any = None, *, actor: User, course_id: int, now: dt.datetime
) -> Course:
    """ "Re-check now": ask for the scheduled check (read, repair, verify) of one course now."""
    course = get_course(session, actor, course_id)
    if course.zoom_state != "created" or course.zoom_meeting_id is None:
        raise Conflict("This course has no meeting in Zoom to check.")
    _want(course, "sync", changed=False)
    session.flush()
    return course


def want_check(session: Session, course_ids: Iterable[int]) -> list[int]:
    """Ask for the drift check of these courses (in Zoom, no other work waiting); their ids."""
    ids = list(course_ids)
    if not ids:
        return []
    session.execute(
        update(Course)
        .where(Course.id.in_(ids), Course.zoom_state == "created", Course.zoom_work == "")
        .values(zoom_work="sync", zoom_next_attempt_at=None)
        .execution_options(synchronize_session="fetch")
    )
    return ids


@dataclass(frozen=True)
class StartPlan:
    """What "Start class" needs from the database, as plain values (read before Zoom is asked)."""

    course_id: int
    meeting_id: int
    expected: safety.Expected
    actor_id: int


def start_plan(
    session: Session, zoom: Any = None, *, actor: User, course_id: int, now: dt.datetime
) -> StartPlan:
    """Check that the actor may start the course now and put it on the audit trail; the start
    link is then fetched from Zoom with no transaction open (:func:`.zoomwork.start_class`)."""
    course = get_course(session, actor, course_id)
    if course.teacher_id != actor.id:
        raise Forbidden("Only the course's teacher can start its classes.")
    meeting_id = _require_in_zoom(course)
    if course.ends_at is not None and course.ends_at <= now:
        raise Conflict("The last class of this course is over.")
    audit(
        session,
        "course.start_link_issued",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
    )
    session.flush()
    return StartPlan(course.id, meeting_id, _expected(course, now), actor.id)


def record_start(
    session: Session,
    plan: StartPlan,
    meeting: dict[str, Any] | None,
    *,
    now: dt.datetime,
) -> str:
    """Record what Zoom said when the start link was fetched; the link, or NotSafeToStart.

    ``meeting`` is None when Zoom no longer has the meeting. A meeting whose settings are off
    (after the repair the fetch tried) marks the course not safe and tells people; the caller
    commits that before refusing to start.
    """
    course = session.get(Course, plan.course_id)
    actor = session.get(User, plan.actor_id)
    if course is None:
        raise NotFound("No such course.")
    if meeting is None:
        _meeting_gone(session, course, now=now, actor=actor)
        raise NotSafeToStart(
            "Zoom no longer has this course's meeting. The safeguarding lead has been told."
        )
    _take_urls(course, meeting)
    problems = _evaluate(course, meeting, plan.expected, now)
    _record_safety(session, course, problems, now=now, actor=actor)
    blocking = [p for p in problems if p.setting != "schedule"]
    if blocking:
        raise NotSafeToStart(
            "This class is not safe to start: "
            + "; ".join(p.describe() for p in blocking)
            + ". The safeguarding lead has been told."
        )
    url = meeting.get("start_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ZoomRefused("Zoom did not give a start link for this meeting.")
    return url


# --- the jobs' queries and closing ------------------------------------------------------------


def upcoming_in_zoom(session: Session, now: dt.datetime) -> list[int]:
    """Courses in Zoom with a class still to come or under way: what the drift check reads."""
    return list(
        session.scalars(
            select(Course.id)
            .where(
                Course.zoom_state == "created",
                or_(Course.ends_at.is_(None), Course.ends_at > now),
            )
            .order_by(Course.id)
        )
    )


def finished(session: Session, now: dt.datetime) -> list[int]:
    """Open courses whose last class ended more than the grace period ago."""
    return list(
        session.scalars(
            select(Course.id)
            .where(
                Course.zoom_state.in_(("pending", "created", "failed")),
                Course.ends_at.is_not(None),
                Course.ends_at <= now - CLOSE_GRACE,
            )
            .order_by(Course.id)
        )
    )


def close_course(session: Session, zoom: Any = None, *, course_id: int, now: dt.datetime) -> str:
    """Close a finished course; its meeting is deleted in Zoom by the work that follows the
    commit, so its links die. Returns the course's state."""
    course = session.get(Course, course_id)
    if course is None or not course.is_open:
        return "gone"
    if course.ends_at is None or course.ends_at > now - CLOSE_GRACE:
        return course.zoom_state
    course.zoom_state = "closed"
    course.closed_at = now
    course.zoom_error = ""
    _want_deleted(course)
    audit(
        session,
        "course.closed",
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        meeting_id=course.zoom_meeting_id,
    )
    _emit("course_closed", session, course)
    session.flush()
    return course.zoom_state


# --- presentation helpers --------------------------------------------------------------------


@dataclass(frozen=True)
class PanelRow:
    key: str
    label: str
    ok: bool | None  # None: not verified yet
    reasons: tuple[str, ...]


PANEL_GROUPS = ("waiting_room", "passcode", "recording", "registration", "host", "schedule")


def safety_panel(course: Course) -> list[PanelRow]:
    """One row per safety area for the course page: tick, cross or not verified, and why."""
    problems = [SafetyProblem.from_dict(p) for p in course.problems]
    grouped = safety.groups_status(problems)
    meeting_gone = bool(grouped.get("meeting"))
    rows = []
    for key in PANEL_GROUPS:
        found = grouped.get(key, [])
        if course.safety_state == "unverified" or course.last_verified_at is None:
            ok: bool | None = None
        else:
            ok = not found and not meeting_gone
        reasons = tuple(p.describe() for p in found)
        if meeting_gone and not found:
            reasons = ("the meeting no longer exists in Zoom",)
        rows.append(PanelRow(key, safety.GROUPS[key], ok, reasons))
    return rows


def problem_list(course: Course) -> list[SafetyProblem]:
    return [SafetyProblem.from_dict(p) for p in course.problems]


def passcode_preview(course: Course) -> str | None:
    try:
        return passcode_of(course)
    except sealing.Unreadable:
        return None


def preload_for_lists(session: Session, courses: Sequence[Course]) -> None:
    """Fill in the classes and the teacher of every course a page lists, in at most two queries;
    otherwise each course reads its classes (and each teacher their row) when the page first
    touches them. Already loaded ones are left as they are."""
    inspected = [(course, inspect(course).unloaded) for course in courses]
    need_classes = [c for c, unloaded in inspected if "classes" in unloaded]
    if need_classes:
        classes: dict[int, list[ClassSession]] = defaultdict(list)
        for cls in session.scalars(
            select(ClassSession)
            .where(ClassSession.course_id.in_({c.id for c in need_classes}))
            .order_by(ClassSession.starts_at, ClassSession.id)
        ):
            classes[cls.course_id].append(cls)
        for course in need_classes:
            set_committed_value(course, "classes", classes[course.id])
            for cls in classes[course.id]:
                set_committed_value(cls, "course", course)
    need_teacher = [c for c, unloaded in inspected if "teacher" in unloaded]
    # A teacher already in the session (the signed-in one) costs nothing to reach.
    teachers = {
        c.teacher_id: found
        for c in need_teacher
        if (found := session.identity_map.get(identity_key(User, c.teacher_id))) is not None
    }
    missing = {c.teacher_id for c in need_teacher} - teachers.keys()
    if missing:
        teachers.update(
            (u.id, u) for u in session.scalars(select(User).where(User.id.in_(missing)))
        )
    for course in need_teacher:
        if course.teacher_id in teachers:
            set_committed_value(course, "teacher", teachers[course.teacher_id])
