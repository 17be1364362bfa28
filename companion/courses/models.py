"""Courses (one recurring Zoom meeting each) and their classes (the meeting's occurrences)."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..accounts.models import User
from ..db import Base, created_at, state_column, utcnow
from ..orgs.models import Organisation


class ZoomState(StrEnum):
    """Where the course's meeting is in Zoom."""

    # Saved, not (yet) in Zoom: Zoom was down, slow or rate limiting; a job retries it.
    PENDING = "pending"
    CREATED = "created"
    # Zoom refused the meeting; a person must change something and try again.
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


ZOOM_STATES = tuple(ZoomState)
ZOOM_STATE_LABELS = {
    ZoomState.PENDING: "Pending in Zoom",
    ZoomState.CREATED: "In Zoom",
    ZoomState.FAILED: "Zoom refused it",
    ZoomState.CANCELLED: "Cancelled",
    ZoomState.CLOSED: "Finished and closed in Zoom",
}


class ZoomWork(StrEnum):
    """What companion still has to tell Zoom (the work engine's queue, see courses.zoomwork).

    What to send is derived from the course as it is in the database when the work runs, so
    re-running a step after a crash sends the same thing again.
    """

    NONE = ""
    # Put the meeting in Zoom (adopting one an earlier attempt made).
    CREATE = "create"
    # Make the meeting what the course says, repair and verify it.
    SYNC = "sync"
    # Delete the meeting of a cancelled or closed course.
    DELETE = "delete"


ZOOM_WORK = tuple(ZoomWork)
ZOOM_WORK_LABELS = {
    ZoomWork.CREATE: "Putting the course into Zoom",
    ZoomWork.SYNC: "Sending the latest change to Zoom and checking it",
    ZoomWork.DELETE: "Deleting the meeting in Zoom",
}


class SafetyState(StrEnum):
    """Whether Zoom was seen to apply every enforced setting (courses/safety.py)."""

    UNVERIFIED = "unverified"
    SAFE = "safe"
    NOT_SAFE = "not_safe"


SAFETY_STATES = tuple(SafetyState)
SAFETY_LABELS = {
    SafetyState.UNVERIFIED: "Not verified yet",
    SafetyState.SAFE: "Safe",
    SafetyState.NOT_SAFE: "Not safe",
}


class ClassStatus(StrEnum):
    SCHEDULED = "scheduled"
    MOVED = "moved"
    CANCELLED = "cancelled"


