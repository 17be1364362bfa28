from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, created_at

STATUSES = ("pending", "sent", "held")


class OutboxMessage(Base):
    """A message to one recipient. Written in the same transaction as the action that sends it,
    so a rolled-back action sends nothing and a committed one is never lost."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint("status in ('pending', 'sent', 'held')", name="status_known"),
        Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(254))
    to_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    # pending: waiting for SMTP; sent: accepted by SMTP; held: kept in the outbox (no SMTP set).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[created_at]
    sent_at: Mapped[dt.datetime | None]
