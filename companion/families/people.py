"""The child and the parents/carers as staff give them: names and addresses checked and
cleaned, and how a child is named on pages and in Zoom."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..accounts.services import EMAIL_RE
from ..errors import ValidationError
from ..orgs.models import Organisation
from .models import Family

MAX_CONTACTS = 2
# Zoom's limit for a registrant's first and last name.
CHILD_NAME_MAX = 64
CONTACT_NAME_MAX = 200


@dataclass(frozen=True)
class ContactInput:
    name: str
    email: str


def clean_text(value: Any, *, field: str, label: str, max_len: int) -> str:
    text = " ".join(str(value if value is not None else "").split())
    if not text:
        raise ValidationError(f"Give the {label}.", field=field)
    if len(text) > max_len:
        raise ValidationError(f"Keep the {label} to {max_len} characters.", field=field)
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise ValidationError(f"The {label} contains characters that cannot be shown.", field=field)
    return text


def clean_email(value: Any, *, field: str, label: str = "email address") -> str:
    raw = str(value if value is not None else "").strip()
    if not raw:
        raise ValidationError(f"Give the {label}.", field=field)
    email = raw.lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise ValidationError(f"“{raw[:100]}” is not a valid email address.", field=field)
    return email


def surname_label(org: Organisation) -> str:
    return "child's surname initial" if org.child_name_style == "initial" else "child's surname"


def child_names(org: Organisation, first: Any, last: Any) -> tuple[str, str]:
    """The child's first name and surname, or only its initial when the organisation says so
    (then only the initial is ever stored, or sent to Zoom)."""
    first_name = clean_text(
        first, field="child_first_name", label="child's first name", max_len=CHILD_NAME_MAX
    )
    last_name = clean_text(
        last, field="child_last_name", label=surname_label(org), max_len=CHILD_NAME_MAX
    )
    if org.child_name_style == "initial":
        letter = next((ch for ch in last_name if ch.isalpha()), None)
        if letter is None:
            raise ValidationError(
                "Give the first letter of the child's surname.", field="child_last_name"
            )
        last_name = letter.upper()
    return first_name, last_name


def contact_label(position: int) -> str:
    return "parent/carer" if position == 1 else "second parent/carer"


def clean_contacts(contacts: Sequence[ContactInput | None]) -> list[ContactInput]:
    """One or two parents/carers, by position: the first is required, the second optional.

    Fields are named contact1_* and contact2_* (the API and the forms show them there)."""
    if len(contacts) > MAX_CONTACTS and any(
        c is not None and (c.name or c.email) for c in contacts[MAX_CONTACTS:]
    ):
        raise ValidationError(
            f"A family has at most {MAX_CONTACTS} parent/carer contacts.", field="contacts"
        )
    cleaned: list[ContactInput] = []
    for position in range(1, MAX_CONTACTS + 1):
        given = contacts[position - 1] if position <= len(contacts) else None
        blank = given is None or not (
            str(given.name or "").strip() or str(given.email or "").strip()
        )
        if blank:
            if position == 1:
                raise ValidationError(
                    "Give the name and email of at least one parent or carer.",
                    field="contact1_name",
                )
            continue
        assert given is not None
        who = contact_label(position)
        name = clean_text(
            given.name,
            field=f"contact{position}_name",
            label=f"{who}'s name",
            max_len=CONTACT_NAME_MAX,
        )
        email = clean_email(
            given.email, field=f"contact{position}_email", label=f"{who}'s email address"
        )
        cleaned.append(ContactInput(name, email))
    if len(cleaned) == 2 and cleaned[0].email == cleaned[1].email:
        raise ValidationError(
            "The two parents/carers need different email addresses: each gets a personal link.",
            field="contact2_email",
        )
    return cleaned


def name_key(first: str, last: str) -> tuple[str, str]:
    return (first.casefold(), last.casefold())


def display_name(family: Family) -> str:
    last = family.child_last_name
    return (
        f"{family.child_first_name} {last}."
        if len(last) == 1
        else (f"{family.child_first_name} {last}")
    )


def zoom_name(family: Family) -> str:
    """The name the child has in Zoom (and so in the waiting room)."""
    return f"{family.child_first_name} {family.child_last_name}"