CLASS_STATUSES = tuple(ClassStatus)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Course(Base):
    """A course: weekly classes at a fixed local time, run as one type-8 Zoom meeting.

    The series fields describe the meeting as it is now defined in Zoom; after a change of the
    whole series they describe the new series (earlier classes stay as they were).
    """

    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint(f"zoom_state in ({_in(ZOOM_STATES)})", name="zoom_state_known"),
        CheckConstraint(f"safety_state in ({_in(SAFETY_STATES)})", name="safety_state_known"),
        CheckConstraint(f"zoom_work in ({_in(ZOOM_WORK)})", name="zoom_work_known"),
        CheckConstraint("duration_minutes between 1 and 1440", name="duration_range"),
        CheckConstraint("(class_count is null) <> (end_date is null)", name="count_or_end_date"),
        CheckConstraint("class_count is null or class_count between 1 and 60", name="count_range"),
        CheckConstraint("length(title) > 0", name="title_not_empty"),
        Index("ix_courses_zoom_state_next_attempt", "zoom_state", "zoom_next_attempt_at"),
        Index("ix_courses_zoom_work_next_attempt", "zoom_work", "zoom_next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    first_date: Mapped[dt.date] = mapped_column(Date)
    # Weekday keys in week order, comma separated: "mon,thu".
    weekdays: Mapped[str] = mapped_column(String(40))
    start_time: Mapped[dt.time] = mapped_column(Time)
    duration_minutes: Mapped[int]
    class_count: Mapped[int | None]
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    # End of the last class that still takes place; drives the checks and closing the meeting.
    ends_at: Mapped[dt.datetime | None]

    # Zoom. The host is the Zoom user the meeting was created under.
    zoom_user_id: Mapped[str] = mapped_column(String(128))
    zoom_meeting_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    zoom_state: Mapped[ZoomState] = mapped_column(
        state_column(ZoomState, 16), default=ZoomState.PENDING
    )
    zoom_error: Mapped[str] = mapped_column(String(500), default="")
    zoom_attempts: Mapped[int] = mapped_column(default=0)
    zoom_next_attempt_at: Mapped[dt.datetime | None]
    # Whoever is doing this course's Zoom work right now (a request's inline run or the worker)
    # holds it until this time (work.claim).
    zoom_claimed_until: Mapped[dt.datetime | None]
    # The Zoom work still to do (ZOOM_WORK; "" for none). Each change a person makes bumps
    # zoom_work_seq, so a step that prepared an older version leaves the work for another run.
    zoom_work: Mapped[ZoomWork] = mapped_column(state_column(ZoomWork, 16), default=ZoomWork.NONE)
    zoom_work_seq: Mapped[int] = mapped_column(default=0)
    # The last zoom_work_seq Zoom confirmed: a sync with nothing newer is a check, not a change.
    zoom_synced_seq: Mapped[int] = mapped_column(default=0)
    # The next "sync" sends the whole series (topic, start, recurrence) again: the series changed.
    zoom_resend_series: Mapped[bool] = mapped_column(default=False)
    # Written into the meeting's agenda so a retried create can find a meeting it already made.
    companion_ref: Mapped[str] = mapped_column(String(40), unique=True)
    join_url: Mapped[str] = mapped_column(String(1000), default="")
    registration_url: Mapped[str] = mapped_column(String(1000), default="")

    # The meeting passcode, sealed (companion.sealing); read it with passcodes.passcode_of().
    passcode_encrypted: Mapped[str] = mapped_column(String(255))
    passcode_set_at: Mapped[dt.datetime]
    # Semicolon-separated alternative hosts asked of Zoom (the safeguarding lead, when on).
    alternative_hosts: Mapped[str] = mapped_column(String(500), default="")

    safety_state: Mapped[SafetyState] = mapped_column(
        state_column(SafetyState, 16), default=SafetyState.UNVERIFIED
    )
    # JSON list of {"setting", "expected", "actual"}: what Zoom did not apply.
    safety_problems: Mapped[str] = mapped_column(Text, default="[]")
    last_verified_at: Mapped[dt.datetime | None]
    # The failing settings people were last told about, so a check does not mail them hourly.
    safety_alerted: Mapped[str] = mapped_column(String(500), default="")

    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]

    organisation: Mapped[Organisation] = relationship()
    teacher: Mapped[User] = relationship()
    classes: Mapped[list[ClassSession]] = relationship(
        back_populates="course", order_by="ClassSession.starts_at"
    )

    @property
    def weekday_list(self) -> tuple[str, ...]:
        return tuple(d for d in self.weekdays.split(",") if d)

    @property
    def problems(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.safety_problems or "[]")
        except ValueError:
            return []
        return data if isinstance(data, list) else []

    @property
    def zoom_busy(self) -> bool:
        """Zoom work is outstanding: the page says so and refreshes until it is done."""
        return bool(self.zoom_work) or self.zoom_state == ZoomState.PENDING

    @property
    def is_open(self) -> bool:
        return self.zoom_state in (ZoomState.PENDING, ZoomState.CREATED, ZoomState.FAILED)

    def __repr__(self) -> str:
        return f"<Course {self.id} {self.zoom_state}/{self.safety_state}>"


class ClassSession(Base):
    """One class of a course: one occurrence of the course's Zoom meeting."""

    __tablename__ = "class_sessions"
    __table_args__ = (
        CheckConstraint(f"status in ({_in(CLASS_STATUSES)})", name="status_known"),
        CheckConstraint("duration_minutes between 1 and 1440", name="duration_range"),
        Index("ix_class_sessions_course_starts", "course_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    # Zoom's occurrence id; None until Zoom has the meeting.
    occurrence_id: Mapped[str | None] = mapped_column(String(32))
    starts_at: Mapped[dt.datetime]
    duration_minutes: Mapped[int]
    status: Mapped[ClassStatus] = mapped_column(
        state_column(ClassStatus, 16), default=ClassStatus.SCHEDULED
    )
    # Where a moved class was first planned.
    original_starts_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]

    course: Mapped[Course] = relationship(back_populates="classes")

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)

    @property
    def takes_place(self) -> bool:
        return self.status != ClassStatus.CANCELLED

    def __repr__(self) -> str:
        return f"<ClassSession {self.id} {self.starts_at:%Y-%m-%d %H:%M} {self.status}>"
