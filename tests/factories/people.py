"""Organisations and their staff, with sensible defaults; override only what a test is about."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.accounts import twofactor
from companion.accounts.models import User
from companion.orgs.models import Organisation

from .. import twofactor_helpers

PASSWORD = "correct horse battery 42"
_seq = itertools.count(1)

# argon2 is deliberately slow; tests reuse one hash of the shared password.
_password_hash: str | None = None


def password_hash() -> str:
    global _password_hash
    if _password_hash is None:
        _password_hash = accounts.hash_password(PASSWORD)
    return _password_hash


def organisation(session: Session, **overrides: Any) -> Organisation:
    values: dict[str, Any] = {
        "name": f"Test Music School {next(_seq)}",
        "timezone": "Europe/London",
        "safeguarding_contact_name": "Sam Lead",
        "safeguarding_contact_email": "lead@example.org",
    }
    values.update(overrides)
    org = Organisation(**values)
    session.add(org)
    session.flush()
    return org


def user(session: Session, org: Organisation, **overrides: Any) -> User:
    n = next(_seq)
    values: dict[str, Any] = {
        "organisation_id": org.id,
        "email": f"person{n}@example.org",
        "name": f"Person {n}",
        "role": "teacher",
        "password_hash": password_hash(),
        "active": True,
    }
    if overrides.get("role", values["role"]) in twofactor.REQUIRED_ROLES:
        # Leads and admins must sign in with two factors; the sign-in helpers enter the code.
        values.update(twofactor_helpers.enrolled_fields())
    values.update(overrides)
    person = User(**values)
    session.add(person)
    session.flush()
    return person
