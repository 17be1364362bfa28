"""The e-safety agreement: versioned text the admin edits, and each parent's acceptance.

Versions are never edited: saving new text makes a new version, and every parent is asked again
before their family page shows the join link and passcode. When no admin has written one yet,
the first version is companion's default text, built from the organisation's settings (its
safeguarding lead's name and contact details).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..access import ADMIN
from ..accounts.models import User
from ..audit.services import by_parent
from ..audit.services import record as audit
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..orgs.models import Organisation
from .models import AgreementAcceptance, AgreementVersion, FamilyContact

MAX_LENGTH = 20_000


def lead_contact_line(org: Organisation) -> str:
    """How to reach the safeguarding lead, in one sentence (empty parts left out)."""
    name = org.safeguarding_contact_name.strip()
    ways = [
        w
        for w in (org.safeguarding_contact_email.strip(), org.safeguarding_contact_phone.strip())
        if w
    ]
    if not name and not ways:
        return (
            "Ask your teacher for the name and contact details of our safeguarding lead "
            "(e-safety coordinator)."
        )
    who = name or "our safeguarding lead"
    how = " or ".join(ways) if ways else "through your teacher"
    return (
        f"Our safeguarding lead (e-safety coordinator) is {who}. You can reach them at {how}. "
        "Contact them straight away about any concern for a child's safety."
    )


def default_text(org: Organisation) -> str:
    """The policy's words for parents ("Online learning"), with this organisation's lead."""
    return (
        f"E-safety agreement for online classes with {org.name}\n"
        "\n"
        "Our classes take place on Zoom. To keep every child safe, the parent or carer of each "
        "child agrees that:\n"
        "\n"
        "1. An adult is present in the room throughout every online class.\n"
        "2. Your child joins from a shared room at home, such as a living room or a study, and "
        "not from a bedroom.\n"
        "3. Every class is recorded solely for safeguarding purposes. Recordings are kept "
        "confidential and are only looked at if there is a concern.\n"
        "4. Every class uses Zoom's waiting room, so the teacher admits each child by name. Join "
        "with your child's own link from your family page.\n"
        "5. Your family page, its Zoom link and the passcode are for your family only; please do "
        "not share them.\n"
        "6. If your child should join by audio only (camera off), tell us in advance, before the "
        "class starts, on your family page.\n"
        "\n" + lead_contact_line(org) + "\n"
    )


def latest(session: Session, organisation_id: int) -> AgreementVersion | None:
    return session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.organisation_id == organisation_id)
        .order_by(AgreementVersion.version.desc())
        .limit(1)
    ).first()


def current(session: Session, org: Organisation, *, now: dt.datetime) -> AgreementVersion:
    """The version parents accept now; the default text becomes version 1 on first use."""
    found = latest(session, org.id)
    if found is not None:
        return found
    # Two parents opening their pages at the same moment both write version 1: the second
    # insert does nothing. (Not a savepoint: on SQLite a page's read transaction can become a
    # write one only outside a savepoint; inside, two first visitors at once failed with
    # "database is locked".)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(AgreementVersion)
        .values(organisation_id=org.id, version=1, body=default_text(org), created_at=now)
        .on_conflict_do_nothing(index_elements=["organisation_id", "version"])
    )
    found = latest(session, org.id)
    assert found is not None
    return found


def publish(session: Session, *, actor: User, body: str, now: dt.datetime) -> AgreementVersion:
    """Save new text as the next version (parents are asked to accept it again)."""
    if actor.role != ADMIN:
        raise Forbidden("Only an admin can change the e-safety agreement.")
    text = (body or "").replace("\r\n", "\n").strip()
    if not text:
        raise ValidationError("Write the agreement's text.", field="body")
    if len(text) > MAX_LENGTH:
        raise ValidationError(f"Keep the agreement to {MAX_LENGTH:,} characters.", field="body")
    org = actor.organisation
    previous = current(session, org, now=now)
    if previous.body.replace("\r\n", "\n").strip() == text:
        raise Conflict(
            f"This is the text of version {previous.version} already; nothing was saved.",
            field="body",
        )
    version = AgreementVersion(
        organisation_id=org.id,
        version=previous.version + 1,
        body=text,
        created_at=now,
        created_by_id=actor.id,
    )
    session.add(version)
    session.flush()
    audit(
        session,
        "agreement.published",
        actor=actor,
        subject=("agreement", version.id),
        version=version.version,
    )
    return version


@dataclass(frozen=True)
class VersionRow:
    version: AgreementVersion
    acceptances: int
    author: str


def history(session: Session, organisation_id: int) -> list[VersionRow]:
    counts = dict(
        session.execute(
            select(AgreementAcceptance.agreement_id, func.count(AgreementAcceptance.id))
            .join(AgreementVersion, AgreementVersion.id == AgreementAcceptance.agreement_id)
            .where(AgreementVersion.organisation_id == organisation_id)
            .group_by(AgreementAcceptance.agreement_id)
        ).all()
    )
    rows = []
    for version in session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.organisation_id == organisation_id)
        .order_by(AgreementVersion.version.desc())
    ):
        author = "companion's default text"
        if version.created_by_id is not None:
            person = session.get(User, version.created_by_id)
            author = person.name if person else "a former admin"
        rows.append(VersionRow(version, int(counts.get(version.id, 0)), author))
    return rows


def acceptance(session: Session, contact_id: int, agreement_id: int) -> AgreementAcceptance | None:
    return session.scalars(
        select(AgreementAcceptance).where(
            AgreementAcceptance.contact_id == contact_id,
            AgreementAcceptance.agreement_id == agreement_id,
        )
    ).first()


def accept(
    session: Session,
    *,
    contact: FamilyContact,
    agreement_id: int,
    now: dt.datetime,
    ip: str = "",
) -> tuple[AgreementAcceptance, bool]:
    """Record that this parent accepted the version they were shown; True when new.

    The version must be the current one: if the admin published new text while the parent was
    reading, they are asked to read the new text rather than accept the old one.
    """
    family = contact.family
    version = current(session, family.organisation, now=now)
    if agreement_id != version.id:
        shown = session.get(AgreementVersion, agreement_id)
        if shown is None or shown.organisation_id != family.organisation_id:
            raise NotFound("No such agreement.")
        raise Conflict(
            "The agreement was updated while you were reading it. Please read the new version "
            "below and accept it."
        )
    existing = acceptance(session, contact.id, version.id)
    if existing is not None:
        return existing, False
    row = AgreementAcceptance(
        agreement_id=version.id,
        family_id=family.id,
        contact_id=contact.id,
        accepted_at=now,
        ip=ip[:64],
    )
    try:
        # A double click sends two acceptances at once; the second finds the first.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = acceptance(session, contact.id, version.id)
        if existing is None:  # pragma: no cover - the other writer rolled back
            raise
        return existing, False
    by_parent(
        session,
        "family.agreement_accepted",
        family=family,
        contact_id=contact.id,
        ip=ip,
        version=version.version,
    )
    return row, True
