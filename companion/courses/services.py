"""Courses: create the Zoom meeting behind each course, prove it is safe, keep it so, close it.

Every function takes a Session and plain values (plus the Zoom client, the acting user and
``now``), flushes, and never commits. Rules the rest of companion relies on:

* Nothing reaches Zoom until the whole input is valid (see :mod:`.schedule`).
* After every create or change the meeting is read back and compared with what companion asked
  for (:mod:`.safety`); a course whose meeting differs is "not safe", the setting is named, the
  teacher and the safeguarding lead(s) are mailed, and :func:`course_is_safe` says no.
* Zoom being down, slow or rate limiting never loses a course: it is kept "pending in Zoom" and
  created later by :func:`push_pending`, which first looks for a meeting an earlier attempt may
  already have made (by the reference written into the agenda), so no course is created twice.
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

from .. import mail, signals
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
from ..zoom import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
)
from . import crypto, safety
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
CLAIM_FOR = dt.timedelta(minutes=10)
MAX_RETRY_DELAY = dt.timedelta(hours=1)
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
    return crypto.unseal(course.passcode_encrypted, _secret_key())


def class_sessions(course: Course) -> list[ClassSession]:
    """Every class, cancelled ones included, oldest first."""
    return sorted(course.classes, key=lambda c: (c.starts_at, c.id or 0))


def upcoming_classes(course: Course, now: dt.datetime) -> list[ClassSession]:
    """Classes that take place and have not ended yet."""
    return [c for c in class_sessions(course) if c.takes_place and c.ends_at > now]


def local_time(course: Course, at: dt.datetime) -> dt.datetime:
    return at.astimezone(sched.zone(course.timezone))


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


def _set_passcode(course: Course, passcode: str, now: dt.datetime) -> None:
    course.passcode_encrypted = crypto.seal(passcode, _secret_key())
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
    """What a create or change did. ``zoom_problem`` is set when Zoom could not be reached or
    refused; the course is kept (pending or failed) and the caller says so."""

    course: Course
    warnings: tuple[str, ...] = ()
    zoom_problem: CompanionError | None = None


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
    except crypto.PasscodeUnreadable:
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
    zoom: Any,
    *,
    actor: User,
    title: str,
    series: sched.Series,
    now: dt.datetime,
    teacher_id: int | None = None,
    zoom_user_id: str = "me",
) -> Outcome:
    """Save a course and create its meeting in Zoom, then read it back and verify it.

    Bad input raises ValidationError before anything is saved or sent. When Zoom cannot be
    reached the course is kept as "pending in Zoom" and ``Outcome.zoom_problem`` says why.
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
        created_at=now,
        updated_at=now,
    )
    _apply_series(course, schedule.series)
    course.organisation = actor.organisation
    course.teacher = teacher
    _set_passcode(course, safety.generate_passcode(), now)
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
    problem = _try_create(session, zoom, course, now=now, actor=actor)
    return Outcome(course, schedule.warnings, problem)


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


def _retry_delay(attempts: int, exc: ZoomError) -> dt.timedelta:
    if isinstance(exc, ZoomRateLimited) and exc.retry_after:
        return dt.timedelta(seconds=max(1.0, float(exc.retry_after)))
    return min(dt.timedelta(minutes=2 ** max(0, attempts - 1)), MAX_RETRY_DELAY)


def _postpone(course: Course, exc: ZoomError, now: dt.datetime) -> CompanionError:
    course.zoom_state = "pending"
    course.zoom_claimed_until = None
    course.zoom_next_attempt_at = now + _retry_delay(course.zoom_attempts, exc)
    problem = _zoom_failure(exc, "creating the meeting")
    course.zoom_error = (
        "Zoom is rate limiting; companion will try again automatically."
        if isinstance(exc, ZoomRateLimited)
        else "Zoom did not answer; companion will try again automatically."
    )
    if isinstance(exc, ZoomAuthError):
        course.zoom_error = "Zoom refused companion's credentials; an admin must check them."
    log.warning(
        "course %s: Zoom create postponed after %s (attempt %s)",
        course.id,
        type(exc).__name__,
        course.zoom_attempts,
    )
    msg = (
        "The course is saved but is still pending in Zoom: "
        + problem.message.split(", so ")[0]
        + ". companion will create it automatically."
    )
    return ZoomUnavailable(msg, retry_after=getattr(problem, "retry_after", 60))


