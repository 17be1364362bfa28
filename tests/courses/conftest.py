"""Fixtures for the courses tests: the Zoom sandbox in process, a fixed clock, a course factory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app
from sqlalchemy.orm import Session, object_session

from companion import work
from companion.courses import lifecycle, presentation, provisioning, verification, zoomwork
from companion.courses import schedule as sched
from companion.zoom import ZoomClient

from ..zoom_sandbox import SandboxZoom

# A Monday morning in London, before the spring clock change.
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, now: dt.datetime) -> Iterator[SandboxZoom]:
    """Zoom: the sandbox in process, at the test's ``now`` (on the real clock in modules that
    set REAL_CLOCK, whose courses start from today)."""
    real = getattr(request.module, "REAL_CLOCK", False)
    zoom = SandboxZoom(now=None if real else lambda: now)
    yield zoom
    zoom.close()


@pytest.fixture
def zoom(sandbox: SandboxZoom) -> ZoomClient:
    """companion's Zoom client, talking to the sandbox."""
    return sandbox.client


@pytest.fixture
def app_with_zoom(app: Flask, zoom: ZoomClient) -> Flask:
    """The app with that client as its Zoom (views and jobs use it)."""
    app.extensions["companion.zoom_client"] = zoom
    return app


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
