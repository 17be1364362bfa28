"""Demo data for a new database: one organisation and one person in each role."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .accounts import services as accounts
from .accounts.models import User
from .orgs import services as orgs

DEMO_PEOPLE = (
    ("admin", "admin@example.org", "Avery Admin"),
    ("teacher", "teacher@example.org", "Tara Teacher"),
    ("safeguarding_lead", "lead@example.org", "Sam Safeguarding"),
)


def demo_password() -> str:
    # Four random words' worth of entropy, readable enough to type from the terminal.
    return "-".join(secrets.token_hex(3) for _ in range(4))


def create(
    session: Session, config: dict[str, Any], *, force: bool = False
) -> list[dict[str, str]]:
    """Create the demo organisation and staff; returns what was created with passwords."""
    if not force and (session.scalar(select(func.count(User.id))) or 0) > 0:
        return []
    org = orgs.create(
        session,
        name="Riverside Music Trust (demo)",
        timezone=config.get("DEFAULT_TIMEZONE") or "Europe/London",
        safeguarding_contact_name="Sam Safeguarding",
        safeguarding_contact_email="lead@example.org",
        safeguarding_contact_phone="020 7946 0000",
    )
    created = []
    for role, email, name in DEMO_PEOPLE:
        if accounts.find_user_by_email(session, email) is not None:
            continue
        password = demo_password()
        accounts.create_user(
            session, organisation_id=org.id, email=email, name=name, role=role, password=password
        )
        created.append({"role": role, "email": email, "password": password})
    return created