def _find_existing(zoom: Any, course: Course) -> int | None:
    """The meeting an earlier attempt made for this course, found by the agenda reference."""
    marker = _marker(course.companion_ref)
    for meeting in zoom.iter_meetings(course.zoom_user_id, type="scheduled"):
        if marker in str(meeting.get("agenda") or "") and meeting.get("id") is not None:
            return int(meeting["id"])
    return None


def _try_create(
    session: Session,
    zoom: Any,
    course: Course,
    *,
    now: dt.datetime,
    actor: User | None,
    claimed: bool = False,
) -> CompanionError | None:
    """One attempt to get the course's meeting into Zoom; never makes a second meeting.

    ``claimed`` says the caller (the job) already holds the course's claim.
    """
    if not claimed and not claim_for_create(session, course.id, now):
        return Conflict("companion is putting this course into Zoom right now; reload shortly.")
    plan = _zoom_plan(course, now)
    if plan is None:
        course.zoom_state = "failed"
        course.zoom_next_attempt_at = None
        course.zoom_claimed_until = None
        course.zoom_error = "Every class had passed before Zoom could be reached."
        return ZoomRefused(course.zoom_error)
    expected = _expected(course, now)
    meeting_id: int | None = None
    created: dict[str, Any] = {}
    try:
        if course.zoom_attempts > 0:
            meeting_id = _find_existing(zoom, course)
        course.zoom_attempts += 1
        session.flush()
        body = _create_body(course, plan, expected)
        if meeting_id is None:
            created = zoom.create_meeting(course.zoom_user_id, body)
            meeting_id = int(created["id"])
        else:
            # The course may have changed since that attempt: make the meeting what it is now.
            log.info("course %s: adopting meeting found from an earlier attempt", course.id)
            del body["agenda"]
            zoom.update_meeting(meeting_id, body)
    except TRANSIENT as exc:
        return _postpone(course, exc, now)
    except ZoomError as exc:
        course.zoom_state = "failed"
        course.zoom_next_attempt_at = None
        course.zoom_claimed_until = None
        course.zoom_error = f"Zoom refused the meeting: {exc.message}"[:500]
        audit(
            session,
            "course.zoom_refused",
            actor=actor,
            organisation_id=course.organisation_id,
            subject=("course", course.id),
            course_id=course.id,
            zoom_code=exc.zoom_code,
            http_status=exc.http_status,
        )
        return ZoomRefused(course.zoom_error)

    try:
        course.zoom_meeting_id = meeting_id
        course.zoom_state = "created"
        course.zoom_error = ""
        course.zoom_next_attempt_at = None
        course.zoom_claimed_until = None
        _take_urls(course, created)
        # Classes that passed while Zoom was unreachable never took place.
        for cls in class_sessions(course):
            if cls.takes_place and cls.starts_at <= now + CREATE_MARGIN:
                cls.status = "cancelled"
                cls.cancelled_at = now
        _refresh_ends_at(course)
        audit(
            session,
            "course.zoom_created",
            actor=actor,
            organisation_id=course.organisation_id,
            subject=("course", course.id),
            course_id=course.id,
            meeting_id=meeting_id,
            attempts=course.zoom_attempts,
        )
        session.flush()
    except Exception:
        # Our side failed after Zoom made the meeting: take it back rather than leave an
        # orphan nobody watches.
        if created:
            try:
                zoom.delete_meeting(meeting_id)
            except ZoomError:
                log.warning("course %s: could not delete meeting after a local failure", course.id)
        raise
    _read_back(session, zoom, course, now=now, actor=actor, fallback=created)
    return None


def retry_create(
    session: Session, zoom: Any, *, actor: User, course_id: int, now: dt.datetime
) -> Outcome:
    """A person asks to try a pending or failed course again now."""
    course = _changeable(session, actor, course_id)
    if course.zoom_state not in ("pending", "failed"):
        raise Conflict("This course is already in Zoom.")
    return Outcome(course, (), _try_create(session, zoom, course, now=now, actor=actor))


def due_for_create(session: Session, now: dt.datetime, limit: int = 100) -> list[int]:
    """Pending courses whose next attempt is due and that nobody is working on."""
    return list(
        session.scalars(
            select(Course.id)
            .where(
                Course.zoom_state == "pending",
                or_(Course.zoom_next_attempt_at.is_(None), Course.zoom_next_attempt_at <= now),
                or_(Course.zoom_claimed_until.is_(None), Course.zoom_claimed_until < now),
            )
            .order_by(Course.zoom_next_attempt_at, Course.id)
            .limit(limit)
        )
    )


