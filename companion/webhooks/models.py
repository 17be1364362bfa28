"""Every accepted Zoom webhook event, stored before Zoom gets its 2xx."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

# pending: waiting for the job; processing: a job has it; done: handled; unhandled: kept for a
# later feature (attendance); failed: the handler failed and it will be tried again; dead: gave up.
EVENT_STATUSES = ("pending", "processing", "done", "unhandled", "failed", "dead")


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
    status: Mapped[str] = mapped_column(String(16), default="pending")
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
