"""The shapes of the families API (/api/v1/families, /api/v1/classes): requests and answers.

Each model validates or serialises its shape and is its schema in the OpenAPI document (see
:mod:`companion.api.shapes`). The views are in :mod:`.api`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import MISSING, Field
from pydantic.json_schema import JsonDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..api.shapes import (
    Answer,
    Body,
    Query,
    QueryId,
    Rule,
    Text,
    UtcTime,
    WholeNumber,
    one_of,
    refusal,
)
from ..courses.access import MAX_ID
from ..courses.shapes import ClassSession
from . import admit, agreement, links, models
from .models import AgreementAcceptance, AgreementVersion, AudioOnlyEvent
from .people import CHILD_NAME_MAX, CONTACT_NAME_MAX, MAX_CONTACTS, display_name, zoom_name

# Published limits that the services check (with a message that says why, or 404 for an id).
ID_LIMITS: JsonDict = {"minimum": 1, "maximum": MAX_ID}
CHILD_NAME_LIMITS: JsonDict = {"minLength": 1, "maxLength": CHILD_NAME_MAX}

# --- requests -----------------------------------------------------------------------------------


class EnrolContact(Body):
    name: str = Field(json_schema_extra={"minLength": 1, "maxLength": CONTACT_NAME_MAX})
    email: str = Field(json_schema_extra={"format": "email", "maxLength": 254})


class ContactList(Rule):
    """One or two ``{name, email}`` objects, each problem worded for the API."""

    missing: str = "Give contacts as a list of one or two {name, email} objects."

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, list) or not value:
            raise refusal(self.missing)
        if len(value) > MAX_CONTACTS:
            raise refusal(f"A family has at most {MAX_CONTACTS} parent/carer contacts.")
        for index, item in enumerate(value, start=1):
            if not isinstance(item, dict) or set(item) - set(EnrolContact.model_fields):
                raise refusal(f"Contact {index} must be an object with a name and an email.")
            if not isinstance(item.get("name"), str) or not isinstance(item.get("email"), str):
                raise refusal(f"Contact {index} needs a name and an email, both strings.")
        return value


class FamilyEnrol(Body):
    course_id: Annotated[int, WholeNumber(message="Give course_id, the course's id.")] = Field(
        json_schema_extra=ID_LIMITS
    )
    child_first_name: Annotated[str, Text("Give the child's first name as a string.")] = Field(
        json_schema_extra=CHILD_NAME_LIMITS
    )
    child_last_name: Annotated[str, Text("Give the child's surname (or initial) as a string.")] = (
        Field(
            description="The surname; only its initial is kept when the organisation names "
            "children by initial.",
            json_schema_extra=CHILD_NAME_LIMITS,
        )
    )
    contacts: Annotated[list[EnrolContact], ContactList()] = Field(
        min_length=1, max_length=MAX_CONTACTS
    )


class FamiliesOfCourse(Query):
    course_id: Annotated[int, QueryId("Give the course as ?course_id=<id>.")] = Field(
        json_schema_extra=ID_LIMITS
    )


# --- answers ------------------------------------------------------------------------------------


class ContactLink(Answer):
    """The parent's personal family link (never returned itself)."""

    state: str = one_of(
        ("active", "queued", "revoked", "none"),
        "`queued`: owed, and sent automatically once the course is safe and Zoom has "
        "registered the family.",
    )
    label: str
    sent_at: UtcTime | None
    last_used_at: UtcTime | None


class ContactAgreement(Answer):
    accepted_version: int | None
    accepted_at: UtcTime | None
    current: bool = Field(description="This parent accepted the current version.")


class FamilyContact(Answer):
    id: int
    position: int = one_of((1, 2))
    name: str
    email: str
    link: ContactLink
    agreement: ContactAgreement


class Child(Answer):
    first_name: str
    last_name: str = Field(
        description="The surname, or only its initial when the organisation names children "
        "by initial."
    )
    display_name: str
    zoom_name: str = Field(description="The name the child has in Zoom's waiting room.")


class FamilyZoom(Answer):
    state: str = one_of(
        models.ZOOM_STATES,
        "`pending`: waiting for Zoom (retried automatically); `failed`: Zoom refused; "
        "`cancelling`: withdrawn, Zoom not confirmed yet (retried automatically).",
    )
    label: str
    registrant_id: str | None
    error: str | None
    next_attempt_at: UtcTime | None