def claim_for_create(session: Session, course_id: int, now: dt.datetime) -> bool:
    """Take a pending (or refused) course for one attempt; False when someone else has it.

    The job commits its claim before calling Zoom. A request claims inside its own transaction:
    the row stays locked until it commits, so a job run at the same moment waits and then finds
    the claim. Either way two attempts never run at once, and a second one looks first.
    """
    result = session.execute(
        update(Course)
        .where(
            Course.id == course_id,
            Course.zoom_state.in_(("pending", "failed")),
            or_(Course.zoom_claimed_until.is_(None), Course.zoom_claimed_until < now),
        )
        .values(zoom_claimed_until=now + CLAIM_FOR)
        .execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount)


def push_pending(session: Session, zoom: Any, *, course_id: int, now: dt.datetime) -> str:
    """The job's attempt for one claimed course; returns the course's Zoom state afterwards."""
    course = session.get(Course, course_id)
    if course is None or course.zoom_state != "pending":
        return "gone"
    session.refresh(course)
    _try_create(session, zoom, course, now=now, actor=None, claimed=True)
    return course.zoom_state


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


def _read_back(
    session: Session,
    zoom: Any,
    course: Course,
    *,
    now: dt.datetime,
    actor: User | None,
    fallback: dict[str, Any] | None = None,
) -> list[SafetyProblem] | None:
    """GET the meeting and verify it. When Zoom does not answer the course stays unverified
    (the scheduled check verifies it later); None is returned."""
    try:
        meeting = zoom.get_meeting(course.zoom_meeting_id)
    except ZoomNotFound:
        return _meeting_gone(session, course, now=now, actor=actor)
    except ZoomError as exc:
        log.warning("course %s: read-back failed (%s)", course.id, type(exc).__name__)
        if fallback:
            _schedule_problems(course, fallback, now)
        if course.safety_state != "not_safe":
            course.safety_state = "unverified"
        session.flush()
        return None
    _take_urls(course, meeting)
    problems = _evaluate(course, meeting, _expected(course, now), now)
    return _record_safety(session, course, problems, now=now, actor=actor)


def _repair(
    zoom: Any,
    course: Course,
    meeting: dict[str, Any],
    expected: safety.Expected,
    problems: Sequence[SafetyProblem],
    now: dt.datetime,
) -> bool:
    """Put drifted settings back with one PATCH, and restore classes moved or revived in Zoom.

    Returns whether anything was sent. Zoom errors propagate to the caller.
    """
    sent = False
    meeting_id = course.zoom_meeting_id
    if any(p.setting not in ("schedule", "meeting") for p in problems):
        zoom.update_meeting(meeting_id, safety.repair_body(expected))
        sent = True
    if not any(p.setting == "schedule" for p in problems):
        return sent
    expected_classes, check = _schedule_problems(course, meeting, now)
    live = {
        o.occurrence_id: o
        for o in sched.occurrences(meeting)
        if not o.deleted and o.starts_at > now
    }
    for cls, occ in zip(expected_classes, check.matched, strict=True):
        if cls.starts_at <= now:
            continue
        if occ is None and cls.occurrence_id in live:
            # Someone moved this class in Zoom; families were told companion's time.
            zoom.update_meeting(
                meeting_id,
                {"start_time": _zoom_utc(cls.starts_at), "duration": cls.duration_minutes},
                occurrence_id=cls.occurrence_id,
            )
            sent = True
        elif occ is not None and occ.duration_minutes not in (None, cls.duration_minutes):
            zoom.update_meeting(
                meeting_id, {"duration": cls.duration_minutes}, occurrence_id=occ.occurrence_id
            )
            sent = True
    cancelled = {c.occurrence_id for c in course.classes if not c.takes_place and c.occurrence_id}
    for occ in check.extra:
        if occ.occurrence_id in cancelled:
            # A class companion cancelled is open in Zoom again.
            zoom.delete_meeting(meeting_id, occurrence_id=occ.occurrence_id)
            sent = True
    return sent


