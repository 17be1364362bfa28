"""Fixtures for the families tests: the Zoom sandbox in process, a course, families, parents.

The service clock (``utcnow``) is set to NOW, so pages and services agree on the time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion.db import Clock
from companion.zoom import EXTENSION_KEY, ZoomClient

from .. import factories
from ..factories import NOW
from ..zoom_sandbox import SandboxZoom


@pytest.fixture(autouse=True)
def _at_now(request: pytest.FixtureRequest, clock: Clock) -> Iterator[None]:
    # Modules that talk to a real server (the Zoom sandbox, a browser) set REAL_CLOCK.
    if not getattr(request.module, "REAL_CLOCK", False):
        clock.offset = NOW - dt.datetime.now(dt.UTC)
    yield


@pytest.fixture
def now() -> dt.datetime:
    return NOW


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[SandboxZoom]:
    """Zoom: the sandbox in process, on the services' clock."""
    zoom = SandboxZoom(now=clock.now)
    yield zoom
    zoom.close()


@pytest.fixture
def zoom(sandbox: SandboxZoom) -> ZoomClient:
    """companion's Zoom client, talking to the sandbox."""
    return sandbox.client


@pytest.fixture
def app_with_zoom(app: Flask, zoom: ZoomClient) -> Flask:
    app.extensions[EXTENSION_KEY] = zoom
    return app


@pytest.fixture
def course(app_with_zoom: Flask, db_session: Session, zoom: ZoomClient, teacher: Any) -> Any:
    return factories.make_course(db_session, zoom, teacher)


@pytest.fixture
def family(db_session: Session, zoom: ZoomClient, teacher: Any, course: Any) -> Any:
    return factories.enrol(db_session, zoom, teacher, course)
