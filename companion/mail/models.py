from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, created_at, state_column


class MessageStatus(StrEnum):
    """Where an outbox message is (see OutboxMessage.status)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    HELD = "held"
    UNCERTAIN = "uncertain"


STATUSES = tuple(MessageStatus)
# What the admin reads in the outbox for each status.
STATUS_LABELS = {
    MessageStatus.PENDING: "waiting to be sent",
    MessageStatus.SENDING: "being sent",
    MessageStatus.SENT: "sent",
    MessageStatus.HELD: "held (no SMTP server)",
    MessageStatus.UNCERTAIN: "may have been sent",
}


class OutboxMessage(Base):
    """A message to one recipient. Written in the same transaction as the action that sends it,
    so a rolled-back action sends nothing and a committed one is never lost."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(
            "status in (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status_known"
        ),
        Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(254))
    to_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    # pending: waiting for SMTP; sending: handed to the server, answer not yet recorded; sent:
    # accepted by SMTP; held: kept in the outbox (no SMTP set); uncertain: the worker stopped
    # while sending, so it may have been sent, and only the admin sends it again (jobs.py).
    status: Mapped[MessageStatus] = mapped_column(
        state_column(MessageStatus, 16), default=MessageStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    # The work engine's claim (companion.work): one worker holds the message until then.
    claimed_until: Mapped[dt.datetime | None]
    # When the message was last handed to the SMTP server.
    sending_at: Mapped[dt.datetime | None]
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[created_at]
    sent_at: Mapped[dt.datetime | None]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)
