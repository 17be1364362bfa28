"""Fixtures for the courses tests: a fake Zoom, a fixed clock and a course factory."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion.courses import schedule as sched
from companion.courses import services

from .fake_zoom import FakeZoom

# A Monday morning in London, before the spring clock change.
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


@pytest.fixture
def zoom(now: dt.datetime) -> FakeZoom:
    return FakeZoom(now=lambda: now)


@pytest.fixture
def app_with_zoom(app: Flask, zoom: FakeZoom) -> Flask:
    """The app with the fake Zoom as its client (views and jobs use it)."""
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
    zoom: FakeZoom,
    actor: Any,
    *,
    now: dt.datetime = NOW,
    title: str = "Art club",
    **overrides: Any,
) -> Any:
    outcome = services.create_course(
        session, zoom, actor=actor, title=title, series=series(**overrides), now=now
    )
    return outcome.course
