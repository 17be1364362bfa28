"""The organisation's settings."""

from __future__ import annotations

import zoneinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..accounts.services import EMAIL_RE
from ..audit.services import record as audit
from ..errors import NotFound, ValidationError
from .models import Organisation

EDITABLE = (
    "name",
    "timezone",
    "safeguarding_contact_name",
    "safeguarding_contact_email",
    "safeguarding_contact_phone",
    "lead_as_alternative_host",
    "recording_retention_days",
    "audio_only_cutoff_minutes",
    "child_name_style",
)


def get(session: Session, organisation_id: int) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound("No such organisation.")
    return org


def first(session: Session) -> Organisation | None:
    return session.scalars(select(Organisation).order_by(Organisation.id)).first()


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the zone database such as "Europe" is not a zone.
        raise ValidationError(f"{name!r} is not a known time zone.", field="timezone") from None
    return name


def create(session: Session, *, name: str, timezone: str, **values: Any) -> Organisation:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the organisation a name.", field="name")
    org = Organisation(name=name, timezone=check_timezone(timezone), **values)
    session.add(org)
    session.flush()
    return org


def update(session: Session, *, actor: Any, organisation_id: int, **values: Any) -> Organisation:
    """Change settings; every value is checked before anything is written."""
    org = get(session, organisation_id)
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ValidationError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    if "name" in values:
        values["name"] = (values["name"] or "").strip()
        if not values["name"] or len(values["name"]) > 200:
            raise ValidationError("The name must be 1 to 200 characters.", field="name")
    if "timezone" in values:
        check_timezone(values["timezone"])
    if values.get("safeguarding_contact_email"):
        email = str(values["safeguarding_contact_email"]).strip().lower()
        if len(email) > 254 or not EMAIL_RE.match(email):
            raise ValidationError(
                f"{values['safeguarding_contact_email']!r} is not a valid email address.",
                field="safeguarding_contact_email",
            )
        values["safeguarding_contact_email"] = email
    if (
        "recording_retention_days" in values
        and not 1 <= int(values["recording_retention_days"]) <= 3650
    ):
        raise ValidationError(
            "Keep recordings for 1 to 3650 days.", field="recording_retention_days"
        )
    if (
        "audio_only_cutoff_minutes" in values
        and not 0 <= int(values["audio_only_cutoff_minutes"]) <= 7 * 24 * 60
    ):
        raise ValidationError(
            "The audio-only cut-off must be 0 minutes to 7 days before a class.",
            field="audio_only_cutoff_minutes",
        )
    if values.get("child_name_style", "full") not in ("full", "initial"):
        raise ValidationError("Choose full surnames or initials.", field="child_name_style")
    changed = {}
    for key, value in values.items():
        if getattr(org, key) != value:
            changed[key] = value
            setattr(org, key, value)
    if changed:
        audit(
            session,
            "organisation.updated",
            actor=actor,
            subject=("organisation", org.id),
            changed=sorted(changed),
        )
    session.flush()
    return org
