"""A family's data: everything companion holds about one child and their parents (subject
access), and erasing a family that has left.

The export holds the family, its contacts, the enrolment, agreement acceptances, audio-only
requests, adult confirmations, attendance (as Zoom reported it), warnings naming the child,
messages sent to the parents (subjects and dates; bodies are left out because they carry
personal links), the audit rows about the family, and the *existence* of recordings of the
classes the child attended: never their content, hashes or files (they show other children).
Nothing of another family is included.

Erasure is for a family that was withdrawn and whose Zoom registrant is cancelled. It deletes
the family, its contacts, links, sessions, agreement acceptances, audio-only requests and
adult confirmations and the messages to its parents; the attendance rows stay as anonymous
"(erased)" rows (the class's record of how many were there must still add up) and the raw
webhooks behind them are deleted. The audit trail keeps its rows: they name the family only by
id and are hash-chained.

A hold wins: if a recording of any class the child attended is on hold (a concern is being
looked into), the erasure is refused, and says which classes and why, because that record
(who was in the class, who their parents are) is exactly what the safeguarding lead may need.
It can be done once the lead releases the hold. Both the export and the erasure, and a refused
erasure, are recorded on the audit trail.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from ..access import ADMIN
from ..accounts.models import User
from ..audit.models import AuditEvent
from ..audit.services import record as audit
from ..courses.access import MAX_ID
from ..courses.models import ClassSession
from ..courses.timetable import class_sessions, local_time
from ..db import changed_rows
from ..errors import Conflict, Forbidden, NotFound
from ..families.models import (
    AgreementAcceptance,
    AudioOnlyEvent,
    Family,
    FamilyContact,
    FamilyLink,
    FamilySession,
    RegistrantState,
)
from ..families.people import display_name
from ..mail.models import OutboxMessage
from ..recordings.models import Hold, Recording
from ..webhooks.models import EventStatus, WebhookEvent
from .models import AdultConfirmation, AttendanceEvent, ClassWarning, ZoomMeeting

ERASED = "(erased)"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def get_family(session: Session, actor: User, family_id: int) -> Family:
    if actor.role != ADMIN:
        raise Forbidden("Only an admin exports or erases a family's data.")
    fam = session.get(Family, family_id) if 0 < family_id <= MAX_ID else None
    if fam is None or fam.organisation_id != actor.organisation_id:
        raise NotFound("No such family.")
    return fam


def list_families(session: Session, actor: User) -> list[Family]:
    if actor.role != ADMIN:
        raise Forbidden("Only an admin exports or erases a family's data.")
    return list(
        session.scalars(
            select(Family)
            .where(Family.organisation_id == actor.organisation_id)
            .order_by(Family.status.desc(), Family.child_first_name, Family.id)
        )
    )


def _attendance(session: Session, fam: Family) -> list[AttendanceEvent]:
    return list(
        session.scalars(
            select(AttendanceEvent)
            .where(AttendanceEvent.family_id == fam.id)
            .order_by(AttendanceEvent.at, AttendanceEvent.id)
        )
    )


def attended_classes(session: Session, fam: Family) -> list[ClassSession]:
    """Classes whose meetings the child was in (by Zoom's events)."""
    ids = select(ZoomMeeting.class_session_id).where(
        ZoomMeeting.id.in_(
            select(AttendanceEvent.meeting_id).where(AttendanceEvent.family_id == fam.id)
        ),
        ZoomMeeting.class_session_id.is_not(None),
    )
    return list(
        session.scalars(
            select(ClassSession).where(ClassSession.id.in_(ids)).order_by(ClassSession.starts_at)
        )
    )


def _recordings(session: Session, class_ids: list[int]) -> list[Recording]:
    if not class_ids:
        return []
    return list(
        session.scalars(
            select(Recording)
            .where(Recording.class_session_id.in_(class_ids))
            .order_by(Recording.started_at)
        )
    )


def _emails_only_this_family(session: Session, fam: Family) -> set[str]:
    """The parents' addresses that no other family of the organisation uses."""
    mine = {c.email for c in fam.contacts}
    shared = set(
        session.scalars(
            select(FamilyContact.email)
            .join(Family, Family.id == FamilyContact.family_id)
            .where(
                FamilyContact.email.in_(mine),
                Family.id != fam.id,
                Family.organisation_id == fam.organisation_id,
            )
        )
    )
    return mine - shared


def _messages(session: Session, fam: Family) -> list[OutboxMessage]:
    emails = {c.email for c in fam.contacts}
    if not emails:
        return []
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.to_address.in_(emails),
                OutboxMessage.organisation_id == fam.organisation_id,
            )
            .order_by(OutboxMessage.id)
        )
    )


def _audit_rows(session: Session, fam: Family) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(
                or_(
                    AuditEvent.family_id == fam.id,
                    (AuditEvent.subject_type == "family") & (AuditEvent.subject_id == str(fam.id)),
                )
            )
            .order_by(AuditEvent.id)
        )
    )


