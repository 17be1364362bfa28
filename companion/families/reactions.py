"""What families does when a course changes: the receivers of the course signals
(:mod:`companion.signals`), connected by :func:`companion.families.init_app`.

Each gets the Course as sender and the change's session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import mail
from ..courses import timetable
from ..courses.models import ClassSession, Course
from ..db import utcnow
from . import agreement
from .access import families_of
from .links import deliver_owed_links
from .models import Family, FamilyContact, FamilyLink, FamilyStatus
from .people import display_name


def on_safety_changed(
    course: Course, *, session: Session, after: str | None = None, **_details: Any
) -> None:
    """The course became safe: send every link that was waiting for it."""
    if after != "safe":
        return
    # The check that found the course safe stamped its time; links carry that time.
    now = course.last_verified_at or utcnow()
    for family in families_of(session, course.id, enrolled_only=True):
        if any(c.link_owed_since is not None for c in family.contacts):
            deliver_owed_links(session, family, now=now)


def _parents_with_links(session: Session, course: Course) -> list[tuple[Family, FamilyContact]]:
    """Parents of enrolled families who hold a working link (the others have nothing to open)."""
    rows = session.execute(
        select(Family, FamilyContact)
        .join(FamilyContact, FamilyContact.family_id == Family.id)
        .join(FamilyLink, FamilyLink.contact_id == FamilyContact.id)
        .where(
            Family.course_id == course.id,
            Family.status == FamilyStatus.ENROLLED,
            FamilyLink.revoked_at.is_(None),
        )
        .distinct()
        .order_by(Family.id, FamilyContact.position)
    ).all()
    return [(family, contact) for family, contact in rows]


def _tell_parents(session: Session, course: Course, kind: str, **facts: Any) -> None:
    for family, contact in _parents_with_links(session, course):
        mail.send(
            session,
            kind=kind,
            to_address=contact.email,
            to_name=contact.name,
            organisation_id=course.organisation_id,
            course=course,
            child=display_name(family),
            lead_line=agreement.lead_contact_line(family.organisation),
            **facts,
        )


def _class_change(course: Course, cls: ClassSession) -> dict[str, Any]:
    """A changed class as the parents' message shows it: local times, cancelled or moved."""
    return {
        "start": timetable.local_time(course, cls.starts_at),
        "end": timetable.local_time(course, cls.ends_at),
        "cancelled": not cls.takes_place,
        "was": (
            timetable.local_time(course, cls.original_starts_at)
            if cls.original_starts_at is not None
            else None
        ),
    }


def on_schedule_changed(
    course: Course,
    *,
    session: Session,
    classes: Sequence[ClassSession] = (),
    **_details: Any,
) -> None:
    """A class was moved or cancelled (or the series changed): parents are told."""
    now = utcnow()
    changed = [c for c in classes if c.ends_at > now]
    if not changed:
        return
    _tell_parents(
        session,
        course,
        "family.schedule_changed",
        classes=[_class_change(course, c) for c in sorted(changed, key=lambda c: c.starts_at)],
    )


def on_course_cancelled(course: Course, *, session: Session, **_details: Any) -> None:
    _tell_parents(session, course, "family.course_cancelled")


def on_passcode_rotated(course: Course, *, session: Session, **_details: Any) -> None:
    _tell_parents(session, course, "family.passcode_changed")
