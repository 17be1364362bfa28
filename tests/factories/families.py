"""Families: enrolled and registered in Zoom as a request does it, withdrawn, retried; a family
session without a browser; and what was mailed to them."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.services import hash_token
from companion.families import enrolment, family_sessions, jobs, people, registrants
from companion.families.models import Family, FamilyContact, FamilyLink, FamilySession
from companion.mail.models import OutboxMessage

from .courses import NOW

LINK_RE = re.compile(r"https?://[^\s/]+(/f/[A-Za-z0-9_-]{43})\b")


def enrol(
    session: Session,
    zoom: Any,
    actor: Any,
    course: Any,
    *,
    first: str = "Amira",
    last: str = "Khan",
    contacts: Sequence[tuple[str, str]] = (("Rana Khan", "rana@example.net"),),
    now: dt.datetime = NOW,
) -> Family:
    family = enrolment.enrol(
        session,
        actor=actor,
        course_id=course.id,
        child_first_name=first,
        child_last_name=last,
        contacts=[people.ContactInput(n, e) for n, e in contacts],
        now=now,
    )
    zoom_now(session, zoom, family, actor)
    return family


def zoom_now(session: Session, zoom: Any, family: Family, actor: Any = None) -> Family:
    """What a request does once a service recorded Zoom work: commit, then (after the answer)
    run it with no transaction open. Returns the family, read again."""
    session.commit()
    jobs.work_family(current_app, family.id, zoom=zoom, actor_id=actor.id if actor else None)
    session.expire_all()
    return family


def withdraw(session: Session, zoom: Any, actor: Any, family: Family) -> Family:
    registrants.withdraw(
        session, actor=actor, course_id=family.course_id, family_id=family.id, now=NOW
    )
    return zoom_now(session, zoom, family, actor)


def retry(session: Session, zoom: Any, actor: Any, family: Family) -> Family:
    registrants.retry_zoom(
        session, actor=actor, course_id=family.course_id, family_id=family.id, now=NOW
    )
    return zoom_now(session, zoom, family, actor)


def principal(
    session: Session, contact: FamilyContact, now: dt.datetime = NOW
) -> family_sessions.FamilyPrincipal:
    """A family session for a parent without going through a browser."""
    link = FamilyLink(
        family_id=contact.family_id,
        contact_id=contact.id,
        token_hash=hash_token(secrets.token_urlsafe(32)),
        created_at=now,
    )
    session.add(link)
    session.flush()
    row = FamilySession(
        link_id=link.id,
        family_id=contact.family_id,
        contact_id=contact.id,
        token_hash=hash_token(secrets.token_urlsafe(32)),
        created_at=now,
        last_seen_at=now,
        expires_at=now + family_sessions.SESSION_IDLE,
    )
    session.add(row)
    session.flush()
    return family_sessions.FamilyPrincipal(row, contact.family, contact)


def outbox(session: Session, kind: str | None = None) -> list[OutboxMessage]:
    session.flush()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind is not None:
        query = query.where(OutboxMessage.kind == kind)
    return list(session.scalars(query))


def link_path(message: OutboxMessage) -> str:
    """The /f/<token> path of the personal link in a family-link message."""
    found = LINK_RE.findall(message.body_text)
    assert len(found) == 1, message.body_text
    return found[0]


def links_to(session: Session, email: str) -> list[str]:
    return [link_path(m) for m in outbox(session, "family.link") if m.to_address == email]
