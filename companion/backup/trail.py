"""What the audit trail says about backups, for the admin's security review.

A verification's result is an audit event (installation-wide, as a key rotation is), written by
``companion backup create`` and ``verify``; nothing else records backups.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.models import AuditEvent

VERIFIED = "backup.verified"
VERIFY_FAILED = "backup.verification_failed"


@dataclass(frozen=True)
class LastVerified:
    verified_at: dt.datetime
    created_at: dt.datetime | None
    file: str
    rows: int | None


def last_verified(session: Session) -> LastVerified | None:
    """The newest backup verification that succeeded, for the security review."""
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.kind == VERIFIED)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    ).first()
    if event is None:
        return None
    detail = json.loads(event.detail or "{}")
    created = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        created = dt.datetime.fromisoformat(detail["created_at"]).astimezone(dt.UTC)
    return LastVerified(event.at, created, str(detail.get("file", "")), detail.get("rows"))


def failed_since(session: Session, since: dt.datetime | None) -> int:
    """How many verifications failed after ``since`` (all of them when None)."""
    query = select(sa.func.count(AuditEvent.id)).where(AuditEvent.kind == VERIFY_FAILED)
    if since is not None:
        query = query.where(AuditEvent.at > since)
    return int(session.scalar(query) or 0)
