"""What happened in each class, as Zoom told it, and what companion concluded from it.

* :class:`ZoomMeeting` - one Zoom meeting instance (one class as it ran), tied to its class when
  companion knows the meeting; events of a meeting no course owns are kept here too (unmatched).
* :class:`AttendanceEvent` - one participant (or meeting) event, stored once per Zoom event
  (the webhook's redelivery key), with the time Zoom says it happened, never the arrival time.
* :class:`AdultConfirmation` - a parent said an adult is in the room for a class.
* :class:`ClassWarning` - "one child alone", a meeting that ran past its slot, ...
* :class:`EvidencePack` - each signed export of a class record (the audit trail has it too).
* :class:`EvidenceSettings` - the organisation's choices for all of the above.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..courses.models import ClassSession, Course
from ..db import Base, created_at, state_column, utcnow


class EventKind(StrEnum):
    """What a participant or meeting event says happened (from Zoom's meeting webhooks)."""

    MEETING_STARTED = "meeting_started"
    WAITING = "waiting"
    ADMITTED = "admitted"
    JOINED = "joined"
    LEFT = "left"
    MEETING_ENDED = "meeting_ended"


EVENT_KINDS = tuple(EventKind)
# Same-instant events are applied in this order (a join and a leave at one second: join first).
KIND_ORDER = {kind: i for i, kind in enumerate(EVENT_KINDS)}
EVENT_LABELS = {
    EventKind.MEETING_STARTED: "Meeting started",
    EventKind.WAITING: "Waiting room",
    EventKind.ADMITTED: "Admitted",
    EventKind.JOINED: "Joined",
    EventKind.LEFT: "Left",
    EventKind.MEETING_ENDED: "Meeting ended",
}


class Attendee(StrEnum):
    """Who a participant was to companion."""

    FAMILY = "family"  # came in through a family's registrant link
    GUEST = "guest"  # no family's link (flagged)
    HOST = "host"  # the meeting's host (the teacher's Zoom user)
    STAFF = "staff"  # another staff member (the lead as alternative host)
    NONE = ""  # meeting events name no participant


ROLES = tuple(Attendee)


class WarningKind(StrEnum):
    ONE_CHILD_ALONE = "one_child_alone"
    OVERRAN = "overran"


class WarningStatus(StrEnum):
    """open: still going on; closed: over; retracted: later (out-of-order) events showed it did
    not happen as first thought. A warning is never deleted."""

    OPEN = "open"
    CLOSED = "closed"
    RETRACTED = "retracted"


WARNING_KINDS = tuple(WarningKind)
WARNING_STATUSES = tuple(WarningStatus)
WARNING_LABELS = {
    WarningKind.ONE_CHILD_ALONE: "One child alone with one adult",
    WarningKind.OVERRAN: "Meeting ran past its slot",
}


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class EvidenceSettings(Base):
    """An organisation's evidence options (defaults apply while it has no row)."""

    __tablename__ = "evidence_settings"
    __table_args__ = (
        CheckConstraint("alone_grace_minutes between 0 and 120", name="grace_range"),
        CheckConstraint("confirm_from_minutes between 5 and 1440", name="confirm_range"),
    )

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    # False: a family without an adult's confirmation is shown "not confirmed - do not admit".
    list_unconfirmed: Mapped[bool] = mapped_column(default=True)
    # The "never one child alone" rule.
    one_child_rule: Mapped[bool] = mapped_column(default=True)
    # A child alone with one adult for less than this (children arriving or leaving one after
    # another) is not a warning.
    alone_grace_minutes: Mapped[int] = mapped_column(default=2)
    # How long before a class's start a parent can confirm an adult is present.
    confirm_from_minutes: Mapped[int] = mapped_column(default=60)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class ZoomMeeting(Base):
    """One meeting instance as Zoom reported it (its ``uuid``), and the class it was."""

    __tablename__ = "evidence_meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    zoom_uuid: Mapped[str] = mapped_column(String(128), unique=True)
    zoom_meeting_id: Mapped[int] = mapped_column(BigInteger, index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL"), index=True
    )
    class_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="SET NULL"), index=True
    )
    topic: Mapped[str] = mapped_column(String(300), default="")
    # The host's Zoom user id, from the event's meeting object.
    host_zoom_id: Mapped[str] = mapped_column(String(128), default="")
    # Zoom's start_time (meeting.started) and end_time (meeting.ended); None until they come.
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    first_event_at: Mapped[dt.datetime]
    last_event_at: Mapped[dt.datetime]
    # No class of companion's fits: kept and listed for the safeguarding lead.
    unmatched: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[created_at]

    course: Mapped[Course | None] = relationship()
    class_session: Mapped[ClassSession | None] = relationship()
    events: Mapped[list[AttendanceEvent]] = relationship(
        back_populates="meeting", order_by="AttendanceEvent.at", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<ZoomMeeting {self.id} {self.zoom_meeting_id} class={self.class_session_id}>"


class AttendanceEvent(Base):
    """One thing Zoom said happened in a meeting: someone waited, was admitted, joined, left."""

    __tablename__ = "attendance_events"
    __table_args__ = (
        CheckConstraint(f"kind in ({_in(EVENT_KINDS)})", name="kind_known"),
        CheckConstraint(f"role in ({_in(ROLES)})", name="role_known"),
        Index("ix_attendance_events_meeting_at", "meeting_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("evidence_meetings.id", ondelete="CASCADE"))
    # companion.zoom.webhooks.dedupe_key: a repeated event is recognised and stored once.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    # The stored webhook it came from (no foreign key: old webhook rows may be pruned).
    webhook_event_id: Mapped[int | None]
    kind: Mapped[EventKind] = mapped_column(state_column(EventKind, 16))
    # When it happened, by Zoom's clock (the participant's time, else the event's event_ts).
    at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]
    role: Mapped[Attendee] = mapped_column(state_column(Attendee, 8), default=Attendee.NONE)
    family_id: Mapped[int | None] = mapped_column(
        ForeignKey("families.id", ondelete="SET NULL"), index=True
    )
    registrant_id: Mapped[str] = mapped_column(String(64), default="")
    # Zoom's ids for the participant: participant_uuid, the per-meeting user_id, and the Zoom
    # account user id (participant_user_id / id) when they are signed in.
    participant_uuid: Mapped[str] = mapped_column(String(64), default="")
    zoom_user_id: Mapped[str] = mapped_column(String(64), default="")
    zoom_participant_id: Mapped[str] = mapped_column(String(128), default="")
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    # The leave reason Zoom gives, or the staff member this participant was recognised as.
    detail: Mapped[str] = mapped_column(String(300), default="")

    meeting: Mapped[ZoomMeeting] = relationship(back_populates="events")

    @property
    def person_key(self) -> str:
        """Who this is across the events of one meeting."""
        return (
            self.participant_uuid
            or (f"user:{self.zoom_user_id}" if self.zoom_user_id else "")
            or (f"reg:{self.registrant_id}" if self.registrant_id else "")
            or f"name:{self.display_name}"
        )

    def __repr__(self) -> str:
        return f"<AttendanceEvent {self.id} {self.kind} {self.role} {self.at:%H:%M:%S}>"


class AdultConfirmation(Base):
    """A parent confirmed an adult is in the room for one class (kept with time and parent)."""

    __tablename__ = "adult_confirmations"
    __table_args__ = (
        UniqueConstraint(
            "family_id", "class_session_id", name="uq_adult_confirmations_family_class"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    class_session_id: Mapped[int] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int] = mapped_column(ForeignKey("family_contacts.id"))
    confirmed_at: Mapped[dt.datetime]
    ip: Mapped[str] = mapped_column(String(64), default="")


class ClassWarning(Base):
    """Something about a class the teacher and the lead must know; kept on the class record."""

    __tablename__ = "class_warnings"
    __table_args__ = (
        CheckConstraint(f"kind in ({_in(WARNING_KINDS)})", name="kind_known"),
        CheckConstraint(f"status in ({_in(WARNING_STATUSES)})", name="status_known"),
        Index("ix_class_warnings_meeting_kind", "meeting_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL"), index=True
    )
    class_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="SET NULL"), index=True
    )
    meeting_id: Mapped[int] = mapped_column(ForeignKey("evidence_meetings.id", ondelete="CASCADE"))
    kind: Mapped[WarningKind] = mapped_column(state_column(WarningKind, 24))
    status: Mapped[WarningStatus] = mapped_column(
        state_column(WarningStatus, 12), default=WarningStatus.OPEN
    )
    period_start: Mapped[dt.datetime]
    period_end: Mapped[dt.datetime | None]
    # JSON: who was there (names, family ids, staff), for the record.
    detail: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    notified_at: Mapped[dt.datetime | None]

    meeting: Mapped[ZoomMeeting] = relationship()

    @property
    def details(self) -> dict[str, Any]:
        try:
            data = json.loads(self.detail or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def label(self) -> str:
        return WARNING_LABELS.get(self.kind, self.kind)


class EvidencePack(Base):
    """One signed export of a class record."""

    __tablename__ = "evidence_packs"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    class_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(200))


class EvidenceSigningKey(Base):
    """The public key an organisation's packs were signed with under one signing key id,
    recorded when that key first signed one, so the pack still verifies after the key has been
    rotated out (and its private half removed from the configuration). Not secret."""

    __tablename__ = "evidence_signing_keys"
    __table_args__ = (UniqueConstraint("organisation_id", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique constraint (organisation_id first) serves as the index for lookups.
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(64))
    # The raw 32-byte Ed25519 public key, base64.
    public_key: Mapped[str] = mapped_column(String(64))
    first_used_at: Mapped[created_at]