def _latest_acceptances(
    session: Session, family: models.Family
) -> dict[int, tuple[int, dt.datetime]]:
    found: dict[int, tuple[int, dt.datetime]] = {}
    for acceptance, version in session.execute(
        select(AgreementAcceptance, AgreementVersion)
        .join(AgreementVersion, AgreementVersion.id == AgreementAcceptance.agreement_id)
        .where(AgreementAcceptance.family_id == family.id)
        .order_by(AgreementVersion.version)
    ):
        found[acceptance.contact_id] = (version.version, acceptance.accepted_at)
    return found


class Family(Answer):
    id: int
    course_id: int
    child: Child
    status: str = one_of(models.STATUSES)
    enrolled_at: UtcTime
    withdrawn_at: UtcTime | None
    zoom: FamilyZoom
    agreement_version: int = Field(description="The current version of the e-safety agreement.")
    contacts: list[FamilyContact] = Field(min_length=1, max_length=MAX_CONTACTS)
    warnings: list[str] | MISSING = MISSING

    @classmethod
    def of(
        cls,
        session: Session,
        family: models.Family,
        now: dt.datetime,
        warnings: list[str] | MISSING = MISSING,
    ) -> Family:
        current = agreement.current(session, family.organisation, now=now)
        accepted = _latest_acceptances(session, family)
        contacts = []
        for contact in family.contacts:
            link = links.link_state(session, contact, now)
            version, at = accepted.get(contact.id, (None, None))
            contacts.append(
                FamilyContact(
                    id=contact.id,
                    position=contact.position,
                    name=contact.name,
                    email=contact.email,
                    link=ContactLink(
                        state=link.state,
                        label=link.label,
                        sent_at=link.sent_at,
                        last_used_at=link.last_used_at,
                    ),
                    agreement=ContactAgreement(
                        accepted_version=version,
                        accepted_at=at,
                        current=version == current.version,
                    ),
                )
            )
        return cls(
            id=family.id,
            course_id=family.course_id,
            child=Child(
                first_name=family.child_first_name,
                last_name=family.child_last_name,
                display_name=display_name(family),
                zoom_name=zoom_name(family),
            ),
            status=family.status,
            enrolled_at=family.created_at,
            withdrawn_at=family.withdrawn_at,
            zoom=FamilyZoom(
                state=family.zoom_state,
                label=models.ZOOM_STATE_LABELS[family.zoom_state],
                registrant_id=family.zoom_registrant_id,
                error=family.zoom_error or None,
                next_attempt_at=family.zoom_next_attempt_at,
            ),
            agreement_version=current.version,
            contacts=contacts,
            warnings=warnings,
        )


class FamilyList(Answer):
    families: list[Family]


class LinkResult(Answer):
    result: str = one_of(
        ("sent", "queued", "revoked"),
        "`queued`: the old link is dead; the new one is sent automatically once the course is "
        "safe and the family registered in Zoom.",
    )
    family: Family


class AdmitRow(Answer):
    family_id: int
    child_name: str
    zoom_name: str
    audio_only: bool
    registered_in_zoom: bool
    agreement_accepted: bool

    @classmethod
    def of(cls, row: admit.AdmitRow) -> AdmitRow:
        return cls(
            family_id=row.family.id,
            child_name=row.child_name,
            zoom_name=row.zoom_name,
            audio_only=row.audio_only,
            registered_in_zoom=row.registered,
            agreement_accepted=row.agreement_accepted,
        )


class AudioOnlyRequest(Answer):
    id: int
    family_id: int
    contact_id: int
    action: str = one_of(models.AUDIO_ACTIONS)
    scope: str = one_of(("class", "remaining"))
    class_id: int | None
    at: UtcTime

    @classmethod
    def of(cls, event: AudioOnlyEvent) -> AudioOnlyRequest:
        return cls(
            id=event.id,
            family_id=event.family_id,
            contact_id=event.contact_id,
            action=event.action,
            scope=event.scope,
            class_id=event.class_id,
            at=event.at,
        )


class ClassAudioOnly(Answer):
    class_: ClassSession = Field(serialization_alias="class")
    cutoff_at: UtcTime = Field(
        description="Requests and withdrawals for this class close at this time."
    )
    families: list[AdmitRow] = Field(
        description="The children expected (the list to admit), audio-only flagged."
    )
    events: list[AudioOnlyRequest] = Field(
        description="Every request and withdrawal that concerns this class, oldest first "
        "(`scope` `remaining`: made for all remaining classes)."
    )