def check_course(
    session: Session,
    zoom: Any,
    course: Course,
    *,
    now: dt.datetime,
    actor: User | None = None,
    repair: bool = True,
) -> list[SafetyProblem]:
    """Re-read the course's meeting (one GET), put drifted settings back (one PATCH) and verify
    again; records the result and raises the alarm when the meeting stays unsafe.

    Zoom failing to answer the first read raises :class:`ZoomUnavailable`; nothing changes.
    """
    if course.zoom_state != "created" or course.zoom_meeting_id is None:
        raise Conflict("This course has no meeting in Zoom to check.")
    try:
        meeting = zoom.get_meeting(course.zoom_meeting_id)
    except ZoomNotFound:
        return _meeting_gone(session, course, now=now, actor=actor)
    except ZoomError as exc:
        raise _zoom_failure(exc, "the safety check") from None
    _take_urls(course, meeting)
    expected = _expected(course, now)
    problems = _evaluate(course, meeting, expected, now)
    if problems and repair:
        before = sorted({p.setting for p in problems})
        try:
            if _repair(zoom, course, meeting, expected, problems, now):
                meeting = zoom.get_meeting(course.zoom_meeting_id)
                problems = _evaluate(course, meeting, expected, now)
                if not problems:
                    audit(
                        session,
                        "course.drift_repaired",
                        actor=actor,
                        organisation_id=course.organisation_id,
                        subject=("course", course.id),
                        course_id=course.id,
                        settings=before,
                    )
        except ZoomError as exc:
            # What we read stands: the course is not safe until a repair gets through.
            log.warning("course %s: repair failed (%s)", course.id, type(exc).__name__)
    return _record_safety(session, course, problems, now=now, actor=actor)


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
    zoom: Any,
    *,
    actor: User,
    course_id: int,
    class_id: int,
    day: dt.date,
    at: dt.time,
    now: dt.datetime,
    duration_minutes: int | None = None,
) -> ClassSession:
    """Move one class to another local day and time (its Zoom occurrence moves with it)."""
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
    meeting_id = _require_in_zoom(course)
    if starts == cls.starts_at and duration == cls.duration_minutes:
        return cls
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now”, then move it.")
    try:
        zoom.update_meeting(
            meeting_id,
            {"start_time": _zoom_utc(starts), "duration": duration},
            occurrence_id=cls.occurrence_id,
        )
    except ZoomError as exc:
        raise _zoom_failure(exc, "moving the class") from None
    before = cls.starts_at
    cls.original_starts_at = cls.original_starts_at or before
    cls.starts_at = starts
    cls.duration_minutes = duration
    cls.status = "moved"
    _refresh_ends_at(course)
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
    _read_back(session, zoom, course, now=now, actor=actor)
    return cls


def cancel_class(
    session: Session, zoom: Any, *, actor: User, course_id: int, class_id: int, now: dt.datetime
) -> ClassSession:
    """Cancel one class: its Zoom occurrence is deleted so its link does not open."""
    course = _changeable(session, actor, course_id)
    cls = get_class(course, class_id)
    if not cls.takes_place:
        raise Conflict("This class is already cancelled.")
    if cls.starts_at <= now:
        raise Conflict("This class has already started; it can no longer be cancelled.")
    meeting_id = _require_in_zoom(course)
    if not cls.occurrence_id:
        raise Conflict("Zoom has not confirmed this class yet; press “Re-check now” first.")
    try:
        zoom.delete_meeting(meeting_id, occurrence_id=cls.occurrence_id)
    except ZoomNotFound:
        pass  # already gone; the read-back below confirms the meeting itself still exists
    except ZoomError as exc:
        raise _zoom_failure(exc, "cancelling the class") from None
    cls.status = "cancelled"
    cls.cancelled_at = now
    _refresh_ends_at(course)
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
    _read_back(session, zoom, course, now=now, actor=actor)
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
    zoom: Any,
    *,
    actor: User,
    course_id: int,
    now: dt.datetime,
    title: str | None = None,
    teacher_id: int | None = None,
    series: sched.Series | None = None,
) -> Outcome:
    """Change the title, the teacher or the whole series (from its new first date on).

    For a course in Zoom one PATCH carries the change, then the meeting is read back and
    verified. Zoom failing leaves everything as it was (the caller gets the error).
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
    if in_zoom:
        body: dict[str, Any] = {}
        if "title" in changed:
            body["topic"] = new_title
        if schedule is not None:
            body.update(sched.meeting_times(schedule))
        if body:
            try:
                zoom.update_meeting(course.zoom_meeting_id, body)
            except ZoomError as exc:
                raise _zoom_failure(exc, "changing the course") from None
    if new_title is not None:
        course.title = new_title
    if teacher is not None:
        course.teacher_id = teacher.id
        course.teacher = teacher
    if schedule is not None:
        _apply_series(course, schedule.series)
        _reconcile_classes(session, course, schedule, now, keep_history=in_zoom)
    course.updated_at = now
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
    warnings = schedule.warnings if schedule is not None else ()
    if in_zoom and ("title" in changed or schedule is not None):
        _read_back(session, zoom, course, now=now, actor=actor)
        return Outcome(course, warnings)
    if course.zoom_state in ("pending", "failed"):
        return Outcome(course, warnings, _try_create(session, zoom, course, now=now, actor=actor))
    return Outcome(course, warnings)


def _delete_in_zoom(zoom: Any, course: Course, doing: str) -> None:
    """Delete the course's meeting so none of its links works; already gone is fine."""
    try:
        if course.zoom_state == "created":
            zoom.delete_meeting(course.zoom_meeting_id)
        elif course.zoom_attempts > 0:
            # An attempt that seemed to fail may have made the meeting after all.
            found = _find_existing(zoom, course)
            if found is not None:
                zoom.delete_meeting(found)
    except ZoomNotFound:
        pass
    except ZoomError as exc:
        raise _zoom_failure(exc, doing) from None


