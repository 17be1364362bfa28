"""Families (a child enrolled on a course, with one or two parents/carers), their personal links,
the e-safety agreement they accept, and their audio-only requests.

A family is the unit Zoom knows: one registrant per family, so one personal join link. A parent
is not a user: they hold a family link (emailed to them alone) that is exchanged for a family
session. Audio-only requests and agreement acceptances are append-only records.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..courses.models import ClassSession, Course
from ..db import Base, created_at, state_column
from ..orgs.models import Organisation


class FamilyStatus(StrEnum):
    ENROLLED = "enrolled"
    WITHDRAWN = "withdrawn"


STATUSES = tuple(FamilyStatus)


class RegistrantState(StrEnum):
    """Where the family's registrant is in Zoom (a family's ``zoom_state``)."""

    # Not (yet) a registrant in Zoom: the course's meeting is not in Zoom yet, or Zoom was down
    # or rate limiting; a job retries.
    PENDING = "pending"
    REGISTERED = "registered"
    # Zoom refused; a person must look.
    FAILED = "failed"
    # Withdrawn, and Zoom has not confirmed the cancellation yet; a job retries.
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


ZOOM_STATES = tuple(RegistrantState)
ZOOM_STATE_LABELS = {
    RegistrantState.PENDING: "Pending in Zoom",
    RegistrantState.REGISTERED: "Registered in Zoom",
    RegistrantState.FAILED: "Zoom refused it",
    RegistrantState.CANCELLING: "Cancelling in Zoom",
    RegistrantState.CANCELLED: "Cancelled in Zoom",
}
AUDIO_ACTIONS = ("request", "withdraw")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Family(Base):
    """A child on one course. A child on two courses is two families (two Zoom registrants)."""

    __tablename__ = "families"
    __table_args__ = (
        CheckConstraint(f"status in ({_in(STATUSES)})", name="status_known"),
        CheckConstraint(f"zoom_state in ({_in(ZOOM_STATES)})", name="zoom_state_known"),
        CheckConstraint("length(child_first_name) > 0", name="first_name_not_empty"),
        Index("ix_families_zoom_state_next_attempt", "zoom_state", "zoom_next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), index=True)
    child_first_name: Mapped[str] = mapped_column(String(64))
    # The surname, or only its initial, as the organisation's child_name_style says.
    child_last_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[FamilyStatus] = mapped_column(
        state_column(FamilyStatus, 16), default=FamilyStatus.ENROLLED
    )

    # Zoom. The registrant's email is made from zoom_ref (see registrants.registrant_email): never
    # a parent's address, unique per family, and how a retry finds a registrant it already made.
    zoom_ref: Mapped[str] = mapped_column(String(40), unique=True)
    zoom_state: Mapped[RegistrantState] = mapped_column(
        state_column(RegistrantState, 16), default=RegistrantState.PENDING
    )
    zoom_registrant_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The registrant's personal join link, encrypted (companion.sealing): the family's secret.
    join_url_encrypted: Mapped[str] = mapped_column(Text, default="")
    zoom_error: Mapped[str] = mapped_column(String(500), default="")
    zoom_attempts: Mapped[int] = mapped_column(default=0)
    zoom_next_attempt_at: Mapped[dt.datetime | None]
    zoom_claimed_until: Mapped[dt.datetime | None]

    created_at: Mapped[created_at]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    withdrawn_at: Mapped[dt.datetime | None]
    withdrawn_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    organisation: Mapped[Organisation] = relationship()
    course: Mapped[Course] = relationship()
    contacts: Mapped[list[FamilyContact]] = relationship(
        back_populates="family", order_by="FamilyContact.position"
    )

    @property
    def enrolled(self) -> bool:
        return self.status == FamilyStatus.ENROLLED

    def __repr__(self) -> str:
        return f"<Family {self.id} {self.status}/{self.zoom_state}>"


class FamilyContact(Base):
    """A parent or carer: a name and an address that only staff and this parent ever see."""

    __tablename__ = "family_contacts"
    __table_args__ = (
        UniqueConstraint("family_id", "position", name="uq_family_contacts_family_position"),
        CheckConstraint("position in (1, 2)", name="position_range"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    # A link is due to this parent but waits: the course is not safe, or Zoom has not registered
    # the family yet. Cleared when the link is sent (or revoked).
    link_owed_since: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]

    family: Mapped[Family] = relationship(back_populates="contacts")


class FamilyLink(Base):
    """One personal link sent to one parent. Only the token's hash is kept."""

    __tablename__ = "family_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("family_contacts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    # "resent": replaced by a new link; "revoked": withdrawn by staff.
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str] = mapped_column(String(16), default="")
    last_used_at: Mapped[dt.datetime | None]

    contact: Mapped[FamilyContact] = relationship()
    family: Mapped[Family] = relationship()


class FamilySession(Base):
    """A browser that opened a family link. The cookie holds a random id; only its hash is kept."""

    __tablename__ = "family_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("family_links.id"), index=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("family_contacts.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    # What the last action did, shown once on the next page (a flash message kept server-side:
    # the family side never writes the staff session cookie).
    notice: Mapped[str] = mapped_column(String(500), default="")
    notice_kind: Mapped[str] = mapped_column(String(16), default="")

    link: Mapped[FamilyLink] = relationship()
    family: Mapped[Family] = relationship()
    contact: Mapped[FamilyContact] = relationship()


class AgreementVersion(Base):
    """One version of the organisation's e-safety agreement; versions are never edited."""

    __tablename__ = "agreement_versions"
    __table_args__ = (
        UniqueConstraint(
            "organisation_id", "version", name="uq_agreement_versions_organisation_version"
        ),
        CheckConstraint("length(body) > 0", name="body_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    version: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created_at]
    # None for the default text companion wrote when no admin had written one.
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AgreementAcceptance(Base):
    """A parent accepted one version: who (which contact), when, which version."""

    __tablename__ = "agreement_acceptances"
    __table_args__ = (
        UniqueConstraint(
            "agreement_id", "contact_id", name="uq_agreement_acceptances_agreement_contact"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreement_versions.id"), index=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("family_contacts.id"))
    accepted_at: Mapped[dt.datetime]
    ip: Mapped[str] = mapped_column(String(64), default="")

    agreement: Mapped[AgreementVersion] = relationship()
    contact: Mapped[FamilyContact] = relationship()


class AudioOnlyEvent(Base):
    """A parent asked for (or withdrew) audio-only: for one class, or (class_id None) for every
    class whose cut-off had not passed when they asked. Append-only; the latest event that
    applies to a class decides (see audio_only.audio_only_state)."""

    __tablename__ = "audio_only_events"
    __table_args__ = (
        CheckConstraint(f"action in ({_in(AUDIO_ACTIONS)})", name="action_known"),
        Index("ix_audio_only_events_family_at", "family_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("family_contacts.id"))
    # A class deleted with a course that never reached Zoom takes its events with it.
    class_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime]

    contact: Mapped[FamilyContact] = relationship()
    cls: Mapped[ClassSession | None] = relationship()

    @property
    def scope(self) -> str:
        return "class" if self.class_id is not None else "remaining"


class ClassSummary(Base):
    """The teacher's summary email before a class was queued: at most one per class."""

    __tablename__ = "class_summaries"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="CASCADE"), unique=True
    )
    sent_at: Mapped[dt.datetime]
    expected: Mapped[int]
    audio_only: Mapped[int]
