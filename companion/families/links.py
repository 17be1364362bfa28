"""Family links: each parent's personal link to the family page, sent, re-sent and revoked, and
the parents' contacts it goes to.

A family link goes to one parent alone, holds a 256-bit token of which only the hash is kept,
and is only sent while the course is safe (:func:`companion.courses.verification.course_is_safe`)
and the family has its Zoom link; until then it is owed and sent as soon as both hold.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .. import mail, policy
from ..accounts.models import User
from ..accounts.services import hash_token
from ..audit.services import record as audit
from ..courses import verification
from ..courses.models import Course, SafetyState, ZoomState
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from . import agreement
from .access import course_to_change, get_course, get_family
from .models import Family, FamilyContact, FamilyLink, FamilySession, FamilyStatus, RegistrantState
from .people import ContactInput, clean_contacts, display_name

# After the course ends its links still open a page that says so (and shows the safeguarding
# lead) for this long; then they have expired.
LINK_GRACE = dt.timedelta(days=30)


def link_expires_at(course: Course) -> dt.datetime | None:
    """When a course's family links stop opening anything: a while after its last class (or its
    cancellation), so parents can still read that it ended and how to reach the lead."""
    if course.zoom_state == ZoomState.CANCELLED and course.cancelled_at is not None:
        return course.cancelled_at + LINK_GRACE
    if course.ends_at is not None:
        return course.ends_at + LINK_GRACE
    return None


def course_over(course: Course, now: dt.datetime) -> bool:
    return not course.is_open or (course.ends_at is not None and course.ends_at <= now)


def link_blocker(family: Family, now: dt.datetime) -> str | None:
    """Why a link cannot be sent to this family now, or None when it can."""
    course = family.course
    if not family.enrolled:
        return "The family is withdrawn."
    if course_over(course, now):
        return "The course is over."
    if family.zoom_state != RegistrantState.REGISTERED:
        return "Waiting for Zoom to register the family."
    if not verification.course_is_safe(course):
        return "Waiting until Zoom confirms the course's safety settings."
    return None


def base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def _active_links(session: Session, contact_id: int) -> list[FamilyLink]:
    return list(
        session.scalars(
            select(FamilyLink).where(
                FamilyLink.contact_id == contact_id, FamilyLink.revoked_at.is_(None)
            )
        )
    )


def _revoke_links(session: Session, contact: FamilyContact, now: dt.datetime, reason: str) -> int:
    links = _active_links(session, contact.id)
    for link in links:
        link.revoked_at = now
        link.revoked_reason = reason
    if links:
        session.execute(
            update(FamilySession)
            .where(
                FamilySession.link_id.in_([link.id for link in links]),
                FamilySession.ended_at.is_(None),
            )
            .values(ended_at=now)
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    return len(links)


def _issue_link(
    session: Session,
    family: Family,
    contact: FamilyContact,
    *,
    now: dt.datetime,
    actor: User | None,
    reason: str,
) -> None:
    _revoke_links(session, contact, now, "resent")
    raw = secrets.token_urlsafe(32)
    session.add(
        FamilyLink(
            family_id=family.id, contact_id=contact.id, token_hash=hash_token(raw), created_at=now
        )
    )
    contact.link_owed_since = None
    # One message to this parent alone; the other parent (if any) gets their own.
    mail.send(
        session,
        kind="family.link",
        to_address=contact.email,
        to_name=contact.name,
        organisation_id=family.organisation_id,
        family=family,
        course=family.course,
        organisation=family.organisation,
        child=display_name(family),
        url=f"{base_url()}/f/{raw}",
        lead_line=agreement.lead_contact_line(family.organisation),
    )
    audit(
        session,
        "family.link_issued",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        reason=reason,
    )
    session.flush()


def deliver_owed_links(
    session: Session, family: Family, *, now: dt.datetime, actor: User | None = None
) -> int:
    """Send every link owed to this family's parents, if links may be sent now."""
    if link_blocker(family, now) is not None:
        return 0
    sent = 0
    for contact in family.contacts:
        if contact.link_owed_since is not None:
            _issue_link(session, family, contact, now=now, actor=actor, reason="owed")
            sent += 1
    return sent


def families_owed_links(session: Session, now: dt.datetime, limit: int = 500) -> list[int]:
    """Families with a link owed that could go now (the job's query; the rest keep waiting)."""
    return list(
        session.scalars(
            select(Family.id)
            .join(Course, Course.id == Family.course_id)
            .join(FamilyContact, FamilyContact.family_id == Family.id)
            .where(
                FamilyContact.link_owed_since.is_not(None),
                Family.status == FamilyStatus.ENROLLED,
                Family.zoom_state == RegistrantState.REGISTERED,
                Course.zoom_state == ZoomState.CREATED,
                Course.safety_state == SafetyState.SAFE,
                or_(Course.ends_at.is_(None), Course.ends_at > now),
            )
            .distinct()
            .order_by(Family.id)
            .limit(limit)
        )
    )


def _contact_of(family: Family, contact_id: int) -> FamilyContact:
    for contact in family.contacts:
        if contact.id == contact_id:
            return contact
    raise NotFound("No such parent/carer in this family.")


def _link_target(
    session: Session, actor: User, course_id: int, family_id: int, contact_id: int
) -> tuple[Family, FamilyContact]:
    course = get_course(session, actor, course_id)
    if not policy.may_manage_links(actor, course):
        raise Forbidden(
            "Only the course's teacher, an admin or the safeguarding lead can manage links."
        )
    family = get_family(session, actor, course.id, family_id)
    return family, _contact_of(family, contact_id)


