"""The meeting passcode: stored encrypted (:mod:`.crypto`), never logged, read in clear only to
show it to the teacher and to enrolled families."""

from __future__ import annotations

import datetime as dt

from flask import current_app

from . import crypto
from .models import Course


def passcode_of(course: Course) -> str:
    """The meeting passcode in clear (to show to the teacher and enrolled families only)."""
    return crypto.unseal(course.passcode_encrypted, _secret_key())


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


def _set_passcode(course: Course, passcode: str, now: dt.datetime) -> None:
    course.passcode_encrypted = crypto.seal(passcode, _secret_key())
    course.passcode_set_at = now
