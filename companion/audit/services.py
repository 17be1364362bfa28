"""Append to and verify the hash-chained audit trail.

``record`` runs inside the caller's transaction: if it fails, the action it records fails too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64


def _canonical(event: AuditEvent) -> bytes:
    fields = {
        "id": event.id,
        "at": event.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "kind": event.kind,
        "organisation_id": event.organisation_id,
        "actor_user_id": event.actor_user_id,
        "actor": event.actor,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "course_id": event.course_id,
        "family_id": event.family_id,
        "ip": event.ip,
        "detail": event.detail,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def _lock_head(session: Session) -> AuditHead:
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).first()
    if head is None:
        head = AuditHead(id=1, last_id=0, last_hash=GENESIS)
        session.add(head)
        session.flush()
    return head


def record(
    session: Session,
    kind: str,
    *,
    actor: Any = None,
    actor_label: str | None = None,
    organisation_id: int | None = None,
    subject: tuple[str, Any] | None = None,
    course_id: int | None = None,
    family_id: int | None = None,
    ip: str = "",
    at: dt.datetime | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append one event. ``actor`` is a staff User (or None for the system or a parent)."""
    head = _lock_head(session)
    when = at or utcnow()
    event = AuditEvent(
        id=head.last_id + 1,
        at=when,
        kind=kind,
        organisation_id=organisation_id
        if organisation_id is not None
        else getattr(actor, "organisation_id", None),
        actor_user_id=getattr(actor, "id", None),
        actor=actor_label if actor_label is not None else _label(actor),
        subject_type=subject[0] if subject else "",
        subject_id=str(subject[1]) if subject else "",
        course_id=course_id,
        family_id=family_id,
        ip=ip or "",
        detail=json.dumps(detail, sort_keys=True, default=str),
        prev_hash=head.last_hash,
    )
    event.hash = event_hash(event)
    session.add(event)
    head.last_id = event.id
    head.last_hash = event.hash
    session.flush()
    return event


def by_parent(
    session: Session,
    kind: str,
    *,
    family: Any,
    contact_id: int,
    subject: tuple[str, Any] | None = None,
    ip: str = "",
    **detail: Any,
) -> AuditEvent:
    """Append one event done by a parent (who has no account): named by their contact, filed
    under their family, its course and organisation; about the contact unless ``subject``."""
    return record(
        session,
        kind,
        actor_label=f"parent (contact {contact_id})",
        organisation_id=family.organisation_id,
        subject=subject or ("family_contact", contact_id),
        course_id=family.course_id,
        family_id=family.id,
        ip=ip,
        **detail,
    )


def _label(actor: Any) -> str:
    if actor is None:
        return "system"
    email = getattr(actor, "email", None)
    return email or str(actor)


@dataclass(frozen=True)
class ChainProblem:
    event_id: int
    problem: str
    # The organisation of the row at fault, as the row says; None when no row says (missing
    # rows, a removed tail, a system row): such a break may be anyone's.
    organisation_id: int | None = None


def verify(session: Session, batch: int = 1000) -> Iterator[ChainProblem]:
    """Walk the chain in id order and yield every break: edited, deleted or reordered rows."""
    prev_hash = GENESIS
    expected_id = 1
    last_at: dt.datetime | None = None
    last_id = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.id != expected_id:
                yield ChainProblem(expected_id, f"rows {expected_id}..{row.id - 1} are missing")
            org = row.organisation_id
            if row.prev_hash != prev_hash:
                yield ChainProblem(
                    row.id, "does not follow the row before it (deleted or reordered)", org
                )
            if event_hash(row) != row.hash:
                yield ChainProblem(row.id, "content was changed after it was written", org)
            if last_at is not None and row.at < last_at:
                yield ChainProblem(row.id, "is dated before the row before it (reordered)", org)
            prev_hash = row.hash
            expected_id = row.id + 1
            last_at = row.at
            last_id = row.id
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is not None and (head.last_id != last_id or head.last_hash != prev_hash):
        yield ChainProblem(head.last_id, "the newest rows were removed")


def head_id(session: Session) -> int:
    head = session.get(AuditHead, 1)
    return head.last_id if head else 0
