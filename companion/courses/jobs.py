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
import logging
from collections import Counter
from collections.abc import Iterable

from flask import Flask

from ..db import job_session, utcnow
from ..errors import CompanionError
from . import services
from .models import Course
from .zoomclient import zoom_for

log = logging.getLogger(__name__)


def retry_pending(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Try Zoom again for pending courses that are due (or exactly ``course_ids``)."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        zoom = zoom_for(app)
        if course_ids is None:
            with job_session(app) as session:
                course_ids = services.due_for_create(session, now)
        for course_id in course_ids:
            with job_session(app) as session:
                claimed = services.claim_for_create(session, course_id, now)
            if not claimed:
                result["skipped"] += 1
                continue
            try:
                with job_session(app) as session:
                    state = services.push_pending(session, zoom, course_id=course_id, now=now)
            except Exception:
                # The claim runs out by itself; the next run tries again.
                log.exception("course %s: retrying the Zoom create failed", course_id)
                result["errors"] += 1
                continue
            result[state] += 1
    return dict(result)


def drift_check(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Verify (and repair) every upcoming course meeting, or exactly ``course_ids``."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        zoom = zoom_for(app)
        if course_ids is None:
            with job_session(app) as session:
                course_ids = services.upcoming_in_zoom(session, now)
        for course_id in course_ids:
            try:
                with job_session(app) as session:
                    course = session.get(Course, course_id)
                    if course is None or course.zoom_state != "created":
                        result["skipped"] += 1
                        continue
                    problems = services.check_course(session, zoom, course, now=now)
                    result["not_safe" if problems else "safe"] += 1
            except CompanionError as exc:
                log.warning("course %s: drift check could not run (%s)", course_id, exc.code)
                result["unreachable"] += 1
            except Exception:
                log.exception("course %s: drift check failed", course_id)
                result["errors"] += 1
    return dict(result)


def close_finished(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete the Zoom meeting of every course whose last class ended (plus a grace period)."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        zoom = zoom_for(app)
        if course_ids is None:
            with job_session(app) as session:
                course_ids = services.finished(session, now)
        for course_id in course_ids:
            try:
                with job_session(app) as session:
                    result[services.close_course(session, zoom, course_id=course_id, now=now)] += 1
            except CompanionError as exc:
                log.warning("course %s: closing could not run (%s)", course_id, exc.code)
                result["unreachable"] += 1
            except Exception:
                log.exception("course %s: closing failed", course_id)
                result["errors"] += 1
    return dict(result)
