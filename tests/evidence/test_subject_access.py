"""A family's data: the admin exports it (nothing of another family) and erases a family that
has left, unless a hold keeps a class the child attended."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.audit.services import record as audit
from companion.evidence.models import AdultConfirmation, AttendanceEvent, ClassWarning
from companion.families.models import (
    AgreementAcceptance,
    AgreementVersion,
    AudioOnlyEvent,
    Family,
    FamilyContact,
)
from companion.mail.models import OutboxMessage
from companion.recordings.models import Hold
from companion.webhooks.models import WebhookEvent

from .. import factories
from ..factories import Meeting, class_of, feed
from ..staff_helpers import sign_in

M = dt.timedelta(minutes=1)


def _world(session: Session, teacher: Any) -> tuple[Any, Any, Any]:
    """Two families on one course, both with a record of everything; Amira's alone for a while."""
    course = factories.course_with_classes(session, teacher)
    cls = class_of(course)
    amira = factories.family(
        session, course, first="Amira", contacts=(("Rana Khan", "rana@example.net"),)
    )
    ben = factories.family(session, course, first="Ben", contacts=(("Lee Ng", "lee@example.net"),))
    now = dt.datetime.now(dt.UTC)
    version = AgreementVersion(organisation_id=course.organisation_id, version=1, body="Be kind")
    session.add(version)
    session.flush()
    for fam in (amira, ben):
        contact = fam.contacts[0]
        session.add(
            AgreementAcceptance(
                agreement_id=version.id, family_id=fam.id, contact_id=contact.id, accepted_at=now
            )
        )
        session.add(
            AudioOnlyEvent(
                family_id=fam.id, contact_id=contact.id, class_id=cls.id, action="request", at=now
            )
        )
        session.add(
            AdultConfirmation(
                family_id=fam.id, class_session_id=cls.id, contact_id=contact.id, confirmed_at=now
            )
        )
        session.add(
            OutboxMessage(
                organisation_id=course.organisation_id,
                kind="family.link",
                to_address=contact.email,
                to_name=contact.name,
                subject=f"Your link for {fam.child_first_name}",
                body_text="https://example.org/f/secret-token",
            )
        )
        audit(
            session,
            "family.enrolled",
            actor=teacher,
            subject=("family", fam.id),
            family_id=fam.id,
            course_id=course.id,
        )
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    docs = [z.started(), z.participant("meeting.participant_joined", host, z.start)]
    docs += z.attend(
        Meeting.child(amira, email="amira-ipad@example.net"), cls.starts_at, cls.ends_at - M
    )
    docs += z.attend(Meeting.child(ben), cls.starts_at + 20 * M, cls.starts_at + 25 * M)
    docs += [z.participant("meeting.participant_left", host, cls.ends_at), z.ended(cls.ends_at)]
    feed(session, docs)
    # The webhook rows the events came from (as the intake would have stored them).
    for e in session.scalars(select(AttendanceEvent)):
        row = WebhookEvent(
            dedupe_key=e.dedupe_key,
            event="meeting.x",
            body=b"{}",
            received_at=now,
            status="done",
        )
        session.add(row)
        session.flush()
        e.webhook_event_id = row.id
    session.flush()
    return course, amira, ben


def _export(browser: Any, fam: Any, fmt: str = "json") -> Any:
    return browser.post(
        f"/evidence/families/{fam.id}/export",
        {"format": fmt},
        form_page=f"/evidence/families/{fam.id}",
    )


def test_the_export_holds_everything_about_the_family_and_nothing_of_another(
    db_session: Session, browser: Any, teacher: Any, admin: Any
) -> None:
    course, amira, ben = _world(db_session, teacher)
    factories.recording(db_session, class_of(course))
    browser.login(admin.email)
    response = _export(browser, amira)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data())
    assert data["family"]["child_first_name"] == "Amira"
    assert [c["email"] for c in data["contacts"]] == ["rana@example.net"]
    assert data["enrolment"]["course_id"] == course.id
    assert len(data["agreement_acceptances"]) == 1
    assert len(data["audio_only_requests"]) == 1 and len(data["adult_confirmations"]) == 1
    assert {a["what"] for a in data["attendance"]} == {"waiting", "admitted", "joined", "left"}
    assert data["attendance"][0]["class_id"] == class_of(course).id
    assert data["warnings"] and data["warnings"][0]["kind"] == "one_child_alone"
    (rec,) = data["recordings"]["items"]
    assert rec["class_id"] == class_of(course).id and "sha256" not in json.dumps(rec)
    assert [m["subject"] for m in data["messages"]] == ["Your link for Amira"]
    assert "secret-token" not in response.get_data(as_text=True)
    assert any(a["kind"] == "family.enrolled" for a in data["audit"])
    flat = response.get_data(as_text=True)
    assert "Ben" not in flat and "lee@example.net" not in flat and "Lee Ng" not in flat
    assert ben.zoom_registrant_id not in flat
    audit_row = db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "evidence.subject_access_export")
    ).one()
    assert audit_row.family_id == amira.id and audit_row.actor_user_id == admin.id

    as_zip = _export(browser, amira, "zip")
    with zipfile.ZipFile(io.BytesIO(as_zip.get_data())) as zf:
        assert json.loads(zf.read("family.json"))["family"]["id"] == amira.id


