"""Fixtures for the vault tests: the app wired to the Zoom sandbox, a course with classes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from .vault_helpers import Vault, make_course


@pytest.fixture
def vault(app: Flask, db_session: Session, tmp_path: Path) -> Iterator[Vault]:
    v = Vault(app, db_session, tmp_path)
    yield v
    v.close()


def class_start(days_ago: int = 1) -> dt.datetime:
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return (now - dt.timedelta(days=days_ago)).replace(hour=16, minute=0)


@pytest.fixture
def course_in_zoom(vault: Vault, db_session: Session, teacher: Any) -> Any:
    """A course whose meeting exists in the sandbox, with a class yesterday and one next week."""
    start = class_start(1)
    meeting_id = vault.meeting(start + dt.timedelta(days=8))
    return make_course(
        db_session,
        teacher,
        meeting_id=meeting_id,
        starts=[start, start + dt.timedelta(days=7)],
    )
