"""The recordings vault: recordings copied out of Zoom, their encrypted files, holds and concerns.

A recording is one Zoom meeting instance (one class); it has one or more files (MP4, M4A,
TRANSCRIPT, CHAT, ...), each stored as one encrypted blob (FORMAT.md). The file key of a blob is
kept here, wrapped under a key-encryption key (``kek_id``), never in the blob: deleting the
wrapped key is what deletes the recording (crypto-shredding).

File states (the ingest state machine, ``ingest.py``)::

    pending -> downloading -> stored -> verified -> zoom_deleted
         \\-> failed (error, next_attempt_at) -> downloading ...
    any -> deleted (retention: key destroyed, blob removed)

Recording states (the retention state machine, ``retention.py``)::

    active -> deleting (keys destroyed, blobs being removed) -> deleted

Independently, Zoom's copy of the meeting instance (every file it has, kept here or not) is
deleted for good once no file of the recording is still being copied, and checked gone, trash
included (``ingest.ZOOM_PURGE``): ``zoom_purged_at`` says when. Until then ``zoom_held_reason``
says why Zoom still holds it, if Zoom refused.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..accounts.models import User
from ..courses.models import ClassSession, Course
from ..db import Base, created_at, state_column, utcnow


class RecordingState(StrEnum):
    """The retention state machine of a recording (see above)."""

    ACTIVE = "active"
    # Keys destroyed, blobs being removed.
    DELETING = "deleting"
    DELETED = "deleted"


RECORDING_STATES = tuple(RecordingState)


class FileState(StrEnum):
    """The ingest state machine of a recording file (see above)."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    STORED = "stored"
    VERIFIED = "verified"
    ZOOM_DELETED = "zoom_deleted"
    FAILED = "failed"
    DELETED = "deleted"


FILE_STATES = tuple(FileState)
FILE_STATE_LABELS = {
    FileState.PENDING: "Waiting to be copied",
    FileState.DOWNLOADING: "Being copied",
    FileState.STORED: "Stored, not yet verified",
    FileState.VERIFIED: "Stored and verified (Zoom copy not yet deleted)",
    FileState.ZOOM_DELETED: "Stored and verified; deleted from Zoom",
    FileState.FAILED: "Copy failed; will retry",
    FileState.DELETED: "Deleted",
}
# States in which a file's blob can be read.
READABLE_STATES = (FileState.VERIFIED, FileState.ZOOM_DELETED)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class KekCheck(Base):
    """The check value of each key-encryption key the stored file keys have used.

    Written when a KEK first wraps a file key; compared at start so that a wrong key stops the
    service before it wraps anything new (FORMAT.md, "Key check value").
    """

    __tablename__ = "kek_checks"

    kek_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    check_value: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[created_at]
    # Set by `companion keys retire` once no file key uses it; it may then leave the config.
    retired_at: Mapped[dt.datetime | None]