def _warnings_naming(session: Session, fam: Family, class_ids: list[int]) -> list[ClassWarning]:
    if not class_ids:
        return []
    found = session.scalars(
        select(ClassWarning).where(ClassWarning.class_session_id.in_(class_ids))
    ).all()
    return [
        w for w in found if any(c.get("family_id") == fam.id for c in w.details.get("children", []))
    ]


def export_family(
    session: Session, actor: User, family_id: int, *, now: dt.datetime
) -> dict[str, Any]:
    """Everything about one family, as data; recorded on the audit trail."""
    fam = get_family(session, actor, family_id)
    course = fam.course
    contacts = {c.id: c for c in fam.contacts}
    classes = attended_classes(session, fam)
    class_ids = [c.id for c in classes]
    attendance = _attendance(session, fam)
    meeting_class = {
        m.id: m.class_session_id
        for m in session.scalars(
            select(ZoomMeeting).where(ZoomMeeting.id.in_({e.meeting_id for e in attendance}))
        )
    }
    data: dict[str, Any] = {
        "format": "companion-subject-access/1",
        "generated_at": _iso(now),
        "generated_by": {"id": actor.id, "name": actor.name},
        "organisation": {"id": fam.organisation_id, "name": fam.organisation.name},
        "family": {
            "id": fam.id,
            "child_first_name": fam.child_first_name,
            "child_last_name": fam.child_last_name,
            "status": fam.status,
            "enrolled_at": _iso(fam.created_at),
            "withdrawn_at": _iso(fam.withdrawn_at),
            "zoom_state": fam.zoom_state,
            "zoom_registrant_id": fam.zoom_registrant_id,
        },
        "enrolment": {
            "course_id": course.id,
            "course_title": course.title,
            "timezone": course.timezone,
            "classes": [
                {"id": c.id, "starts_at": _iso(c.starts_at), "status": c.status}
                for c in class_sessions(course)
            ],
        },
        "contacts": [
            {
                "id": c.id,
                "position": c.position,
                "name": c.name,
                "email": c.email,
                "added_at": _iso(c.created_at),
            }
            for c in contacts.values()
        ],
        "family_links": [
            {
                "contact_id": link.contact_id,
                "created_at": _iso(link.created_at),
                "revoked_at": _iso(link.revoked_at),
                "last_used_at": _iso(link.last_used_at),
            }
            for link in session.scalars(
                select(FamilyLink).where(FamilyLink.family_id == fam.id).order_by(FamilyLink.id)
            )
        ],
        "agreement_acceptances": [
            {
                "contact_id": a.contact_id,
                "agreement_version": a.agreement.version,
                "accepted_at": _iso(a.accepted_at),
                "ip": a.ip,
            }
            for a in session.scalars(
                select(AgreementAcceptance)
                .where(AgreementAcceptance.family_id == fam.id)
                .order_by(AgreementAcceptance.id)
            )
        ],
        "audio_only_requests": [
            {
                "contact_id": e.contact_id,
                "class_id": e.class_id,
                "scope": e.scope,
                "action": e.action,
                "at": _iso(e.at),
            }
            for e in session.scalars(
                select(AudioOnlyEvent)
                .where(AudioOnlyEvent.family_id == fam.id)
                .order_by(AudioOnlyEvent.at, AudioOnlyEvent.id)
            )
        ],
        "adult_confirmations": [
            {
                "contact_id": c.contact_id,
                "class_id": c.class_session_id,
                "confirmed_at": _iso(c.confirmed_at),
                "ip": c.ip,
            }
            for c in session.scalars(
                select(AdultConfirmation)
                .where(AdultConfirmation.family_id == fam.id)
                .order_by(AdultConfirmation.confirmed_at)
            )
        ],
        "attendance": [
            {
                "class_id": meeting_class.get(e.meeting_id),
                "at": _iso(e.at),
                "what": e.kind,
                "name_in_zoom": e.display_name,
                "email_in_zoom": e.email,
                "registrant_id": e.registrant_id,
                "participant_uuid": e.participant_uuid,
            }
            for e in attendance
        ],
        "warnings": [
            {
                "class_id": w.class_session_id,
                "kind": w.kind,
                "status": w.status,
                "period_start": _iso(w.period_start),
                "period_end": _iso(w.period_end),
            }
            for w in _warnings_naming(session, fam, class_ids)
        ],
        "recordings": {
            "note": "Recordings of the classes the child attended exist as listed; their "
            "content is not part of this export (it shows other children). Ask the "
            "safeguarding lead.",
            "items": [
                {
                    "class_id": r.class_session_id,
                    "recorded_at": _iso(r.started_at),
                    "state": r.state,
                    "delete_after": _iso(r.delete_after),
                    "deleted_at": _iso(r.deleted_at),
                    "on_hold": r.on_hold,
                }
                for r in _recordings(session, class_ids)
            ],
        },
        "messages": [
            {
                "to": m.to_address,
                "subject": m.subject,
                "kind": m.kind,
                "queued_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
                "status": m.status,
            }
            for m in _messages(session, fam)
        ],
        "audit": [
            {
                "id": a.id,
                "at": _iso(a.at),
                "kind": a.kind,
                "actor": a.actor,
                "subject": f"{a.subject_type}:{a.subject_id}" if a.subject_type else "",
                "detail": json.loads(a.detail or "{}"),
            }
            for a in _audit_rows(session, fam)
        ],
    }
    audit(
        session,
        "evidence.subject_access_export",
        actor=actor,
        subject=("family", fam.id),
        course_id=fam.course_id,
        family_id=fam.id,
        sections={k: len(v) for k, v in data.items() if isinstance(v, list)},
    )
    return data


