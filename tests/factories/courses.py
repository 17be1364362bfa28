"""Courses: a series, a course as the page makes it (saved, committed, then put into Zoom by its
work), and the course's Zoom work run as a request or a job runs it."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session, object_session

from companion import work
from companion.courses import lifecycle, presentation, provisioning, verification, zoomwork
from companion.courses import schedule as sched
from companion.zoom import ZoomClient

from ..zoom_sandbox import SandboxZoom

# A Monday morning in London, before the spring clock change.
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def series(**overrides: Any) -> sched.Series:
    values: dict[str, Any] = {
        "first_date": dt.date(2026, 3, 9),  # a Monday
        "weekdays": ("mon",),
        "start_time": dt.time(17, 0),
        "duration_minutes": 45,
        "timezone": "Europe/London",
        "class_count": 10,
        "end_date": None,
    }
    values.update(overrides)
    return sched.Series(**values)


def make_course(
    session: Session,
    zoom: ZoomClient,
    actor: Any,
    *,
    now: dt.datetime = NOW,
    title: str = "Art club",
    **overrides: Any,
) -> Any:
    """A course as the page makes it: saved, committed, then put into Zoom by its work."""
    outcome = provisioning.create_course(
        session, actor=actor, title=title, series=series(**overrides), now=now
    )
    # As a request does: commit, then the Zoom work with no transaction open.
    session.commit()
    settle(zoom, outcome.course, now=now)
    return outcome.course


def settle(zoom: Any, course: Any, *, now: dt.datetime = NOW) -> Any:
    """Run the course's Zoom work as a request does right after its commit (work.run_one)."""
    app = current_app._get_current_object()
    return work.run_one(app, zoomwork.QUEUE, zoomwork.ZoomStep(zoom), course.id, now=now)


def check(zoom: Any, course: Any, *, now: dt.datetime = NOW) -> list[Any]:
    """The drift check of one course (what "Re-check now" and the hourly job run)."""
    verification.want_check(object_session(course), [course.id])
    settle(zoom, course, now=now)
    return presentation.problem_list(course)


def start(zoom: Any, course: Any, actor: Any, *, now: dt.datetime = NOW) -> str:
    """ "Start class" as the view runs it: check and audit, then Zoom, then record."""
    plan = lifecycle.start_plan(object_session(course), actor=actor, course_id=course.id, now=now)
    return zoomwork.start_class(current_app._get_current_object(), zoom, plan, now=now)


# --- on the real clock: courses over the next clock change ---------------------------------


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_clock_change(tz: str) -> dt.date:
    """The first day (within a year) on which the zone's UTC offset changes."""
    zone = zoneinfo.ZoneInfo(tz)
    day = utc_now().date() + dt.timedelta(days=14)
    noon = dt.datetime.combine(day, dt.time(12), zone)
    for _ in range(370):
        following = noon + dt.timedelta(days=1)
        nxt = dt.datetime.combine(following.date(), dt.time(12), zone)
        if nxt.utcoffset() != noon.utcoffset():
            return nxt.date()
        noon = nxt
    raise AssertionError("no clock change within a year")


def series_over_clock_change(tz: str, **overrides: Any) -> sched.Series:
    change = next_clock_change(tz)
    first = change - dt.timedelta(days=14)
    while first.weekday() != 1:  # a Tuesday
        first -= dt.timedelta(days=1)
    values: dict[str, Any] = {
        "first_date": first,
        "weekdays": ("tue", "sat"),
        "start_time": dt.time(17, 0),
        "duration_minutes": 45,
        "timezone": tz,
        "class_count": 8,
    }
    values.update(overrides)
    return sched.Series(**values)


def create_over_clock_change(
    session: Session, sandbox: SandboxZoom, actor: Any, **overrides: Any
) -> Any:
    """A course over the next clock change, on the real clock: saved, then its Zoom work run as
    the request does after its commit. Returns the service's outcome."""
    tz = overrides.pop("timezone", "Europe/London")
    outcome = provisioning.create_course(
        session,
        actor=actor,
        title=overrides.pop("title", "Cello ensemble"),
        series=series_over_clock_change(tz, **overrides),
        now=utc_now(),
    )
    settle(sandbox.client, outcome.course, now=utc_now())
    return outcome
