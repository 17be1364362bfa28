"""Parents holding a link are told when a class moves or is cancelled, when the course is
cancelled, and when the passcode changes: one message each, to them alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from companion.courses.changes import cancel_class, cancel_course, move_class, rotate_passcode
from companion.courses.passcodes import passcode_of
from companion.courses.timetable import class_sessions

from .. import factories
from ..factories import NOW

pytestmark = pytest.mark.usefixtures("app_with_zoom")


@pytest.fixture
def two_families(db_session: Session, zoom: Any, teacher: Any, course: Any) -> list[Any]:
    first = factories.enrol(
        db_session,
        zoom,
        teacher,
        course,
        contacts=[("Rana", "rana@example.net"), ("Omar", "omar@example.net")],
    )
    # A parent whose link is not sent yet is not told (their page will be current anyway).
    course.safety_state = "unverified"
    second = factories.enrol(
        db_session, zoom, teacher, course, first="Ben", contacts=[("Jo", "jo@example.net")]
    )
    course.safety_state = "safe"
    return [first, second]


def test_a_moved_and_a_cancelled_class(
    db_session: Session, zoom: Any, teacher: Any, course: Any, two_families: Any
) -> None:
    second, third = class_sessions(course)[1:3]
    move_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=second.id,
        day=dt.date(2026, 3, 17),
        at=dt.time(18, 30),
        now=NOW,
    )
    messages = factories.outbox(db_session, "family.schedule_changed")
    assert [m.to_address for m in messages] == ["rana@example.net", "omar@example.net"]
    assert (
        "  - Tuesday 17 March, 18:30-19:15 (moved from Monday 16 March, 17:00)"
        in messages[0].body_text
    )
    assert "omar" not in messages[0].body_text.lower()
    cancel_class(db_session, actor=teacher, course_id=course.id, class_id=third.id, now=NOW)
    latest = factories.outbox(db_session, "family.schedule_changed")[-1]
    assert "  - Monday 23 March, 17:00-17:45: CANCELLED" in latest.body_text


def test_the_course_cancelled_and_the_passcode_changed(
    db_session: Session, zoom: Any, teacher: Any, course: Any, two_families: Any
) -> None:
    rotate_passcode(db_session, actor=teacher, course_id=course.id, now=NOW)
    changed = factories.outbox(db_session, "family.passcode_changed")
    assert len(changed) == 2
    assert passcode_of(course) not in changed[0].body_text
    cancel_course(db_session, actor=teacher, course_id=course.id, now=NOW)
    assert [m.to_address for m in factories.outbox(db_session, "family.course_cancelled")] == [
        "rana@example.net",
        "omar@example.net",
    ]
