"""Fixtures for the courses tests: the Zoom sandbox in process, its client in the app, a clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from flask import Flask

from companion.zoom import ZoomClient

from ..factories import NOW
from ..zoom_sandbox import SandboxZoom


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
