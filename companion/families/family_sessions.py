"""Family sessions: a parent's link exchanged for a session of its own (the family cookie),
and the CSRF token of that session's forms."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..accounts.services import hash_token
from ..audit.services import by_parent
from ..courses.models import Course
from ..orgs.models import Organisation
from .errors import LinkGone, LinkInvalid
from .links import link_expires_at
from .models import Family, FamilyContact, FamilyLink, FamilySession

# A family session unused this long ends; opening the link again starts a new one.
SESSION_IDLE = dt.timedelta(days=30)
SESSION_TOUCH = dt.timedelta(minutes=5)


@dataclass
class FamilyPrincipal:
    """Who is on a family page: the session, its family and the one parent it belongs to."""

    session_row: FamilySession
    family: Family
    contact: FamilyContact
    # The session's expiry moved on with this request, so the cookie's should too.
    extended: bool = False

    @property
    def organisation_id(self) -> int:
        return self.family.organisation_id


def _session_expiry(course: Course, now: dt.datetime) -> dt.datetime:
    expiry = now + SESSION_IDLE
    ends = link_expires_at(course)
    return min(expiry, ends) if ends is not None else expiry


def open_link(
    session: Session, raw_token: str, *, now: dt.datetime, ip: str = ""
) -> tuple[FamilySession, str]:
    """Exchange a family link's token for a new family session; returns it and its raw id.

    A token that matches nothing raises :class:`LinkInvalid` (404); a replaced, revoked or
    expired one :class:`LinkGone` (410, and recorded). Neither says anything about a family.
    """
    if not raw_token or len(raw_token) > 200:
        raise LinkInvalid(_INVALID)
    link = session.scalars(
        select(FamilyLink).where(FamilyLink.token_hash == hash_token(raw_token))
    ).first()
    if link is None:
        raise LinkInvalid(_INVALID)
    family = link.family
    course = family.course
    expires = link_expires_at(course)
    problem = None
    if link.revoked_at is not None:
        problem = (
            "This link has been replaced by a newer one: please use the link in the most recent "
            "email from your teacher."
            if link.revoked_reason == "resent"
            else "This link has been withdrawn. If you think this is a mistake, please contact "
            "the teacher."
        )
    elif expires is not None and expires <= now:
        problem = "This link has expired: the course it was for ended some time ago."
    if problem is not None:
        by_parent(
            session,
            "family.link_refused",
            family=family,
            contact_id=link.contact_id,
            ip=ip,
            reason="revoked" if link.revoked_at is not None else "expired",
        )
        raise LinkGone(problem)
    link.last_used_at = now
    raw_sid = secrets.token_urlsafe(32)
    row = FamilySession(
        link_id=link.id,
        family_id=family.id,
        contact_id=link.contact_id,
        token_hash=hash_token(raw_sid),
        created_at=now,
        last_seen_at=now,
        expires_at=_session_expiry(course, now),
    )
    session.add(row)
    session.flush()
    by_parent(session, "family.link_opened", family=family, contact_id=link.contact_id, ip=ip)
    return row, raw_sid


_INVALID = (
    "This link is not valid. Check that you opened the whole link from your email; if it still "
    "does not work, ask the teacher to send you a new one."
)


def resolve_session(session: Session, raw_sid: str, *, now: dt.datetime) -> FamilyPrincipal | None:
    """The family session a cookie names, if it is still good."""
    if not raw_sid or len(raw_sid) > 200:
        return None
    # Every family page needs the link, the family with its course and organisation, and the
    # parent: one query with the session row rather than one after another. Joined by hand, not
    # with joinedload: an object keeps the loader options it was loaded with, and the
    # ``refresh(family, with_for_update=True)`` of a change would then lock through outer joins,
    # which PostgreSQL refuses.
    found = session.execute(
        select(FamilySession, FamilyLink, Family, FamilyContact, Course, Organisation)
        .join(FamilyLink, FamilyLink.id == FamilySession.link_id)
        .join(Family, Family.id == FamilySession.family_id)
        .join(FamilyContact, FamilyContact.id == FamilySession.contact_id)
        .join(Course, Course.id == Family.course_id)
        .join(Organisation, Organisation.id == Family.organisation_id)
        .where(FamilySession.token_hash == hash_token(raw_sid))
    ).first()
    if found is None:
        return None
    row, link, family, contact, course, org = found
    for obj, name, value in (
        (row, "link", link),
        (row, "family", family),
        (row, "contact", contact),
        (family, "course", course),
        (family, "organisation", org),
    ):
        set_committed_value(obj, name, value)
    if row.ended_at is not None or row.expires_at <= now:
        return None
    if row.link.revoked_at is not None:
        return None
    course = row.family.course
    expires = link_expires_at(course)
    if expires is not None and expires <= now:
        return None
    extended = False
    if now - row.last_seen_at >= SESSION_TOUCH:
        row.last_seen_at = now
        row.expires_at = _session_expiry(course, now)
        extended = True
        session.flush()
    return FamilyPrincipal(row, row.family, row.contact, extended)


def end_session(session: Session, principal: FamilyPrincipal, *, now: dt.datetime) -> None:
    principal.session_row.ended_at = now
    session.flush()


def form_token(principal: FamilyPrincipal, secret_key: str) -> str:
    """The CSRF token of a family session's forms: tied to that session, useless elsewhere."""
    return hmac.new(
        secret_key.encode(),
        b"family-form:" + principal.session_row.token_hash.encode(),
        hashlib.sha256,
    ).hexdigest()


def check_form_token(principal: FamilyPrincipal, secret_key: str, given: Any) -> bool:
    return isinstance(given, str) and hmac.compare_digest(form_token(principal, secret_key), given)
