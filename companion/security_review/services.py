"""What the admin's security review looks at, and the record that a review was held.

The policies ask for a security review at least twice a year, so a review older than six months
(or none at all) is due and the admin is reminded.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..access import ADMIN
from ..accounts import twofactor
from ..accounts.models import User
from ..audit.models import AuditEvent
from ..audit.services import record as audit
from ..backup import trail as backups
from ..courses.models import Course, SafetyState
from ..errors import Forbidden, ValidationError
from ..orgs.models import Organisation
from .models import SecurityReview

REVIEW_EVERY_MONTHS = 6
UNUSED_AFTER = dt.timedelta(days=90)
# The vault records this kind when `companion keys rotate` has re-wrapped the recording keys.
KEYS_ROTATED = "keys.rotated"
MAX_NOTE = 5000


def add_months(when: dt.datetime, months: int) -> dt.datetime:
    """The same day and time ``months`` later; the 31st becomes the month's last day."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def next_review_due(last_review_at: dt.datetime | None) -> dt.datetime | None:
    """When the next review is due; None when there has never been one (it is due now)."""
    return add_months(last_review_at, REVIEW_EVERY_MONTHS) if last_review_at else None


def review_due(organisation: Organisation, now: dt.datetime) -> bool:
    due = next_review_due(organisation.last_security_review_at)
    return due is None or now > due


@dataclass(frozen=True)
class UnusedAccount:
    user: User
    last_login_at: dt.datetime | None


@dataclass(frozen=True)
class Overview:
    organisation: Organisation
    keys_rotated_at: dt.datetime | None
    without_two_factor: list[User]
    with_two_factor: list[User]
    unused_accounts: list[UnusedAccount]
    unsafe_courses: list[Course]
    last_review_at: dt.datetime | None
    next_review_due: dt.datetime | None
    review_due: bool
    reviews: list[SecurityReview]
    # The last backup whose archive checked out (`companion backup create` / `verify`), and
    # how many checks failed since.
    last_backup: backups.LastVerified | None = None
    backup_failures: int = 0


def keys_last_rotated(session: Session, organisation_id: int) -> dt.datetime | None:
    # Recording keys belong to the installation, so a rotation recorded without an organisation
    # counts for every organisation on it.
    return session.scalar(
        select(func.max(AuditEvent.at)).where(
            AuditEvent.kind == KEYS_ROTATED,
            or_(
                AuditEvent.organisation_id == organisation_id,
                AuditEvent.organisation_id.is_(None),
            ),
        )
    )


def overview(session: Session, organisation: Organisation, *, now: dt.datetime) -> Overview:
    active_staff = list(
        session.scalars(
            select(User)
            .where(User.organisation_id == organisation.id, User.active.is_(True))
            .order_by(User.name, User.id)
        )
    )
    cutoff = now - UNUSED_AFTER
    unused = [
        UnusedAccount(u, u.last_login_at)
        for u in active_staff
        if u.last_login_at is None or u.last_login_at < cutoff
    ]
    unsafe = list(
        session.scalars(
            select(Course)
            .where(
                and_(
                    Course.organisation_id == organisation.id,
                    Course.safety_state == SafetyState.NOT_SAFE,
                )
            )
            .order_by(Course.title, Course.id)
        )
    )
    reviews = list(
        session.scalars(
            select(SecurityReview)
            .where(SecurityReview.organisation_id == organisation.id)
            .order_by(SecurityReview.reviewed_at.desc(), SecurityReview.id.desc())
            .limit(20)
        )
    )
    last = organisation.last_security_review_at
    last_backup = backups.last_verified(session)
    return Overview(
        organisation=organisation,
        keys_rotated_at=keys_last_rotated(session, organisation.id),
        # Leads and admins first: for them two-factor is required, not optional.
        without_two_factor=sorted(
            (u for u in active_staff if not twofactor.is_enabled(u)),
            key=lambda u: (not twofactor.is_required(u), u.name),
        ),
        with_two_factor=[u for u in active_staff if twofactor.is_enabled(u)],
        unused_accounts=unused,
        unsafe_courses=unsafe,
        last_review_at=last,
        next_review_due=next_review_due(last),
        review_due=review_due(organisation, now),
        reviews=reviews,
        last_backup=last_backup,
        backup_failures=backups.failed_since(
            session, last_backup.verified_at if last_backup else None
        ),
    )


def record_review(session: Session, *, actor: User, note: str, now: dt.datetime) -> SecurityReview:
    """Record that the admin has gone through the review now, with what they found or did."""
    if actor.role != ADMIN:
        raise Forbidden("Only an admin can record a security review.")
    note = (note or "").strip()
    if not note:
        raise ValidationError(
            "Write a short note: what you checked, and anything you changed or will follow up.",
            field="note",
        )
    if len(note) > MAX_NOTE:
        raise ValidationError(
            f"The note is longer than {MAX_NOTE} characters; keep it to a summary.", field="note"
        )
    organisation = session.get(Organisation, actor.organisation_id)
    assert organisation is not None
    review = SecurityReview(
        organisation_id=organisation.id, reviewed_at=now, reviewed_by_id=actor.id, note=note
    )
    session.add(review)
    organisation.last_security_review_at = now
    session.flush()
    audit(
        session,
        "security.reviewed",
        actor=actor,
        subject=("security_review", review.id),
        note=note[:500],
    )
    return review


# --- Recordings still held by Zoom ---------------------------------------------------------------
# Zoom's copy of a recorded class is deleted for good once companion's copy is verified
# (recordings/ingest.py, ZOOM_PURGE). One Zoom refused, or one still there a day after the class
# (copying stuck, Zoom not answering), is listed here until Zoom holds nothing of it.

HELD_AFTER = dt.timedelta(days=1)


@dataclass(frozen=True)
class HeldByZoom:
    recording: Any
    refused_at: dt.datetime | None
    reason: str


def held_by_zoom(session: Session, organisation_id: int, *, now: dt.datetime) -> list[HeldByZoom]:
    from ..recordings.models import Recording

    rows = session.scalars(
        select(Recording)
        .where(
            Recording.organisation_id == organisation_id,
            Recording.zoom_purged_at.is_(None),
            or_(Recording.zoom_refused_at.is_not(None), Recording.ended_at < now - HELD_AFTER),
        )
        .order_by(Recording.started_at, Recording.id)
    )
    return [
        HeldByZoom(
            recording=r,
            refused_at=r.zoom_refused_at,
            reason=r.zoom_held_reason or "not deleted in Zoom yet: a file is still being copied",
        )
        for r in rows
    ]
