"""What companion tells Zoom about courses, on the work engine (:mod:`companion.work`).

A request (or a job) only records what Zoom must be told, in ``Course.zoom_work``, and commits;
then the work runs with no transaction open, inline right after the commit (:func:`soon`) or in
the worker (:mod:`.jobs`), under one claim, so a manual retry while an attempt is in flight does
nothing twice. The queue is the courses table itself: ``zoom_attempts``, ``zoom_next_attempt_at``
and ``zoom_claimed_until`` are its scheduling columns, and a course is ready while it has work.

What to send is never stored: ``prepare`` derives it from the course as it is in the database,
and ``call`` reads the meeting first and sends only what differs, so a step re-run after a crash
sends the same thing again, or nothing when Zoom already has it:

* ``create``: look for a meeting an earlier attempt made (by the ``[companion:ref]`` marker in
  its agenda; from the second attempt on), adopt it or create one; read it back.
* ``sync``: read the meeting; send the title and series again when they changed, put back any
  setting, class time or cancelled class that differs (moves, cancellations, a new passcode and
  the drift check are all this one step); read it back and verify.
* ``delete``: delete the meeting of a cancelled or closed course (already gone is fine).

Each change a person makes bumps ``zoom_work_seq``; a step that prepared an older version
records what it did and leaves the work for another run.

The module is about 600 lines and kept whole: prepare, call and record of the three kinds of work
share the Plan and Result shapes and are read together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from .. import work
from ..audit.services import record as audit
from ..db import job_session, utcnow
from ..errors import CompanionError
from ..zoom import TRANSIENT, ZoomAuthError, ZoomError, ZoomNotFound, ZoomRateLimited, zoom_for
from ..zoom.api import Meeting, ZoomApi
from . import lifecycle, provisioning, safety, timetable, verification
from . import schedule as sched
from .models import ClassStatus, Course, SafetyState, ZoomState, ZoomWork
from .safety import SafetyProblem

log = logging.getLogger(__name__)

QUEUE = work.Queue(
    name="courses.zoom",
    model=Course,
    id=Course.id,
    attempts=Course.zoom_attempts,
    due=Course.zoom_next_attempt_at,
    claimed_until=Course.zoom_claimed_until,
    ready=lambda: Course.zoom_work != ZoomWork.NONE,
)

# How many times one request's inline run goes on when the course has more work right after
# (a cancel that arrived while the create was in flight); the worker does the rest.
INLINE_RUNS = 3


@dataclass(frozen=True)
class ClassPlan:
    starts_at: dt.datetime
    duration_minutes: int
    takes_place: bool
    occurrence_id: str | None


@dataclass(frozen=True)
class Plan:
    """One attempt's view of the course: plain values only (``call`` has no session)."""

    course_id: int
    work: ZoomWork
    seq: int
    now: dt.datetime
    user_id: str
    marker: str
    meeting_id: int | None = None
    # create: look for a meeting an earlier attempt made before making one.
    search: bool = False
    # create: the whole meeting; sync: the title and series to send again (None: unchanged).
    body: dict[str, Any] | None = None
    topic: str = ""
    timezone: str = "UTC"
    expected: safety.Expected | None = None
    classes: tuple[ClassPlan, ...] = ()
    # sync: a person changed the course (else it is a check, and what it puts back is drift).
    changed: bool = False


@dataclass
class Result:
    meeting_id: int | None = None
    # The meeting as last read (None: Zoom did not answer the read-back).
    meeting: Meeting | None = None
    # create: Zoom's answer to the create (empty when a meeting was adopted).
    created: Meeting = field(default_factory=Meeting)
    adopted: bool = False
    gone: bool = False
    # sync: settings put back (their names), and whether anything at all was sent.
    repaired: tuple[str, ...] = ()
    sent: bool = False
    # sync: Zoom refused a change (its message), or stopped answering midway (try again).
    refused: str = ""
    interrupted: ZoomError | None = None


