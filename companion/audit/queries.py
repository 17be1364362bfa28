"""Searching the audit trail (read-only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from ..db import end_read
from .models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    organisation_id: int
    person: str = ""
    kind: str = ""
    course_id: int | None = None
    family_id: int | None = None
    # A child's name resolves to the families (one per course enrolment) with that child.
    family_ids: tuple[int, ...] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _query(f: AuditFilter) -> Select[AuditEvent]:
    q = select(AuditEvent).where(
        or_(AuditEvent.organisation_id == f.organisation_id, AuditEvent.organisation_id.is_(None))
    )
    if f.person:
        like = f"%{f.person.strip().lower()}%"
        q = q.where(AuditEvent.actor.ilike(like))
    if f.kind:
        q = q.where(AuditEvent.kind.startswith(f.kind.strip()))
    if f.course_id is not None:
        q = q.where(AuditEvent.course_id == f.course_id)
    if f.family_id is not None:
        q = q.where(AuditEvent.family_id == f.family_id)
    if f.family_ids is not None:
        q = q.where(AuditEvent.family_id.in_(f.family_ids or (-1,)))
    if f.since is not None:
        q = q.where(AuditEvent.at >= f.since)
    if f.until is not None:
        q = q.where(AuditEvent.at < f.until)
    return q


def search(session: Session, f: AuditFilter, *, limit: int = 200) -> list[AuditEvent]:
    return list(session.scalars(_query(f).order_by(AuditEvent.id.desc()).limit(limit)))


def iter_all(session: Session, f: AuditFilter, *, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every matching row in id order, fetched in batches so a huge range is never loaded whole."""
    last_id = 0
    while True:
        rows = session.scalars(
            _query(f).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        last_id = rows[-1].id
        # A stream's own session reads each batch in a short read transaction of its own.
        end_read(session)
        yield from rows
        session.expunge_all()


def families_of_child(session: Session, organisation_id: int, name: str) -> tuple[int, ...]:
    """The families whose child's name contains every word given ("amira", "Amira Khan")."""
    from ..families.models import Family

    words = [w.lower() for w in name.split() if w][:4]
    if not words:
        return ()
    q = select(Family.id).where(Family.organisation_id == organisation_id)
    for word in words:
        like = f"%{word}%"
        q = q.where(or_(Family.child_first_name.ilike(like), Family.child_last_name.ilike(like)))
    return tuple(session.scalars(q.order_by(Family.id).limit(500)))


def kinds(session: Session) -> list[str]:
    return sorted(session.scalars(select(AuditEvent.kind).distinct()))
