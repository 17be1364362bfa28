"""Scheduled work on courses. Each job is safe to run twice, late, or with a list of ids.

* :func:`retry_pending` does every course's Zoom work that is due (:mod:`.zoomwork`): creates
  Zoom could not take yet (a retry looks for the meeting an earlier attempt may have made, so no
  course is created twice), changes and deletions that were postponed, and whatever a request's
  inline run did not finish.
* :func:`drift_check` asks for the check of every upcoming course meeting and runs it: one GET,
  drifted settings put back with one PATCH, verified again, the alarm raised when it cannot.
* :func:`close_finished` closes courses whose last class is over and deletes their meetings, so
  their old links die.

Zoom is only ever called with no transaction open, and every course is handled in its own
transactions: one course failing never holds up the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from flask import Flask

from ..db import job_session, utcnow
from ..work import run_each
from . import lifecycle, verification, zoomwork

# What the Zoom half of closing reports, when it did not simply work.
_TROUBLE = ("pending", "unreachable", "failed", "errors")


def retry_pending(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Do the Zoom work that is due (or that of exactly ``course_ids``)."""
    return zoomwork.run(app, course_ids, now=now)


def drift_check(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Verify (and repair) every upcoming course meeting, or exactly ``course_ids``."""
    at = now or utcnow()
    with app.app_context(), job_session(app) as session:
        ids = verification.want_check(
            session,
            lifecycle.upcoming_in_zoom(session, at) if course_ids is None else course_ids,
        )
    if not ids:
        return {}
    return zoomwork.run(app, ids, now=now)


def close_finished(
    app: Flask, course_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Close every course whose last class ended (plus a grace period); delete its meeting."""
    at = now or utcnow()
    if course_ids is None:
        with app.app_context(), job_session(app) as session:
            course_ids = lifecycle.finished(session, at)
    ids = list(course_ids)
    result = run_each(
        app,
        ids,
        what="course (closing)",
        due=lifecycle.finished,
        work=lambda session, course_id, now: lifecycle.close_course(
            session, course_id=course_id, now=now
        ),
        now=at,
    )
    if ids:
        for key, count in zoomwork.run(app, ids, now=now).items():
            if key in _TROUBLE:
                result[key] = result.get(key, 0) + count
    return result