def resend_link(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    contact_id: int,
    now: dt.datetime,
) -> str:
    """A new link for one parent; the old one stops working at once. Returns "sent", or
    "queued" when the course is not safe yet (or Zoom has not registered the family)."""
    family, contact = _link_target(session, actor, course_id, family_id, contact_id)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is withdrawn; no link can be sent.")
    if course_over(family.course, now):
        raise Conflict("The course is over; its family links are no longer sent.")
    revoked = _revoke_links(session, contact, now, "resent")
    contact.link_owed_since = now
    if revoked:
        _audit_revoked(session, family, contact, actor, reason="resent", links=revoked)
    if link_blocker(family, now) is None:
        _issue_link(session, family, contact, now=now, actor=actor, reason="resent")
        return "sent"
    audit(
        session,
        "family.link_queued",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        waiting_for=link_blocker(family, now),
    )
    session.flush()
    return "queued"


def revoke_link(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    contact_id: int,
    now: dt.datetime,
) -> int:
    """Stop one parent's link (and every browser it signed in) now; nothing new is sent."""
    family, contact = _link_target(session, actor, course_id, family_id, contact_id)
    owed = contact.link_owed_since is not None
    revoked = _revoke_links(session, contact, now, "revoked")
    contact.link_owed_since = None
    if not revoked and not owed:
        raise Conflict("This parent has no working link to revoke.")
    _audit_revoked(session, family, contact, actor, reason="revoked", links=revoked)
    session.flush()
    return revoked


def _audit_revoked(
    session: Session,
    family: Family,
    contact: FamilyContact,
    actor: User | None,
    *,
    reason: str,
    links: int,
) -> None:
    audit(
        session,
        "family.link_revoked",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        reason=reason,
        links=links,
    )


def save_contact(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    position: int,
    name: Any,
    email: Any,
    now: dt.datetime,
) -> tuple[FamilyContact, str]:
    """Correct a parent's name or address, or add the second parent/carer.

    A new address gets a new link and the old link dies at once (a mistyped address may have
    reached someone else). Returns the contact and "unchanged", "saved" or "link sent"/"link
    queued".
    """
    course = course_to_change(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is withdrawn; their contacts can no longer change.")
    if position not in (1, 2):
        raise NotFound("A family has a first and a second parent/carer only.")
    existing = {c.position: c for c in family.contacts}
    if position == 2 and 1 not in existing:  # pragma: no cover - every family has a first
        raise Conflict("Add the first parent/carer first.")
    try:
        (person,) = clean_contacts([ContactInput(str(name or ""), str(email or ""))])
    except ValidationError as exc:
        # The form has one person's fields: "name" and "email".
        raise ValidationError(exc.message, field=(exc.field or "").split("_")[-1]) from None
    other = existing.get(2 if position == 1 else 1)
    if other is not None and other.email == person.email:
        raise ValidationError(
            "The two parents/carers need different email addresses: each gets a personal link.",
            field="email",
        )
    contact = existing.get(position)
    if contact is not None and (contact.name, contact.email) == (person.name, person.email):
        return contact, "unchanged"
    new_address = contact is None or contact.email != person.email
    if contact is None:
        contact = FamilyContact(position=2, name=person.name, email=person.email, created_at=now)
        family.contacts.append(contact)
        session.flush()
    else:
        if new_address:
            revoked = _revoke_links(session, contact, now, "revoked")
            if revoked:
                _audit_revoked(
                    session, family, contact, actor, reason="address changed", links=revoked
                )
        contact.name, contact.email = person.name, person.email
    audit(
        session,
        "family.contact_saved",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        position=position,
        new_address=new_address,
    )
    if not new_address:
        session.flush()
        return contact, "saved"
    contact.link_owed_since = now
    session.flush()
    if course_over(family.course, now):
        contact.link_owed_since = None
        return contact, "saved"
    sent = deliver_owed_links(session, family, now=now, actor=actor)
    return contact, "link sent" if sent else "link queued"


@dataclass(frozen=True)
class LinkState:
    state: str  # "active", "queued", "revoked", "none"
    label: str
    sent_at: dt.datetime | None
    last_used_at: dt.datetime | None


def link_state(session: Session, contact: FamilyContact, now: dt.datetime) -> LinkState:
    return link_states(session, [contact], now)[contact.id]


def link_states(
    session: Session, contacts: Sequence[FamilyContact], now: dt.datetime
) -> dict[int, LinkState]:
    """Contact id -> the state of that parent's link, for many parents in one query (a page
    of families asks for all of them at once)."""
    if not contacts:
        return {}
    latest: dict[int, FamilyLink] = {}
    # Newest first, so the first link seen for a contact is its latest.
    for link in session.scalars(
        select(FamilyLink)
        .where(FamilyLink.contact_id.in_({c.id for c in contacts}))
        .order_by(FamilyLink.created_at.desc(), FamilyLink.id.desc())
    ):
        latest.setdefault(link.contact_id, link)
    return {c.id: _link_state_of(c, latest.get(c.id), now) for c in contacts}


def _link_state_of(
    contact: FamilyContact, latest: FamilyLink | None, now: dt.datetime
) -> LinkState:
    if contact.link_owed_since is not None:
        why = link_blocker(contact.family, now) or "About to be sent."
        return LinkState("queued", f"Waiting to be sent: {why}", None, None)
    if latest is not None and latest.revoked_at is None:
        return LinkState("active", "Sent", latest.created_at, latest.last_used_at)
    if latest is not None:
        return LinkState("revoked", "Revoked", latest.created_at, latest.last_used_at)
    return LinkState("none", "Not sent", None, None)