class ZoomStep:
    """The courses queue's step: prepare (claim's transaction) -> call (Zoom) -> record."""

    def __init__(self, zoom: ZoomApi):
        self.zoom = zoom

    # --- prepare: in the claim's transaction --------------------------------------------------

    def prepare(self, session: Session, course_id: int, now: dt.datetime) -> Plan | None:
        course = session.get(Course, course_id)
        if course is None:
            return None
        base: dict[str, Any] = {
            "course_id": course.id,
            "seq": course.zoom_work_seq,
            "now": now,
            "user_id": course.zoom_user_id,
            "marker": provisioning.marker(course.companion_ref),
            "meeting_id": course.zoom_meeting_id,
            "topic": course.title,
            "timezone": course.timezone,
        }
        if course.zoom_work == ZoomWork.DELETE:
            return Plan(work=ZoomWork.DELETE, search=course.zoom_meeting_id is None, **base)
        if course.zoom_work == ZoomWork.CREATE:
            if course.zoom_state != ZoomState.PENDING or course.zoom_meeting_id is not None:
                course.zoom_work = (
                    ZoomWork.SYNC if course.zoom_meeting_id is not None else ZoomWork.NONE
                )
                return None
            remaining = provisioning.zoom_plan(course, now)
            if remaining is None:
                course.zoom_state = ZoomState.FAILED
                course.zoom_work = ZoomWork.NONE
                course.zoom_next_attempt_at = None
                course.zoom_error = "Every class had passed before Zoom could be reached."
                return None
            expected = verification.expected_of(course, now)
            return Plan(
                work=ZoomWork.CREATE,
                # This claim is counted: a second attempt looks for what the first one made.
                search=course.zoom_attempts > 1,
                body=provisioning.create_body(course, remaining, expected),
                expected=expected,
                classes=_classes(course),
                **base,
            )
        if course.zoom_work == ZoomWork.SYNC:
            if course.zoom_state != ZoomState.CREATED or course.zoom_meeting_id is None:
                course.zoom_work = ZoomWork.NONE
                return None
            body = None
            if course.zoom_resend_series:
                remaining = provisioning.zoom_plan(course, now)
                if remaining is not None:
                    body = {"topic": course.title, **sched.meeting_times(remaining)}
            return Plan(
                work=ZoomWork.SYNC,
                body=body,
                expected=verification.expected_of(course, now),
                classes=_classes(course),
                changed=course.zoom_work_seq != course.zoom_synced_seq,
                **base,
            )
        return None

    # --- call: Zoom, with no transaction open ---------------------------------------------------

    def call(self, plan: Plan) -> Result:
        if plan.work == ZoomWork.CREATE:
            return self._create(plan)
        if plan.work == ZoomWork.DELETE:
            return self._delete(plan)
        return self._sync(plan)

    def _create(self, plan: Plan) -> Result:
        zoom = self.zoom
        assert plan.body is not None
        found = _find_existing(zoom, plan.user_id, plan.marker) if plan.search else None
        if found is None:
            created = zoom.create_meeting(plan.user_id, plan.body)
            meeting_id = int(created["id"])
            result = Result(meeting_id=meeting_id, created=created)
        else:
            # The course may have changed since that attempt: make the meeting what it is now.
            log.info("course %s: adopting meeting found from an earlier attempt", plan.course_id)
            body = {k: v for k, v in plan.body.items() if k != "agenda"}
            zoom.update_meeting(found, body)
            meeting_id = found
            result = Result(meeting_id=meeting_id, adopted=True)
        try:
            result.meeting = zoom.get_meeting(meeting_id)
        except ZoomError as exc:
            # The meeting exists; it stays unverified until the next check reads it.
            log.warning("course %s: read-back failed (%s)", plan.course_id, type(exc).__name__)
        return result

    def _delete(self, plan: Plan) -> Result:
        zoom = self.zoom
        meeting_id = plan.meeting_id
        if meeting_id is None and plan.search:
            meeting_id = _find_existing(zoom, plan.user_id, plan.marker)
        if meeting_id is not None:
            with contextlib.suppress(ZoomNotFound):
                zoom.delete_meeting(meeting_id)
        return Result(meeting_id=meeting_id)

    def _sync(self, plan: Plan) -> Result:
        zoom = self.zoom
        meeting_id = plan.meeting_id
        assert meeting_id is not None
        try:
            meeting = zoom.get_meeting(meeting_id)
        except ZoomNotFound:
            return Result(meeting_id=meeting_id, gone=True)
        result = Result(meeting_id=meeting_id, meeting=meeting)
        try:
            body = {}
            if plan.body is not None and (
                meeting.get("topic") != plan.topic or _schedule_check(plan, meeting).problems
            ):
                body = dict(plan.body)
            elif plan.topic and meeting.get("topic") != plan.topic:
                body = {"topic": plan.topic}
            if body:
                zoom.update_meeting(meeting_id, body)
                result.sent = True
                meeting = result.meeting = zoom.get_meeting(meeting_id)
            problems = _problems(plan, meeting)
            if problems:
                repaired = _repair(zoom, plan, meeting, problems)
                if repaired:
                    result.sent = True
                    result.repaired = tuple(sorted({p.setting for p in problems}))
                    meeting = result.meeting = zoom.get_meeting(meeting_id)
        except ZoomNotFound:
            result.gone = True
        except TRANSIENT as exc:
            # What was read stands; the work stays and is tried again.
            log.warning("course %s: sync interrupted (%s)", plan.course_id, type(exc).__name__)
            result.interrupted = exc
        except ZoomError as exc:
            log.warning("course %s: Zoom refused a change (%s)", plan.course_id, exc.message)
            result.refused = exc.message
            with contextlib.suppress(ZoomError):
                result.meeting = zoom.get_meeting(meeting_id)
        return result

    # --- record: a new short transaction ------------------------------------------------------

    def record(
        self, session: Session, course_id: int, plan: Plan, result: Result, now: dt.datetime
    ) -> work.Outcome:
        course = session.get(Course, course_id)
        if course is None:
            return "gone"
        # The attempt's own time: what passed, and when it was verified, is as of the call.
        now = plan.now
        if plan.work == ZoomWork.CREATE:
            outcome = _record_create(session, course, plan, result, now)
        elif plan.work == ZoomWork.DELETE:
            outcome = _record_delete(session, course, plan, result)
        else:
            outcome = _record_sync(session, course, plan, result, now)
        if result.interrupted is not None:
            _postpone(course, plan, result.interrupted)
            return "unreachable"
        _done(course, plan)
        session.flush()
        return outcome

    def failed(
        self, session: Session, course_id: int, plan: Plan, exc: Exception, now: dt.datetime
    ) -> work.Outcome:
        if not isinstance(exc, ZoomError):
            raise exc  # a bug, not Zoom: logged by the runner; the claim expires and it is retried
        course = session.get(Course, course_id)
        if course is None:
            return "gone"
        if isinstance(exc, TRANSIENT):
            _postpone(course, plan, exc)
            return "pending" if plan.work == ZoomWork.CREATE else "unreachable"
        # Zoom answered and refused: trying the same again will not help; a person must act.
        what = {ZoomWork.CREATE: "the meeting", ZoomWork.DELETE: "deleting the meeting"}.get(
            plan.work, "the change"
        )
        course.zoom_error = f"Zoom refused {what}: {exc.message}"[:500]
        if plan.work == ZoomWork.CREATE:
            course.zoom_state = ZoomState.FAILED
        _audit(
            session,
            course,
            "course.zoom_refused",
            work=plan.work,
            zoom_code=exc.zoom_code,
            http_status=exc.http_status,
        )
        course.zoom_work = ZoomWork.NONE
        course.zoom_resend_series = False
        work.release(course, QUEUE)
        return "failed"


