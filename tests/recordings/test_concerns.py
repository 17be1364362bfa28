"""Concerns and holds: a teacher or the lead raises a concern about a class; its recordings are
held (even one that arrives later) and the lead is told; only the lead releases, with a reason."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.db import utcnow
from companion.errors import Forbidden, NotFound, ValidationError
from companion.mail.models import OutboxMessage
from companion.recordings import concerns, retention
from companion.recordings.models import Concern, Hold

from .. import factories
from ..conftest import Browser
from ..factories import class_start, zoom_course
from .vault_helpers import Vault


@pytest.fixture(autouse=True)
def _app_context(app: Any) -> None:
    """Raising a concern queues mail and links to companion: it needs the app."""


def kinds(db_session: Session, prefix: str) -> list[str]:
    db_session.expire_all()
    return [
        e.kind
        for e in db_session.scalars(
            select(AuditEvent).where(AuditEvent.kind.like(prefix + "%")).order_by(AuditEvent.id)
        )
    ]


def raise_it(db_session: Session, actor: Any, cls: Any, **kw: Any) -> Concern:
    values = {"what_happened": "A stranger joined and wrote in the chat.", "when": "12"}
    values.update(kw)
    return concerns.raise_concern(
        db_session, actor, class_session_id=cls.id, now=utcnow(), **values
    )


def test_a_teacher_raises_a_concern_the_recording_is_held_and_the_lead_told(
    vault: Vault, course_in_zoom: Any, teacher: Any, lead: Any, db_session: Session
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    course_in_zoom.timezone = "UTC"
    concern = raise_it(db_session, teacher, cls, when="16:25")

    rec = vault.recordings()[0]
    assert rec.on_hold
    hold = db_session.scalars(select(Hold).where(Hold.concern_id == concern.id)).one()
    assert hold.class_session_id == cls.id and hold.active
    assert concern.minute_into_class == 25
    mails = db_session.scalars(select(OutboxMessage)).all()
    assert [m.to_address for m in mails] == [lead.email]
    assert "safeguarding concern" in mails[0].body_text.lower()
    assert "stranger" not in mails[0].body_text  # the details stay in companion
    assert kinds(db_session, "concern.") == ["concern.raised", "concern.lead_told"]
    assert "recording.hold_placed" in kinds(db_session, "recording.")
    # Retention passes it by.
    assert retention.sweep(vault.app, vault.storage, now=rec.delete_after) == {}


def test_a_recording_that_arrives_after_the_concern_is_held_too(
    vault: Vault, course_in_zoom: Any, teacher: Any, lead: Any, db_session: Session
) -> None:
    cls = course_in_zoom.classes[0]
    raise_it(db_session, lead, cls)
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    rec = vault.recordings()[0]
    assert rec.class_session_id == cls.id and rec.on_hold


def test_only_the_lead_releases_a_hold_and_must_say_why(
    vault: Vault, course_in_zoom: Any, teacher: Any, lead: Any, db_session: Session
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    concern = raise_it(db_session, teacher, cls)
    hold = db_session.scalars(select(Hold).where(Hold.concern_id == concern.id)).one()

    with pytest.raises(Forbidden):
        concerns.release_hold(db_session, teacher, hold_id=hold.id, reason="x" * 20, now=utcnow())
    with pytest.raises(ValidationError):
        concerns.release_hold(db_session, lead, hold_id=hold.id, reason="ok", now=utcnow())
    second = raise_it(db_session, lead, cls, what_happened="Another worry about this class.")

    concerns.release_hold(
        db_session, lead, hold_id=hold.id, reason="Reviewed with the DSL: no issue.", now=utcnow()
    )
    assert vault.recordings()[0].on_hold  # the second concern still holds it
    other = db_session.scalars(select(Hold).where(Hold.concern_id == second.id)).one()
    concerns.release_hold(
        db_session, lead, hold_id=other.id, reason="Reviewed, closed, no action.", now=utcnow()
    )
    assert not vault.recordings()[0].on_hold
    released = [
        json.loads(e.detail)
        for e in db_session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "recording.hold_released")
        )
    ]
    assert [d["reason"] for d in released] == [
        "Reviewed with the DSL: no issue.",
        "Reviewed, closed, no action.",
    ]


def test_a_teacher_cannot_raise_a_concern_about_another_teachers_class(
    db_session: Session, org: Any, teacher: Any
) -> None:
    other = factories.user(db_session, org)
    course = zoom_course(db_session, other, meeting_id=None, starts=[class_start(1)])
    with pytest.raises(NotFound):
        raise_it(db_session, teacher, course.classes[0])


def test_the_admin_raises_no_concerns(db_session: Session, org: Any, admin: Any, teacher: Any):
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[class_start(1)])
    with pytest.raises(Forbidden):
        raise_it(db_session, admin, course.classes[0])


@pytest.mark.parametrize(
    ("when", "minute"),
    [("12", 12), ("minute 3", 3), ("30 min", 30), ("16:00", 0), ("16.40", 40), ("0", 0)],
)
def test_when_in_the_class(when: str, minute: int, db_session: Session, teacher: Any) -> None:
    start = class_start(1).replace(hour=16, minute=0)
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[start])
    course.timezone = "UTC"
    db_session.flush()
    assert raise_it(db_session, teacher, course.classes[0], when=when).minute_into_class == minute


@pytest.mark.parametrize("when", ["", "soon", "15:59", "25:00", "200", "12:75"])
def test_a_time_outside_the_class_is_refused(when: str, db_session: Session, teacher: Any):
    start = class_start(1).replace(hour=16, minute=0)
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[start])
    course.timezone = "UTC"
    db_session.flush()
    with pytest.raises(ValidationError) as info:
        raise_it(db_session, teacher, course.classes[0], when=when)
    assert info.value.field == "when"


def test_a_class_in_the_future_takes_no_concern(db_session: Session, teacher: Any) -> None:
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[class_start(-2)])
    with pytest.raises(ValidationError):
        raise_it(db_session, teacher, course.classes[0])


# --- pages ---------------------------------------------------------------------------------------


def test_the_concern_form_for_a_teacher(
    browser: Browser, db_session: Session, teacher: Any, lead: Any
) -> None:
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[class_start(1)])
    cls = course.classes[0]
    browser.login(teacher.email)
    page = browser.client.get(f"/concerns/new?class_id={cls.id}")
    assert page.status_code == 200
    assert course.title in page.get_data(as_text=True)

    refused = browser.post(
        "/concerns/new",
        {"class_session_id": cls.id, "what_happened": "short", "when": "12"},
        form_page="/concerns/new",
    )
    assert refused.status_code == 422
    assert db_session.scalars(select(Concern)).all() == []

    done = browser.post(
        "/concerns/new",
        {
            "class_session_id": cls.id,
            "what_happened": "A child said something worrying at minute 12.",
            "when": "12",
        },
        form_page="/concerns/new",
    )
    assert done.status_code == 302
    concern = db_session.scalars(select(Concern)).one()
    detail = browser.client.get(done.headers["Location"])
    assert "worrying" in detail.get_data(as_text=True)
    # The teacher cannot release the hold.
    hold = db_session.scalars(select(Hold)).one()
    assert (
        browser.post(
            f"/concerns/holds/{hold.id}/release",
            {"reason": "I would like it gone please."},
            form_page="/concerns/",
        ).status_code
        == 403
    )
    assert concern.raised_by_id == teacher.id


def test_the_lead_releases_a_hold_on_its_page(
    browser: Browser, db_session: Session, teacher: Any, lead: Any
) -> None:
    course = zoom_course(db_session, teacher, meeting_id=None, starts=[class_start(1)])
    concern = raise_it(db_session, teacher, course.classes[0])
    hold = db_session.scalars(select(Hold)).one()
    browser.login(lead.email)
    page = browser.client.get(f"/concerns/{concern.id}")
    assert "Release hold" in page.get_data(as_text=True)
    response = browser.post(
        f"/concerns/holds/{hold.id}/release",
        {"reason": "Reviewed; nothing to keep.", "next": f"/concerns/{concern.id}"},
        form_page=f"/concerns/{concern.id}",
    )
    assert response.status_code == 302 and response.headers["Location"] == f"/concerns/{concern.id}"
    db_session.expire_all()
    assert db_session.get(Hold, hold.id).released_at is not None


def test_admins_have_no_concern_pages(browser: Browser, admin: Any) -> None:
    browser.login(admin.email)
    assert browser.client.get("/concerns/").status_code == 403


def test_the_lead_can_hold_a_single_recording(
    vault: Vault, course_in_zoom: Any, lead: Any, db_session: Session
) -> None:
    vault.run_class(course_in_zoom.zoom_meeting_id, class_start(3))  # an unknown class
    vault.work()
    rec = vault.recordings()[0]
    assert rec.unmatched
    concerns.place_hold(
        db_session, lead, recording_id=rec.id, reason="Keep: checking who ran it.", now=utcnow()
    )
    assert vault.recordings()[0].on_hold
    assert retention.sweep(vault.app, vault.storage, now=rec.delete_after + dt.timedelta(1)) in (
        {},
    )