def export_zip(data: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("family.json", json.dumps(data, indent=2, ensure_ascii=False))
        zf.writestr(
            "README.txt",
            "Everything companion holds about this child and their parents (family.json).\n"
            "Recordings are listed by their existence only; their content is not included.\n",
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class Erased:
    family_id: int
    counts: dict[str, int]


def holds_keeping(session: Session, fam: Family) -> list[ClassSession]:
    """Classes the child attended whose recording (or class) a hold keeps."""
    classes = attended_classes(session, fam)
    held = []
    for cls in classes:
        recordings = _recordings(session, [cls.id])
        active = session.scalars(
            select(Hold.id).where(
                Hold.released_at.is_(None),
                or_(
                    Hold.class_session_id == cls.id,
                    Hold.recording_id.in_([r.id for r in recordings]),
                ),
            )
        ).first()
        if active is not None or any(r.on_hold for r in recordings):
            held.append(cls)
    return held


def erase_family(session: Session, actor: User, family_id: int, *, now: dt.datetime) -> Erased:
    """Erase a family that has left; refused while a hold keeps a class the child attended."""
    fam = get_family(session, actor, family_id)
    session.refresh(fam, with_for_update=True)
    name = display_name(fam)
    if fam.enrolled:
        raise Conflict(f"{name} is still enrolled: withdraw the family first, then erase it.")
    if fam.zoom_state not in (
        RegistrantState.CANCELLED,
        RegistrantState.PENDING,
        RegistrantState.FAILED,
    ):
        raise Conflict(
            f"Zoom has not yet confirmed the cancellation of {name}'s registration; "
            "try again once it has (companion retries by itself)."
        )
    held = holds_keeping(session, fam)
    if held:
        when = ", ".join(
            local_time(c.course, c.starts_at).strftime("%-d %B %Y %H:%M") for c in held
        )
        audit(
            session,
            "evidence.family_erase_refused",
            actor=actor,
            subject=("family", fam.id),
            course_id=fam.course_id,
            family_id=fam.id,
            held_classes=[c.id for c in held],
        )
        raise Conflict(
            f"A hold keeps the record of a class {name} attended ({when}): a concern is being "
            "looked into, and who was in that class and how to reach their parents is part of "
            "it. Nothing was erased. The family can be erased once the safeguarding lead "
            "releases the hold."
        )
    counts: dict[str, int] = {}
    course_id = fam.course_id
    contact_ids = [c.id for c in fam.contacts]
    emails = _emails_only_this_family(session, fam)

    attendance = _attendance(session, fam)
    webhook_ids = {e.webhook_event_id for e in attendance if e.webhook_event_id}
    for e in attendance:
        e.family_id = None
        e.display_name = ERASED
        e.email = ""
        e.registrant_id = ""
        e.zoom_user_id = ""
        e.zoom_participant_id = ""
    counts["attendance_anonymised"] = len(attendance)
    class_ids = [c.id for c in attended_classes(session, fam)] or [
        m for m in {e.meeting.class_session_id for e in attendance} if m
    ]
    for w in _warnings_naming(session, fam, class_ids):
        detail = w.details
        detail["children"] = [
            {**c, "name": ERASED, "family_id": None} if c.get("family_id") == fam.id else c
            for c in detail.get("children", [])
        ]
        w.detail = json.dumps(detail)
    session.flush()
    if webhook_ids:
        counts["webhooks_deleted"] = changed_rows(
            session.execute(
                delete(WebhookEvent).where(
                    WebhookEvent.id.in_(webhook_ids),
                    WebhookEvent.status.in_((EventStatus.DONE, EventStatus.UNHANDLED)),
                )
            )
        )
    for label, model in (
        ("sessions", FamilySession),
        ("links", FamilyLink),
        ("agreement_acceptances", AgreementAcceptance),
        ("audio_only_requests", AudioOnlyEvent),
        ("adult_confirmations", AdultConfirmation),
    ):
        counts[label] = changed_rows(
            session.execute(delete(model).where(model.family_id == fam.id))
        )
    if emails:
        counts["messages"] = changed_rows(
            session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.to_address.in_(emails),
                    OutboxMessage.organisation_id == fam.organisation_id,
                )
            )
        )
    counts["contacts"] = changed_rows(
        session.execute(delete(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
    )
    session.expire(fam)
    session.execute(delete(Family).where(Family.id == fam.id))
    session.expunge(fam)
    audit(
        session,
        "evidence.family_erased",
        actor=actor,
        organisation_id=actor.organisation_id,
        subject=("family", family_id),
        course_id=course_id,
        family_id=family_id,
        counts=counts,
    )
    session.flush()
    return Erased(family_id, counts)