def _audit(session: Session, course: Course, kind: str, **details: Any) -> None:
    """An audit entry about the course, written by the worker (no acting person)."""
    audit(
        session,
        kind,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        **details,
    )


def _classes(course: Course) -> tuple[ClassPlan, ...]:
    return tuple(
        ClassPlan(c.starts_at, c.duration_minutes, c.takes_place, c.occurrence_id)
        for c in timetable.class_sessions(course)
    )


def _find_existing(zoom: ZoomApi, user_id: str, marker: str) -> int | None:
    """The meeting an earlier attempt made for this course, found by the agenda reference."""
    for meeting in zoom.iter_meetings(user_id, type="scheduled"):
        if marker in str(meeting.get("agenda") or "") and meeting.get("id") is not None:
            return int(meeting["id"])
    return None


def _schedule_check(plan: Plan, meeting: Meeting) -> sched.ScheduleCheck:
    tz = sched.zone(plan.timezone)
    planned = [
        sched.PlannedClass(c.starts_at, c.starts_at.astimezone(tz), c.duration_minutes)
        for c in plan.classes
        if c.takes_place
    ]
    return sched.match_occurrences(planned, meeting, since=plan.now)


def _problems(plan: Plan, meeting: Meeting) -> list[SafetyProblem]:
    assert plan.expected is not None
    problems = safety.verify(meeting, plan.expected)
    check = _schedule_check(plan, meeting)
    problems += [SafetyProblem("schedule", "as companion planned", text) for text in check.problems]
    return problems