def cancel_course(
    session: Session, zoom: Any, *, actor: User, course_id: int, now: dt.datetime
) -> Course:
    """Cancel the course: its meeting is deleted in Zoom, so no link of it works any more."""
    course = _changeable(session, actor, course_id)
    _delete_in_zoom(zoom, course, "cancelling the course")
    course.zoom_state = "cancelled"
    course.cancelled_at = now
    course.zoom_next_attempt_at = None
    course.zoom_claimed_until = None
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


def rotate_passcode(
    session: Session, zoom: Any, *, actor: User, course_id: int, now: dt.datetime
) -> Course:
    """Give the meeting a new passcode (the old one leaked, or someone left)."""
    course = get_course(session, actor, course_id)
    if not (may_change(actor, course) or actor.role == LEAD):
        raise Forbidden("Only the course's teacher, an admin or the safeguarding lead can do this.")
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; its meeting no longer exists.")
    passcode = safety.generate_passcode()
    if course.zoom_state == "created":
        try:
            zoom.update_meeting(course.zoom_meeting_id, {"password": passcode})
        except ZoomError as exc:
            raise _zoom_failure(exc, "changing the passcode") from None
    _set_passcode(course, passcode, now)
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
    if course.zoom_state == "created":
        _read_back(session, zoom, course, now=now, actor=actor)
    return course


def verify_now(
    session: Session, zoom: Any, *, actor: User, course_id: int, now: dt.datetime
) -> list[SafetyProblem]:
    """ "Re-check now": the scheduled check, for one course, on demand."""
    course = get_course(session, actor, course_id)
    return check_course(session, zoom, course, now=now, actor=actor)


def start_link(
    session: Session, zoom: Any, *, actor: User, course_id: int, now: dt.datetime
) -> str:
    """A fresh host start link for the course's teacher; never stored, never logged.

    The meeting read for the link is verified too; a meeting whose settings are off is put
    back first, and if that fails the class is not started from companion.
    """
    course = get_course(session, actor, course_id)
    if course.teacher_id != actor.id:
        raise Forbidden("Only the course's teacher can start its classes.")
    meeting_id = _require_in_zoom(course)
    if course.ends_at is not None and course.ends_at <= now:
        raise Conflict("The last class of this course is over.")
    try:
        meeting = zoom.get_meeting(meeting_id)
    except ZoomError as exc:
        raise _zoom_failure(exc, "fetching the start link") from None
    expected = _expected(course, now)
    settings_problems = safety.verify(meeting, expected)
    if settings_problems:
        try:
            zoom.update_meeting(meeting_id, safety.repair_body(expected))
            meeting = zoom.get_meeting(meeting_id)
        except ZoomError as exc:
            log.warning("course %s: repair before start failed (%s)", course.id, type(exc).__name__)
    _take_urls(course, meeting)
    problems = _evaluate(course, meeting, expected, now)
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
    audit(
        session,
        "course.start_link_issued",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
    )
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


def close_course(session: Session, zoom: Any, *, course_id: int, now: dt.datetime) -> str:
    """Delete a finished course's meeting in Zoom so its links die; returns the new state."""
    course = session.get(Course, course_id)
    if course is None or not course.is_open:
        return "gone"
    if course.ends_at is None or course.ends_at > now - CLOSE_GRACE:
        return course.zoom_state
    _delete_in_zoom(zoom, course, "closing the course")
    course.zoom_state = "closed"
    course.closed_at = now
    course.zoom_next_attempt_at = None
    course.zoom_claimed_until = None
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
    except crypto.PasscodeUnreadable:
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