class Recording(Base):
    """One recorded class (a Zoom meeting instance)."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(f"state in ({_in(RECORDING_STATES)})", name="state_known"),
        # The retention sweep reads only what is due: state = 'active' and delete_after <= now.
        Index("ix_recordings_state_delete_after", "state", "delete_after"),
        # The Zoom-purge queue and the security review read only what Zoom may still hold.
        Index("ix_recordings_zoom_purged_at", "zoom_purged_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id"), index=True)
    class_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id"), index=True
    )
    zoom_meeting_id: Mapped[int] = mapped_column(BigInteger)
    zoom_uuid: Mapped[str] = mapped_column(String(128), unique=True)
    topic: Mapped[str] = mapped_column(String(300), default="")
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime]
    duration_minutes: Mapped[int] = mapped_column(default=0)
    # The class could not be identified: kept and shown flagged, never dropped.
    unmatched: Mapped[bool] = mapped_column(default=False)
    # "webhook" or "reconcile": how companion learnt of it.
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    # The event's download token (Zoom: valid 24 h); cleared once every file is stored.
    download_token: Mapped[str | None] = mapped_column(Text)

    state: Mapped[RecordingState] = mapped_column(
        state_column(RecordingState, 16), default=RecordingState.ACTIVE
    )
    delete_after: Mapped[dt.datetime]
    # True while any hold (on the recording or on its class) is in force.
    on_hold: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[dt.datetime | None]
    delete_reason: Mapped[str] = mapped_column(String(300), default="")

    # Zoom's copy of the whole instance (``ingest.ZOOM_PURGE``): work-engine columns, then when
    # Zoom was found to hold nothing more (deleted with action=delete, trash checked).
    zoom_purge_attempts: Mapped[int] = mapped_column(default=0)
    zoom_purge_due: Mapped[dt.datetime | None]
    zoom_purge_claimed_until: Mapped[dt.datetime | None]
    zoom_purged_at: Mapped[dt.datetime | None]
    # When Zoom first refused to delete it (the lead and the admins were told then, once), and
    # what Zoom said the last time; shown in the security review until Zoom holds nothing.
    zoom_refused_at: Mapped[dt.datetime | None]
    zoom_held_reason: Mapped[str] = mapped_column(String(500), default="")

    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    files: Mapped[list[RecordingFile]] = relationship(
        back_populates="recording", order_by="RecordingFile.created_at"
    )
    course: Mapped[Course | None] = relationship()
    class_session: Mapped[ClassSession | None] = relationship()

    def __repr__(self) -> str:
        return f"<Recording {self.id} {self.state}{' held' if self.on_hold else ''}>"


class RecordingFile(Base):
    """One file of a recording and its encrypted blob."""

    __tablename__ = "recording_files"
    __table_args__ = (
        CheckConstraint(f"state in ({_in(FILE_STATES)})", name="state_known"),
        CheckConstraint("(wrapped_dek is null) = (kek_id is null)", name="wrapped_dek_with_kek_id"),
        Index("ix_recording_files_state_next_attempt", "state", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    recording_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recordings.id"), index=True)
    zoom_file_id: Mapped[str] = mapped_column(String(128), unique=True)
    # Zoom's file_type of a kept kind (``ingest.KEPT_FILE_TYPES``): MP4, M4A, TRANSCRIPT, CHAT,
    # CC, TIMELINE. Captions and the timeline have no Zoom id: ``zoom_file_id`` is then made
    # from the instance and the kind (``ingest.synthetic_file_id``).
    file_type: Mapped[str] = mapped_column(String(32))
    file_extension: Mapped[str] = mapped_column(String(16), default="")
    recording_type: Mapped[str] = mapped_column(String(64), default="")
    download_url: Mapped[str] = mapped_column(String(2000))
    # What Zoom said the size is (None when Zoom gives none); the download must match it.
    expected_size: Mapped[int | None] = mapped_column(BigInteger)

    # What was received: plaintext size and SHA-256, taken while streaming.
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    blob_key: Mapped[str | None] = mapped_column(String(160))
    # The file key, wrapped under KEK ``kek_id`` (60 bytes); None once crypto-shredded.
    kek_id: Mapped[str | None] = mapped_column(String(64), index=True)
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary(64))

    state: Mapped[FileState] = mapped_column(state_column(FileState, 16), default=FileState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    next_attempt_at: Mapped[dt.datetime | None]
    # The worker copying this file holds it until then (a crash lets it go at worker start).
    claimed_until: Mapped[dt.datetime | None]
    zoom_delete_attempts: Mapped[int] = mapped_column(default=0)

    stored_at: Mapped[dt.datetime | None]
    verified_at: Mapped[dt.datetime | None]
    zoom_deleted_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]
    # When serving the stored copy first found it damaged (an AES-GCM tag failed); it is then
    # never served, and the lead and the admins were told once.
    integrity_failed_at: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]

    recording: Mapped[Recording] = relationship(back_populates="files")

    @property
    def readable(self) -> bool:
        return self.state in READABLE_STATES and self.wrapped_dek is not None

    def __repr__(self) -> str:
        return f"<RecordingFile {self.id} {self.file_type} {self.state}>"


class RecordingGrant(Base):
    """Permission for one safeguarding lead, in one signed-in browser, to fetch one file.

    Created when the lead states a reason; the stream URL carries the random grant token (only
    its hash is stored) and is honoured only for the same staff session, for a few minutes after
    the last use and never beyond an absolute limit, so a <video> element can make its range
    requests without the form being filled in again for each.
    """

    __tablename__ = "recording_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recording_files.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    staff_session_id: Mapped[int] = mapped_column(
        ForeignKey("staff_sessions.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)
    incident_ref: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    absolute_expires_at: Mapped[dt.datetime]
    first_used_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    uses: Mapped[int] = mapped_column(default=0)

    file: Mapped[RecordingFile] = relationship()
    user: Mapped[User] = relationship()


class Concern(Base):
    """A safeguarding concern about a class, raised by its teacher or the safeguarding lead."""

    __tablename__ = "concerns"
    __table_args__ = (
        CheckConstraint("length(what_happened) > 0", name="what_not_empty"),
        CheckConstraint("minute_into_class is null or minute_into_class >= 0", name="minute"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), index=True)
    class_session_id: Mapped[int] = mapped_column(ForeignKey("class_sessions.id"), index=True)
    raised_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    what_happened: Mapped[str] = mapped_column(Text)
    # When in the class: minutes after its start, and the words the person used ("17:25").
    minute_into_class: Mapped[int | None]
    when_text: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[created_at]

    raised_by: Mapped[User] = relationship()
    course: Mapped[Course] = relationship()
    class_session: Mapped[ClassSession] = relationship()


class Hold(Base):
    """Keeps recordings from deletion: those of a class (even ones that arrive later) or one
    recording. Only the safeguarding lead releases a hold, with a reason."""

    __tablename__ = "recording_holds"
    __table_args__ = (
        CheckConstraint(
            "class_session_id is not null or recording_id is not null", name="has_target"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    class_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("class_sessions.id"), index=True
    )
    recording_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    concern_id: Mapped[int | None] = mapped_column(ForeignKey("concerns.id"), index=True)
    placed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    placed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    released_at: Mapped[dt.datetime | None]
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    release_reason: Mapped[str] = mapped_column(Text, default="")

    concern: Mapped[Concern | None] = relationship()
    placed_by: Mapped[User | None] = relationship(foreign_keys=[placed_by_id])
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id])

    @property
    def active(self) -> bool:
        return self.released_at is None