def _zoom_utc(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repair(zoom: ZoomApi, plan: Plan, meeting: Meeting, problems: list[SafetyProblem]) -> bool:
    """Put drifted settings back with one PATCH, and make each class what companion says: moved
    (or moved back), its length, or deleted when it is cancelled. Returns whether anything was
    sent; Zoom errors propagate."""
    assert plan.expected is not None and plan.meeting_id is not None
    sent = False
    meeting_id = plan.meeting_id
    now = plan.now
    if any(p.setting not in ("schedule", "meeting") for p in problems):
        zoom.update_meeting(meeting_id, safety.repair_body(plan.expected))
        sent = True
    if not any(p.setting == "schedule" for p in problems):
        return sent
    check = _schedule_check(plan, meeting)
    expected = [c for c in plan.classes if c.takes_place]
    live = {
        o.occurrence_id: o
        for o in sched.occurrences(meeting)
        if not o.deleted and o.starts_at > now
    }
    for cls, occ in zip(expected, check.matched, strict=True):
        if cls.starts_at <= now:
            continue
        if occ is None and cls.occurrence_id in live:
            # Moved in companion (or by someone in Zoom): families were told companion's time.
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
    cancelled = {c.occurrence_id for c in plan.classes if not c.takes_place and c.occurrence_id}
    for occ in check.extra:
        if occ.occurrence_id in cancelled:
            # A class companion cancelled is (still, or again) open in Zoom.
            zoom.delete_meeting(meeting_id, occurrence_id=occ.occurrence_id)
            sent = True
    return sent


def _record_create(
    session: Session, course: Course, plan: Plan, result: Result, now: dt.datetime
) -> str:
    course.zoom_meeting_id = result.meeting_id
    if course.zoom_state != ZoomState.PENDING:
        # Cancelled while the create was in flight: the meeting is known now, and deleted next.
        return course.zoom_state
    course.zoom_state = ZoomState.CREATED
    course.zoom_error = ""
    verification.take_urls(course, result.created)
    # Classes that passed while Zoom was unreachable never took place.
    for cls in timetable.class_sessions(course):
        if cls.takes_place and cls.starts_at <= now + provisioning.CREATE_MARGIN:
            cls.status = ClassStatus.CANCELLED
            cls.cancelled_at = now
    timetable.refresh_ends_at(course)
    _audit(
        session,
        course,
        "course.zoom_created",
        meeting_id=result.meeting_id,
        attempts=course.zoom_attempts,
        adopted=result.adopted,
    )
    session.flush()
    if result.meeting is None:
        if result.created:
            verification.schedule_problems(course, result.created, now)
        if course.safety_state != SafetyState.NOT_SAFE:
            course.safety_state = SafetyState.UNVERIFIED
        return "created"
    assert plan.expected is not None
    verification.take_urls(course, result.meeting)
    problems = verification.evaluate(course, result.meeting, plan.expected, now)
    verification.record_safety(session, course, problems, now=now, actor=None)
    return "created"


def _record_sync(
    session: Session, course: Course, plan: Plan, result: Result, now: dt.datetime
) -> str:
    if result.gone:
        verification.meeting_gone(session, course, now=now, actor=None)
        return "not_safe"
    assert result.meeting is not None and plan.expected is not None
    verification.take_urls(course, result.meeting)
    problems = verification.evaluate(course, result.meeting, plan.expected, now)
    if result.repaired and not problems and not plan.changed:
        _audit(session, course, "course.drift_repaired", settings=list(result.repaired))
    if result.refused:
        course.zoom_error = f"Zoom refused the change: {result.refused}"[:500]
        _audit(session, course, "course.zoom_refused", work=plan.work)
    elif result.interrupted is None:
        course.zoom_error = ""
    verification.record_safety(session, course, problems, now=now, actor=None)
    return "not_safe" if problems else "safe"


def _record_delete(session: Session, course: Course, plan: Plan, result: Result) -> str:
    course.zoom_error = ""
    if result.meeting_id is not None:
        _audit(session, course, "course.zoom_deleted", meeting_id=result.meeting_id)
    return course.zoom_state


def _done(course: Course, plan: Plan) -> None:
    """The attempt is recorded: let go of the course, and say what (if anything) is left."""
    work.release(course, QUEUE)
    course.zoom_attempts = 0
    if course.zoom_work == ZoomWork.DELETE and plan.work != ZoomWork.DELETE:
        return  # cancelled meanwhile: the deletion is next, due now
    if course.zoom_work_seq != plan.seq:
        # Someone changed the course while this attempt was in flight: send that too.
        if course.zoom_meeting_id is not None and course.zoom_work != ZoomWork.DELETE:
            course.zoom_work = ZoomWork.SYNC
            course.zoom_resend_series = True
        return
    course.zoom_work = ZoomWork.NONE
    course.zoom_resend_series = False
    course.zoom_synced_seq = plan.seq


def _postpone(course: Course, plan: Plan, exc: ZoomError) -> None:
    retry_after = exc.retry_after if isinstance(exc, ZoomRateLimited) else None
    when = work.postpone(course, QUEUE, plan.now, retry_after=retry_after)
    if isinstance(exc, ZoomAuthError):
        course.zoom_error = "Zoom refused companion's credentials; an admin must check them."
    elif isinstance(exc, ZoomRateLimited):
        course.zoom_error = "Zoom is rate limiting; companion will try again automatically."
    else:
        course.zoom_error = "Zoom did not answer; companion will try again automatically."
    log.warning(
        "course %s: Zoom %s postponed to %s after %s (attempt %s)",
        course.id,
        plan.work,
        when.isoformat(),
        type(exc).__name__,
        course.zoom_attempts,
    )


# --- running it --------------------------------------------------------------------------------


def step_for(app: Flask) -> ZoomStep:
    return ZoomStep(zoom_for(app))


def run(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Work every course with Zoom work due (or exactly ``course_ids``), each on its own."""
    return work.run(app, QUEUE, step_for(app), course_ids, now=now)


def run_now(app: Flask, course_id: int, *, now: dt.datetime | None = None) -> work.Outcome:
    """Do the course's Zoom work now, with no transaction open: the caller has committed.

    Goes on while the course has more work due at once (a change made while an attempt was in
    flight), a few times at most; ``"skipped"`` when someone else holds the course.
    """
    outcome: work.Outcome = None
    with app.app_context():
        step = step_for(app)
        for _ in range(INLINE_RUNS):
            try:
                outcome = work.run_one(app, QUEUE, step, course_id, now=now)
            except CompanionError as exc:
                log.warning("course %s: Zoom work did not run (%s)", course_id, exc.code)
                return "unreachable"
            if outcome in ("skipped", "idle") or not _more_due(app, course_id, now):
                break
    return outcome


def _more_due(app: Flask, course_id: int, now: dt.datetime | None) -> bool:
    at = now or utcnow()
    with job_session(app) as session:
        course = session.get(Course, course_id)
        return bool(
            course is not None
            and course.zoom_work
            and (course.zoom_next_attempt_at is None or course.zoom_next_attempt_at <= at)
            and (course.zoom_claimed_until is None or course.zoom_claimed_until < at)
        )


_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()
# At most this many threads per process wait on Zoom for work handed over by requests; the rest
# queue behind them (and the worker picks up whatever a restart drops: the work is in the row).
BACKGROUND_THREADS = 2


def soon(app: Flask, course_id: int) -> None:
    """Do the course's Zoom work right after the request that recorded it (which has committed).

    The answer does not wait: the work runs on a small pool of threads of its own, and the page
    shows its state until it is done. Under TESTING it runs before the answer, so a test sees
    what it did without waiting.
    """
    if app.config.get("TESTING"):
        run_now(app, course_id)
        return
    with _executors_lock:
        executor = _executors.get(id(app))
        if executor is None:
            executor = ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="courses-zoom")
            _executors[id(app)] = executor
    executor.submit(_background, app, course_id)


def _background(app: Flask, course_id: int) -> None:
    try:
        run_now(app, course_id)
    except Exception:
        # The claim expires and the worker tries again; nothing is lost.
        log.exception("course %s: Zoom work failed", course_id)


# --- "Start class" -------------------------------------------------------------------------------


def start_class(app: Flask, zoom: ZoomApi, plan: lifecycle.StartPlan, *, now: dt.datetime) -> str:
    """Fetch the host's start link with no transaction open, then record what Zoom said.

    The meeting read for the link is verified too; a meeting whose settings are off is put
    back first, and if that fails the class is not started from companion (the course is
    marked not safe and people are told, committed before :class:`NotSafeToStart` is raised).
    """
    meeting: Meeting | None
    try:
        meeting = zoom.get_meeting(plan.meeting_id)
    except ZoomNotFound:
        meeting = None
    except ZoomError as exc:
        raise lifecycle.zoom_failure(exc, "fetching the start link") from None
    if meeting is not None and safety.verify(meeting, plan.expected):
        try:
            zoom.update_meeting(plan.meeting_id, safety.repair_body(plan.expected))
            meeting = zoom.get_meeting(plan.meeting_id)
        except ZoomError as exc:
            log.warning(
                "course %s: repair before start failed (%s)", plan.course_id, type(exc).__name__
            )
    refusal: lifecycle.NotSafeToStart | None = None
    with job_session(app) as session:
        try:
            return lifecycle.record_start(session, plan, meeting, now=now)
        except lifecycle.NotSafeToStart as exc:
            refusal = exc  # keep what was recorded (not safe, people told), then refuse
    raise refusal
