"""The safeguarding lead's own records: notes and the outcome of a concern, disclosures of a
recording outside the organisation, and the messages that told a family about an incident.

The audit trail records that each happened (who, when, which concern); the words stay here, so
the chained trail never holds a child's story.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, Date, ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..accounts.models import User
from ..db import Base, created_at
from ..families.models import Family
from ..recordings.models import Concern, Recording

OUTCOMES = {
    "no_further_action": "No further action",
    "handled_internally": "Handled within the organisation",
    "referred": "Referred to an outside agency",
    "staff_action": "Action taken about a member of staff",
}


class ConcernNote(Base):
    """A dated note the lead adds to a concern's chronology (append-only)."""

    __tablename__ = "safeguarding_notes"
    __table_args__ = (CheckConstraint("length(body) > 0", name="body_not_empty"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    concern_id: Mapped[int] = mapped_column(ForeignKey("concerns.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created_at]

    author: Mapped[User] = relationship()


class ConcernOutcome(Base):
    """How the lead closed a concern; a concern without one is open."""

    __tablename__ = "safeguarding_outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    concern_id: Mapped[int] = mapped_column(ForeignKey("concerns.id"), unique=True)
    decided_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    hold_released: Mapped[bool] = mapped_column(default=False)
    decided_at: Mapped[dt.datetime]

    decided_by: Mapped[User] = relationship()
    concern: Mapped[Concern] = relationship()


class Disclosure(Base):
    """A recording, or what it shows, shared outside the organisation (UK guidance: date,
    recipient, organisation, reason)."""

    __tablename__ = "recording_disclosures"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    recording_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("recordings.id"), index=True)
    concern_id: Mapped[int | None] = mapped_column(ForeignKey("concerns.id"), index=True)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_organisation: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    # What was shared: the file itself, a copy, or a description of its content.
    what: Mapped[str] = mapped_column(String(200), default="")
    disclosed_on: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[created_at]

    recording: Mapped[Recording] = relationship()
    recorded_by: Mapped[User] = relationship()


class FamilyNotice(Base):
    """The lead told a family about an incident: one message to each of its parents."""

    __tablename__ = "family_incident_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    concern_id: Mapped[int | None] = mapped_column(ForeignKey("concerns.id"), index=True)
    sent_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    recipients: Mapped[int]
    created_at: Mapped[created_at]

    family: Mapped[Family] = relationship()
    sent_by: Mapped[User] = relationship()
