"""The teacher's summary before each class: once per class, with the admit list."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import work
from companion.courses.changes import cancel_class
from companion.courses.timetable import class_sessions
from companion.families import admit, audio_only, jobs, registrants
from companion.families.models import ClassSummary, Family

from .. import factories
from ..factories import NOW
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def test_the_summary_goes_once_two_hours_before(
    app: Any, db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    factories.enrol(db_session, zoom, teacher, course, first="Ben", contacts=[("Jo", "jo@x.net")])
    first = class_sessions(course)[0]
    parent = factories.principal(db_session, family.contacts[0])
    audio_only.request_audio_only(db_session, parent, class_id=first.id, action="request", now=NOW)
    assert jobs.class_summaries(app, now=first.starts_at - dt.timedelta(hours=3)) == {}
    at = first.starts_at - dt.timedelta(hours=2)
    assert jobs.class_summaries(app, now=at) == {"sent": 1}
    assert jobs.class_summaries(app, now=at) == {}
    assert jobs.class_summaries(app, class_ids=[first.id], now=at) == {"skipped": 1}
    (message,) = factories.outbox(db_session, "family.class_summary")
    assert message.to_address == teacher.email
    assert message.subject == "Art club at 17:00 Mon 9 Mar: 2 expected, 1 audio-only"
    assert "  - Amira K  [AUDIO ONLY - camera off; agreement not accepted yet]" in message.body_text
    assert "  - Ben K  [agreement not accepted yet]" in message.body_text
    assert "rana@example.net" not in message.body_text
    (row,) = db_session.scalars(select(ClassSummary)).all()
    assert (row.class_id, row.expected, row.audio_only) == (first.id, 2, 1)


def test_no_summary_for_a_cancelled_or_started_class(
    app: Any, db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    first, second = class_sessions(course)[:2]
    cancel_class(db_session, actor=teacher, course_id=course.id, class_id=second.id, now=NOW)
    assert jobs.class_summaries(app, now=second.starts_at - dt.timedelta(hours=1)) == {}
    assert admit.send_summary(db_session, class_id=first.id, now=first.starts_at) is False
    assert factories.outbox(db_session, "family.class_summary") == []


def test_a_claimed_family_is_left_to_whoever_holds_it(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:

    sandbox.fail("add_registrant", drop=True)
    family = factories.enrol(db_session, zoom, teacher, course)
    due = family.zoom_next_attempt_at
    assert work.claim(db_session, registrants.REGISTRANTS, family.id, due)
    assert jobs.sync_zoom(app, family_ids=[family.id], now=due) == {"skipped": 1}
    assert zoom.calls["add_registrant"] == 1
    assert family.zoom_state == "pending"
