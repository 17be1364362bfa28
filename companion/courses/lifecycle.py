"""Starting a class, the jobs' queries, and closing a finished course.

The host's start link is fetched when the teacher presses "Start class" (:func:`start_plan`, then
:func:`.zoomwork.start_class` with no transaction open, then :func:`record_start`) and is never
stored or logged. A course is closed a grace period after its last class; its meeting is then
deleted by the Zoom work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..accounts.models import User
from ..audit.services import record as audit
from ..errors import CompanionError, Conflict, Forbidden, NotFound
from ..zoom import TRANSIENT, ZoomError, ZoomNotFound, ZoomRateLimited, ZoomRefused, ZoomUnavailable
from ..zoom.api import Meeting
from . import safety
from .access import get_course, require_in_zoom
from .events import emit
from .models import Course, ZoomState
from .verification import evaluate, expected_of, meeting_gone, record_safety, take_urls
from .wanted import want_deleted

# A meeting is closed this long after its last class, so a class that overran is not cut off
# and Zoom has time to hand over the recording.
CLOSE_GRACE = dt.timedelta(hours=2)


class NotSafeToStart(Conflict):
    code = "not_safe"


def zoom_failure(exc: ZoomError, doing: str) -> CompanionError:
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


@dataclass(frozen=True)
class StartPlan:
    """What "Start class" needs from the database, as plain values (read before Zoom is asked)."""

    course_id: int
    meeting_id: int
    expected: safety.Expected
    actor_id: int


def start_plan(session: Session, *, actor: User, course_id: int, now: dt.datetime) -> StartPlan:
    """Check that the actor may start the course now and put it on the audit trail; the start
    link is then fetched from Zoom with no transaction open (:func:`.zoomwork.start_class`)."""
    course = get_course(session, actor, course_id)
    if course.teacher_id != actor.id:
        raise Forbidden("Only the course's teacher can start its classes.")
    meeting_id = require_in_zoom(course)
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
    return StartPlan(course.id, meeting_id, expected_of(course, now), actor.id)


def record_start(
    session: Session,
    plan: StartPlan,
    meeting: Meeting | None,
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
        meeting_gone(session, course, now=now, actor=actor)
        raise NotSafeToStart(
            "Zoom no longer has this course's meeting. The safeguarding lead has been told."
        )
    take_urls(course, meeting)
    problems = evaluate(course, meeting, plan.expected, now)
    record_safety(session, course, problems, now=now, actor=actor)
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


def upcoming_in_zoom(session: Session, now: dt.datetime) -> list[int]:
    """Courses in Zoom with a class still to come or under way: what the drift check reads."""
    return list(
        session.scalars(
            select(Course.id)
            .where(
                Course.zoom_state == ZoomState.CREATED,
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
                Course.zoom_state.in_((ZoomState.PENDING, ZoomState.CREATED, ZoomState.FAILED)),
                Course.ends_at.is_not(None),
                Course.ends_at <= now - CLOSE_GRACE,
            )
            .order_by(Course.id)
        )
    )


def close_course(session: Session, *, course_id: int, now: dt.datetime) -> str:
    """Close a finished course; its meeting is deleted in Zoom by the work that follows the
    commit, so its links die. Returns the course's state."""
    course = session.get(Course, course_id)
    if course is None or not course.is_open:
        return "gone"
    if course.ends_at is None or course.ends_at > now - CLOSE_GRACE:
        return course.zoom_state
    course.zoom_state = ZoomState.CLOSED
    course.closed_at = now
    course.zoom_error = ""
    want_deleted(course)
    audit(
        session,
        "course.closed",
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        meeting_id=course.zoom_meeting_id,
    )
    emit("course_closed", session, course)
    session.flush()
    return course.zoom_state
