from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, created_at


class Organisation(Base):
    """A school or charity; staff, courses and families belong to one."""

    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("recording_retention_days between 1 and 3650", name="retention_range"),
        CheckConstraint("audio_only_cutoff_minutes >= 0", name="audio_cutoff_positive"),
        CheckConstraint("child_name_style in ('full', 'initial')", name="child_name_style"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # The e-safety coordinator's contact, shown to parents on every family page.
    safeguarding_contact_name: Mapped[str] = mapped_column(String(200), default="")
    safeguarding_contact_email: Mapped[str] = mapped_column(String(254), default="")
    safeguarding_contact_phone: Mapped[str] = mapped_column(String(50), default="")
    # Course meetings get the safeguarding lead as alternative host when this is on.
    lead_as_alternative_host: Mapped[bool] = mapped_column(default=False)
    recording_retention_days: Mapped[int] = mapped_column(default=30)
    audio_only_cutoff_minutes: Mapped[int] = mapped_column(default=0)
    child_name_style: Mapped[str] = mapped_column(String(10), default="initial")
    created_at: Mapped[created_at]
    last_security_review_at: Mapped[dt.datetime | None]
