"""The meeting passcode: stored sealed (:mod:`companion.sealing`, its own purpose), never
logged, read in clear only to show it to the teacher and to enrolled families."""

from __future__ import annotations

import datetime as dt

from .. import sealing
from ..sealing import Purpose
from .models import Course


def passcode_of(course: Course) -> str:
    """The meeting passcode in clear (to show to the teacher and enrolled families only)."""
    return sealing.unseal(Purpose.COURSE_PASSCODE, course.passcode_encrypted)


def _set_passcode(course: Course, passcode: str, now: dt.datetime) -> None:
    course.passcode_encrypted = sealing.seal(Purpose.COURSE_PASSCODE, passcode)
    course.passcode_set_at = now
