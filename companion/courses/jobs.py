"""Scheduled work on courses. Each job is safe to run twice, late, or with a list of ids.

* :func:`retry_pending` creates courses left "pending in Zoom" (Zoom was down, slow or rate
  limiting). Each course is claimed (committed) before Zoom is called, and an attempt after a
  first one looks for the meeting it may already have made, so no course is created twice.
* :func:`drift_check` re-reads every upcoming course meeting with one GET, puts drifted settings
  back with one PATCH, verifies again and raises the alarm when it cannot.
* :func:`close_finished` deletes the meeting of a course whose last class is over, so its old
  links die.

Every course is handled in its own transaction: one course failing never holds up the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from flask import Flask
from sqlalchemy.orm import Session

from ..work import Outcome, run_each
from . import services
from .models import Course
from .zoomclient import zoom_for


def retry_pending(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Try Zoom again for pending courses that are due (or exactly ``course_ids``)."""
    zoom = zoom_for(app)
    return run_each(
        app,
        course_ids,
        what="course (retrying the Zoom create)",
        due=services.due_for_create,
        claim=services.claim_for_create,
        # The claim runs out by itself if this fails; the next run tries again.
        work=lambda session, course_id, now: services.push_pending(
            session, zoom, course_id=course_id, now=now
        ),
        now=now,
        domain_errors="errors",
    )


def drift_check(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Verify (and repair) every upcoming course meeting, or exactly ``course_ids``."""
    zoom = zoom_for(app)

    def check(session: Session, course_id: int, now: dt.datetime) -> Outcome:
        course = session.get(Course, course_id)
        if course is None or course.zoom_state != "created":
            return "skipped"
        problems = services.check_course(session, zoom, course, now=now)
        return "not_safe" if problems else "safe"

    return run_each(
        app,
        course_ids,
        what="course (drift check)",
        due=services.upcoming_in_zoom,
        work=check,
        now=now,
    )


def close_finished(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete the Zoom meeting of every course whose last class ended (plus a grace period)."""
    zoom = zoom_for(app)
    return run_each(
        app,
        course_ids,
        what="course (closing)",
        due=services.finished,
        work=lambda session, course_id, now: services.close_course(
            session, zoom, course_id=course_id, now=now
        ),
        now=now,
    )
