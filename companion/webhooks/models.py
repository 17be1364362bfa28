"""Every accepted Zoom webhook event, stored before Zoom gets its 2xx."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, state_column


class EventStatus(StrEnum):
    """Where a stored webhook event is in its handling."""

    # Waiting for the job.
    PENDING = "pending"
    # A job has it.
    PROCESSING = "processing"
    DONE = "done"
    # Kept for a later feature (attendance).
    UNHANDLED = "unhandled"
    # The handler failed; it will be tried again.
    FAILED = "failed"
    # Gave up.
    DEAD = "dead"


EVENT_STATUSES = tuple(EventStatus)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(
            "status in (" + ", ".join(f"'{s}'" for s in EVENT_STATUSES) + ")",
            name="status_known",
        ),
        Index("ix_webhook_events_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The same for every delivery of one event (companion.zoom.webhooks.dedupe_key).
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    event: Mapped[str] = mapped_column(String(100), index=True)
    # The raw body exactly as signed, so the event can be checked and re-read later.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime]
    status: Mapped[EventStatus] = mapped_column(
        state_column(EventStatus, 16), default=EventStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    next_attempt_at: Mapped[dt.datetime | None]
    claimed_until: Mapped[dt.datetime | None]
    processed_at: Mapped[dt.datetime | None]
    # Zoom sends an event again when our 2xx was late or lost; counted, never processed twice.
    redeliveries: Mapped[int] = mapped_column(default=0)
    last_redelivery_at: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.id} {self.event} {self.status}>"
