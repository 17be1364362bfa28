"""Recordings: a course row already in Zoom with its classes, the body of its Zoom meeting, and
the start of a class some days ago."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy.orm import Session

from companion.courses.models import ClassSession, Course
from companion.sealing import Purpose

from ..keys_helpers import suite_sealer


def class_start(days_ago: int = 1) -> dt.datetime:
    """A class that began at 16:00 ``days_ago`` days ago."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return (now - dt.timedelta(days=days_ago)).replace(hour=16, minute=0)


CLASS_MINUTES = 45


def meeting_body(start: dt.datetime) -> dict[str, Any]:
    return {
        "topic": "Art club (ages 8-10)",
        "type": 2,
        "duration": CLASS_MINUTES,
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "Europe/London",
        "password": "Kq7mP2xZ4r",
        "settings": {"waiting_room": True, "auto_recording": "cloud"},
    }


def zoom_course(
    session: Session,
    teacher: Any,
    *,
    meeting_id: int | None,
    starts: list[dt.datetime],
    title: str = "Art club",
) -> Course:
    """A course row already in Zoom, with classes at ``starts`` (the meeting is made separately,
    in the sandbox or not at all)."""
    first = starts[0]
    course = Course(
        organisation_id=teacher.organisation_id,
        teacher_id=teacher.id,
        title=title,
        timezone="Europe/London",
        first_date=first.date(),
        weekdays="mon",
        start_time=first.time().replace(tzinfo=None),
        duration_minutes=CLASS_MINUTES,
        class_count=len(starts),
        end_date=None,
        ends_at=starts[-1] + dt.timedelta(minutes=CLASS_MINUTES),
        zoom_user_id="me",
        zoom_meeting_id=meeting_id,
        zoom_state="created",
        companion_ref=secrets.token_hex(8),
        # Not read by these tests, but sealed as companion seals it: an app started on a database
        # holding a value its keys cannot open refuses to start.
        passcode_encrypted=suite_sealer().seal(Purpose.COURSE_PASSCODE, "000000"),
        passcode_set_at=first,
        safety_state="safe",
    )
    session.add(course)
    session.flush()
    for at in starts:
        session.add(ClassSession(course_id=course.id, starts_at=at, duration_minutes=CLASS_MINUTES))
    session.flush()
    return course