def test_erasing_a_family_that_left(
    db_session: Session, browser: Any, teacher: Any, admin: Any
) -> None:
    course, amira, ben = _world(db_session, teacher)
    browser.login(admin.email)
    refused = browser.post(
        f"/evidence/families/{amira.id}/erase",
        {"confirm": "erase"},
        form_page="/evidence/families/",
    )
    assert refused.status_code == 303
    assert db_session.get(Family, amira.id) is not None  # still enrolled: not erased

    amira.status, amira.zoom_state = "withdrawn", "cancelled"
    amira_id, contact_ids = amira.id, [c.id for c in amira.contacts]
    response = browser.post(
        f"/evidence/families/{amira_id}/erase",
        {"confirm": "erase"},
        form_page="/evidence/families/",
    )
    assert response.status_code == 303
    db_session.expire_all()
    assert db_session.get(Family, amira_id) is None
    assert (
        db_session.scalars(select(FamilyContact).where(FamilyContact.id.in_(contact_ids))).all()
        == []
    )
    for model in (AgreementAcceptance, AudioOnlyEvent, AdultConfirmation):
        assert (
            db_session.scalar(
                select(func.count()).select_from(model).where(model.family_id == amira_id)
            )
            == 0
        )
    assert (
        db_session.scalars(
            select(OutboxMessage).where(OutboxMessage.to_address == "rana@example.net")
        ).all()
        == []
    )
    erased = db_session.scalars(
        select(AttendanceEvent).where(AttendanceEvent.display_name == "(erased)")
    ).all()
    assert len(erased) == 4 and all(e.family_id is None and not e.email for e in erased)
    assert all(db_session.get(WebhookEvent, e.webhook_event_id) is None for e in erased)
    warnings = db_session.scalars(select(ClassWarning)).all()
    assert len(warnings) == 2 and all("Amira" not in w.detail for w in warnings)
    # Ben's family is untouched.
    db_session.refresh(ben)
    assert ben.contacts[0].email == "lee@example.net"
    assert (
        db_session.scalar(
            select(func.count())
            .select_from(AdultConfirmation)
            .where(AdultConfirmation.family_id == ben.id)
        )
        == 1
    )
    assert db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.to_address == "lee@example.net")
    ).all()
    assert (
        db_session.scalar(
            select(func.count())
            .select_from(AttendanceEvent)
            .where(AttendanceEvent.family_id == ben.id)
        )
        == 4
    )
    row = db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "evidence.family_erased")
    ).one()
    assert row.family_id == amira_id and "Amira" not in row.detail and "rana" not in row.detail


def test_a_hold_on_a_class_the_child_attended_refuses_the_erasure(
    db_session: Session, browser: Any, teacher: Any, admin: Any
) -> None:
    course, amira, _ben = _world(db_session, teacher)
    amira.status, amira.zoom_state = "withdrawn", "cancelled"
    db_session.add(
        Hold(
            organisation_id=course.organisation_id,
            class_session_id=class_of(course).id,
            reason="concern",
        )
    )
    db_session.flush()
    browser.login(admin.email)
    page = browser.client.get(f"/evidence/families/{amira.id}").get_data(as_text=True)
    assert "A hold keeps the record" in page
    response = browser.post(
        f"/evidence/families/{amira.id}/erase",
        {"confirm": "erase"},
        form_page="/evidence/families/",
    )
    assert response.status_code == 303
    page = browser.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Nothing was erased" in page
    db_session.expire_all()
    assert db_session.get(Family, amira.id) is not None
    assert db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "evidence.family_erase_refused")
    ).one()


def test_only_the_admin_of_the_organisation_sees_a_familys_data(
    db_session: Session, client: Any, browser: Any, teacher: Any, lead: Any
) -> None:
    course, amira, _ben = _world(db_session, teacher)
    sign_in(client, teacher.email)
    assert client.get(f"/evidence/families/{amira.id}").status_code == 403
    client.post("/logout")
    browser.login(lead.email)
    assert browser.client.get(f"/evidence/families/{amira.id}").status_code == 403


def test_another_organisations_family_is_not_found(
    db_session: Session, browser: Any, admin: Any
) -> None:
    from .. import factories

    other_org = factories.organisation(db_session)
    other_teacher = factories.user(db_session, other_org, role="teacher")
    _course, amira, _ben = _world(db_session, other_teacher)
    browser.login(admin.email)
    assert browser.client.get(f"/evidence/families/{amira.id}").status_code == 404
    assert _export(browser, amira).status_code == 404
