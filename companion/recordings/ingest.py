"""Copy recordings out of Zoom: register, download, encrypt, verify, then delete all of Zoom's.

One file at a time moves through its states (see ``models.py``), each step committed before the
next starts, so a crash anywhere resumes from the last committed state:

1. :func:`record_from_zoom` turns Zoom's description of a recording (a ``recording.completed``
   event or the reconcile's listing) into a :class:`Recording` with one ``pending`` row per file.
   A redelivered event or a file already known adds nothing. The class is found from the
   meeting id and start time; a recording whose class is unknown is kept and flagged.
2. :func:`process_file` claims a file on the work engine (:data:`COPY`, ``companion.work``:
   claimed and committed, the download with no transaction open, the result recorded in a
   transaction of its own), streams the download with the event's download token
   (redirects followed by the client), encrypts it as it arrives into a temporary file that is
   synced and renamed into place (``storage.open_writer``), so plaintext never reaches the disk.
   An HTML page, a wrong content type or a size other than Zoom's ``file_size`` is a failure.
3. The stored blob is decrypted again with the file key unwrapped from the database and its
   SHA-256 compared with the one taken while receiving; only a match makes it ``verified``.
4. Once no file of the recording is still being copied (all verified, or retention deleted
   them), Zoom's copy of the whole meeting instance is deleted **for good** (``action=delete``,
   not Zoom's default trash, where it stays recoverable for 30 days), as a step on
   :data:`ZOOM_PURGE`: that takes every file Zoom has for the class, the kinds companion does
   not keep (poll CSV, AI summary) and the ones without an id (captions, timeline) too. Zoom is
   then asked again and must list nothing for that instance, trash included. Before deleting,
   Zoom's listing is read once more: a file that appeared since (a transcript comes after the
   video) is registered and copied first. A copy an earlier version of companion put in Zoom's
   trash is recovered and deleted for good. A 429 or 5xx is retried quietly; a refusal (the
   account does not let hosts delete cloud recordings, a scope is missing) is told at once to
   the lead and the admins and shown in the security review, and still retried.

Kept in the vault (:data:`KEPT_FILE_TYPES`): what a safeguarding review needs, the video and
audio (participant audio too), the transcript, the chat, the captions and the timeline. The
rest is deleted in Zoom without a copy.

A failure leaves the file ``failed`` with a clear error and a retry time (the engine's one
backoff: 1, 2, 4 ... minutes, at most six hours), Zoom's copy untouched, and nothing half-written
on disk; it is logged and recorded in the audit trail. A worker killed mid-download leaves its
claim: the next worker's start gives it back at once (:func:`recover_interrupted`), and a claim
that runs out is taken again anyway. A worker killed after Zoom trashed its copy but before that
was recorded asks Zoom again later: the check that Zoom lists nothing decides.

The module runs past 600 lines and is kept whole: the copy and the Zoom-delete steps share one
plan and one recovery story, told above.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from flask import Flask
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from .. import metrics, work
from ..audit.services import record as audit
from ..courses.models import ClassSession, Course
from ..db import changed_rows, job_session, utcnow
from ..errors import CompanionError, ValidationError
from ..orgs.models import Organisation
from ..zoom import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
)
from ..zoom.api import MeetingRecordings, ZoomApi
from . import concerns, crypto, vault
from .keys import Keyring, WrappedDek
from .models import FileState, Recording, RecordingFile, RecordingState
from .storage import RecordingStorage

if TYPE_CHECKING:
    from ..webhooks.services import StoredEvent

log = logging.getLogger(__name__)

# The download is read in 1 MiB pieces: larger ones gave no clear gain on loopback and cost
# several MiB more memory per download.
CHUNK = 1 << 20
PROGRESS_EVERY = 100 << 20
DEFAULT_RETENTION_DAYS = 30
# A recording belongs to the class whose time it starts in (the host may start a little early).
MATCH_EARLY = dt.timedelta(minutes=60)
MEDIA_TYPES = {"MP4": ("video/",), "M4A": ("audio/",)}
# What a safeguarding review needs, so what is copied into the vault (Zoom's ``file_type``):
# video, audio (also each participant's), transcript, chat, closed captions, timeline. Zoom's
# other kinds (poll CSV, AI summary, thumbnails ...) are deleted in Zoom without a copy.
KEPT_FILE_TYPES = frozenset({"MP4", "M4A", "TRANSCRIPT", "CHAT", "CC", "TIMELINE"})
BINARY = ("application/octet-stream", "binary/octet-stream")
NEVER_A_RECORDING = ("text/html", "application/xhtml+xml")


# A file in one of these states no longer needs Zoom's copy.
SETTLED_STATES = (FileState.VERIFIED, FileState.ZOOM_DELETED, FileState.DELETED)


class IngestError(CompanionError):
    """A download or check failed; the message says what, for the file's error column."""

    code = "ingest_failed"
    status = 502


# --- 1. registering what Zoom has ----------------------------------------------------------------


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class FileDescription:
    zoom_file_id: str
    file_type: str
    file_extension: str
    recording_type: str
    download_url: str
    size: int | None
    recording_start: dt.datetime | None
    recording_end: dt.datetime | None


def synthetic_file_id(zoom_uuid: str, item: Mapping[str, Any]) -> str:
    """A stable id for a file Zoom lists without one (captions, the timeline): the same file
    described again (a redelivery, the reconcile, the purge's check) gets the same id."""
    facts = "|".join(
        str(item.get(k) or "")
        for k in ("file_type", "recording_type", "file_extension", "recording_start")
    )
    return "noid-" + hashlib.sha256(f"{zoom_uuid}|{facts}".encode()).hexdigest()[:40]


def describe_files(obj: Mapping[str, Any]) -> list[FileDescription]:
    """Every completed file of a recording that companion keeps (:data:`KEPT_FILE_TYPES`)."""
    found = []
    zoom_uuid = str(obj.get("uuid") or "")
    items = [*(obj.get("recording_files") or []), *(obj.get("participant_audio_files") or [])]
    for item in items:
        if not isinstance(item, Mapping):
            continue
        file_type = str(item.get("file_type") or "UNKNOWN").upper()[:32]
        if file_type not in KEPT_FILE_TYPES:
            # Deleted in Zoom with the rest of the instance; nothing of it is kept.
            log.info("a %s file is not kept; it is deleted in Zoom with the class", file_type)
            continue
        file_id, url = item.get("id"), item.get("download_url")
        if not isinstance(url, str) or not url:
            log.warning("a %s recording file without a download URL was skipped", file_type)
            continue
        if not isinstance(file_id, str) or not file_id:
            # Zoom lists captions and the timeline without id, status or file_size.
            file_id = synthetic_file_id(zoom_uuid, item)
        status = item.get("status")
        if status not in (None, "", "completed"):
            # Still processing at Zoom; the reconcile (or the purge's check) takes it later.
            log.info("recording file %s is %s at Zoom; taken later", file_id, status)
            continue
        size = item.get("file_size")
        found.append(
            FileDescription(
                zoom_file_id=file_id[:128],
                file_type=file_type,
                file_extension=str(item.get("file_extension") or "")[:16],
                recording_type=str(item.get("recording_type") or "")[:64],
                download_url=url[:2000],
                size=int(size) if isinstance(size, int) and size >= 0 else None,
                recording_start=parse_time(item.get("recording_start")),
                recording_end=parse_time(item.get("recording_end")),
            )
        )
    return found


def still_processing(obj: Mapping[str, Any]) -> bool:
    """Whether Zoom still makes a file of this instance (a status other than completed)."""
    items = [*(obj.get("recording_files") or []), *(obj.get("participant_audio_files") or [])]
    return any(
        isinstance(item, Mapping) and item.get("status") not in (None, "", "completed")
        for item in items
    )


def match_class(
    session: Session, meeting_id: int, started: dt.datetime
) -> tuple[Course | None, ClassSession | None]:
    """The course of the meeting and the class the recording started in, if known."""
    course = session.scalars(select(Course).where(Course.zoom_meeting_id == meeting_id)).first()
    if course is None:
        return None, None
    candidates = session.scalars(
        select(ClassSession).where(
            ClassSession.course_id == course.id,
            ClassSession.starts_at >= started - dt.timedelta(days=1),
            ClassSession.starts_at <= started + MATCH_EARLY,
        )
    ).all()
    fitting = [
        c
        for c in candidates
        if c.starts_at - MATCH_EARLY <= started <= c.ends_at + dt.timedelta(minutes=30)
    ]
    if not fitting:
        return course, None
    # A cancelled class cannot have been recorded unless it is the only candidate.
    fitting.sort(key=lambda c: (not c.takes_place, abs((c.starts_at - started).total_seconds())))
    return course, fitting[0]


def _sole_organisation(session: Session) -> int | None:
    ids = session.scalars(select(Organisation.id).order_by(Organisation.id).limit(2)).all()
    return ids[0] if len(ids) == 1 else None


def retention_days(session: Session, organisation_id: int | None) -> int:
    if organisation_id is None:
        return DEFAULT_RETENTION_DAYS
    org = session.get(Organisation, organisation_id)
    return org.recording_retention_days if org is not None else DEFAULT_RETENTION_DAYS


@dataclass(frozen=True)
class Registered:
    recording: Recording
    created: bool
    new_files: int


def record_from_zoom(
    session: Session,
    obj: Mapping[str, Any],
    *,
    download_token: str | None,
    source: str,
    now: dt.datetime,
) -> Registered:
    """Create (or complete) the recording Zoom describes; idempotent per meeting instance."""
    zoom_uuid = obj.get("uuid")
    if not isinstance(zoom_uuid, str) or not 0 < len(zoom_uuid) <= 128:
        raise ValidationError("The recording has no meeting instance uuid.", field="uuid")
    try:
        meeting_id = int(obj.get("id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError("The recording has no meeting id.", field="id") from None
    files = describe_files(obj)

    recording = session.scalars(select(Recording).where(Recording.zoom_uuid == zoom_uuid)).first()
    created = recording is None
    if recording is None:
        starts = [f.recording_start for f in files if f.recording_start]
        ends = [f.recording_end for f in files if f.recording_end]
        started = parse_time(obj.get("start_time")) or (min(starts) if starts else now)
        given = obj.get("duration")
        duration = given if isinstance(given, int) else 0
        ended = max(ends) if ends else started + dt.timedelta(minutes=max(0, duration))
        course, cls = match_class(session, meeting_id, started)
        org_id = course.organisation_id if course is not None else _sole_organisation(session)
        recording = Recording(
            organisation_id=org_id,
            course_id=course.id if course else None,
            class_session_id=cls.id if cls else None,
            zoom_meeting_id=meeting_id,
            zoom_uuid=zoom_uuid,
            topic=str(obj.get("topic") or "")[:300],
            started_at=started,
            ended_at=ended,
            duration_minutes=max(duration, round((ended - started).total_seconds() / 60)),
            unmatched=cls is None,
            source=source,
            download_token=download_token,
            state=RecordingState.ACTIVE,
            delete_after=ended + dt.timedelta(days=retention_days(session, org_id)),
        )
        session.add(recording)
        session.flush()
        # A concern raised before the recording arrived already holds it.
        recording.on_hold = concerns.hold_in_force(session, recording)
    elif download_token:
        recording.download_token = download_token

    if recording.state != RecordingState.ACTIVE:
        log.info("recording %s is %s; nothing new is taken in", recording.id, recording.state)
        return Registered(recording, created, 0)

    ids = [f.zoom_file_id for f in files]
    known = set(
        session.scalars(
            select(RecordingFile.zoom_file_id).where(RecordingFile.zoom_file_id.in_(ids))
        )
    )
    added = []
    for f in files:
        if f.zoom_file_id in known:
            continue
        known.add(f.zoom_file_id)
        row = RecordingFile(
            id=uuid.uuid4(),
            recording_id=recording.id,
            zoom_file_id=f.zoom_file_id,
            file_type=f.file_type,
            file_extension=f.file_extension,
            recording_type=f.recording_type,
            download_url=f.download_url,
            expected_size=f.size,
            state=FileState.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        added.append(row)
    session.flush()
    if created or added:
        audit(
            session,
            "recording.received" if created else "recording.files_added",
            organisation_id=recording.organisation_id,
            subject=("recording", recording.id),
            course_id=recording.course_id,
            class_session_id=recording.class_session_id,
            zoom_meeting_id=meeting_id,
            unmatched=recording.unmatched,
            on_hold=recording.on_hold,
            source=source,
            files=[{"id": str(r.id), "type": r.file_type, "size": r.expected_size} for r in added],
        )
    if created and recording.unmatched:
        log.warning(
            "recording %s of meeting %s matches no known class; kept and flagged",
            recording.id,
            meeting_id,
        )
    return Registered(recording, created, len(added))


def accept_event(_name: str, *, session: Session, event: StoredEvent, now: dt.datetime) -> str:
    """Handler of ``recording.completed``: receives ``companion.signals.zoom_event`` for it
    (connected by companion.recordings.init_app) when the webhook job processes ``event``."""
    document = event.document
    payload = document.get("payload") or {}
    obj = payload.get("object") if isinstance(payload, Mapping) else None
    if not isinstance(obj, Mapping):
        raise ValidationError("The recording event has no object.")
    token = document.get("download_token")
    record_from_zoom(
        session,
        obj,
        download_token=token if isinstance(token, str) and token else None,
        source="webhook",
        now=now,
    )
    return "done"


# --- 2. download, encrypt, store -----------------------------------------------------------------


def blob_key(file_id: uuid.UUID) -> str:
    # The same key for every attempt: a retry replaces a blob whose key was never committed.
    return f"{file_id}.krec"


def _of_active_recording() -> Any:
    return RecordingFile.recording_id.in_(
        select(Recording.id).where(Recording.state == RecordingState.ACTIVE)
    )


# Files to copy (pending, failed and due, or a download whose claim ran out) and stored ones to
# verify, of recordings retention has not taken. A download counts its own attempts (``prepare``),
# so verifying a stored file is not one.
COPY = work.Queue(
    name="recording_copies",
    model=RecordingFile,
    id=RecordingFile.id,
    attempts=RecordingFile.attempts,
    due=RecordingFile.next_attempt_at,
    claimed_until=RecordingFile.claimed_until,
    ready=lambda: and_(
        RecordingFile.state.in_(
            (FileState.PENDING, FileState.FAILED, FileState.DOWNLOADING, FileState.STORED)
        ),
        _of_active_recording(),
    ),
    # A large recording over a slow line takes long; a run still downloading is never overtaken.
    claim_for=dt.timedelta(hours=2),
    backoff_base=dt.timedelta(minutes=1),
    backoff_cap=dt.timedelta(hours=6),
    count_attempts=False,
    order=(RecordingFile.created_at,),
)


def _nothing_left_to_copy() -> Any:
    return ~exists(
        select(RecordingFile.id).where(
            RecordingFile.recording_id == Recording.id,
            RecordingFile.state.not_in(SETTLED_STATES),
        )
    )


# Zoom's copy of a recorded class, to be deleted for good once nothing of it is still being
# copied (every kept file verified, or deleted by retention); see step 4 above. A 429, 5xx or no
# answer waits with the one backoff (or Zoom's Retry-After); so does a refusal, after telling.
ZOOM_PURGE = work.Queue(
    name="recording_zoom_purges",
    model=Recording,
    id=Recording.id,
    attempts=Recording.zoom_purge_attempts,
    due=Recording.zoom_purge_due,
    claimed_until=Recording.zoom_purge_claimed_until,
    ready=lambda: and_(Recording.zoom_purged_at.is_(None), _nothing_left_to_copy()),
    claim_for=dt.timedelta(minutes=10),
    backoff_base=dt.timedelta(minutes=1),
    backoff_cap=dt.timedelta(hours=6),
    order=(Recording.created_at,),
)


@dataclass(frozen=True)
class Claim:
    file_id: uuid.UUID
    recording_id: uuid.UUID
    zoom_uuid: str
    zoom_file_id: str
    file_type: str
    download_url: str
    expected_size: int | None
    download_token: str | None
    attempt: int


def content_type_ok(file_type: str, content_type: str) -> bool:
    if content_type in NEVER_A_RECORDING:
        return False
    families = MEDIA_TYPES.get(file_type)
    if families is None:
        return True  # transcripts, chat, timelines: text or JSON, anything but a web page
    return content_type in BINARY or content_type.startswith(families)


def _looks_like_html(chunk: bytes) -> bool:
    head = chunk[:64].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def open_download(zoom: ZoomApi, claim: Claim) -> requests.Response:
    try:
        return zoom.open_download(claim.download_url, download_token=claim.download_token)
    except ZoomAuthError:
        if claim.download_token is None:
            raise
        # The event's token lasts 24 hours; after that the app's own token still may download.
        log.info(
            "file %s: the event's download token was refused; using the API token", claim.file_id
        )
        return zoom.open_download(claim.download_url, download_token=None)


def check_response(response: requests.Response, claim: Claim) -> None:
    if response.status_code != 200:
        raise IngestError(f"Zoom answered the download with HTTP {response.status_code}")
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not content_type_ok(claim.file_type, content_type):
        raise IngestError(
            f"Zoom sent {content_type or 'no content type'} instead of the {claim.file_type} file"
        )
    declared = response.headers.get("Content-Length", "")
    if (
        claim.expected_size is not None
        and declared.isdigit()
        and int(declared) != claim.expected_size
    ):
        raise IngestError(
            f"Zoom sent {int(declared)} bytes but said the file has {claim.expected_size}"
        )


@dataclass(frozen=True)
class StoredBlob:
    key: str
    stats: crypto.WriteStats
    wrapped: WrappedDek
    seconds: float


def download_and_store(
    zoom: ZoomApi,
    storage: RecordingStorage,
    keyring: Keyring,
    claim: Claim,
    *,
    progress_every: int | None = None,
) -> StoredBlob:
    """Stream one file from Zoom into an encrypted blob; nothing is left behind on failure."""
    started = time.monotonic()
    response = open_download(zoom, claim)
    try:
        check_response(response, claim)
        key = blob_key(claim.file_id)
        dek = crypto.new_file_key()
        expected = claim.expected_size
        received = 0
        progress_every = progress_every or PROGRESS_EVERY
        next_report = progress_every
        with storage.open_writer(key) as blob:
            writer = crypto.EncryptingWriter(blob, dek, claim.file_id, claim.recording_id)
            try:
                try:
                    for chunk in response.iter_content(chunk_size=CHUNK):
                        if not chunk:
                            continue
                        if (
                            received == 0
                            and claim.file_type in MEDIA_TYPES
                            and _looks_like_html(chunk)
                        ):
                            raise IngestError("Zoom sent a web page instead of the file")
                        writer.write(chunk)
                        received += len(chunk)
                        if expected is not None and received > expected:
                            raise IngestError(
                                f"Zoom sent more than the {expected} bytes it said the file has"
                            )
                        if received >= next_report:
                            seconds = max(time.monotonic() - started, 1e-6)
                            log.info(
                                "file %s (%s): %d of %s MiB received, %.0f MB/s",
                                claim.file_id,
                                claim.file_type,
                                received >> 20,
                                (expected >> 20) if expected is not None else "?",
                                received / seconds / 1e6,
                            )
                            next_report += progress_every
                except requests.RequestException as exc:
                    raise IngestError(
                        f"the download was cut after {received} of "
                        f"{expected if expected is not None else 'unknown'} bytes "
                        f"({type(exc).__name__})"
                    ) from exc
                if expected is not None and received != expected:
                    raise IngestError(
                        f"the download ended after {received} bytes; "
                        f"Zoom said the file has {expected}"
                    )
                stats = writer.close()
            except BaseException:
                writer.abort()
                raise
    finally:
        response.close()
    wrapped = keyring.wrap(claim.file_id, dek)
    return StoredBlob(key, stats, wrapped, time.monotonic() - started)


def mark_stored(
    session: Session, claim: Claim, blob: StoredBlob, keyring: Keyring, now: dt.datetime
) -> bool:
    """Record the blob and its wrapped key; False if the file is no longer ours to store."""
    row = session.get(RecordingFile, claim.file_id, with_for_update=True)
    if (
        row is None
        or row.state != FileState.DOWNLOADING
        or row.attempts != claim.attempt
        or row.recording.state != RecordingState.ACTIVE
    ):
        return False
    kek_id = vault.note_kek_use(session, keyring)
    if kek_id != blob.wrapped.kek_id:  # pragma: no cover - the same keyring wrapped it
        raise IngestError("the key-encryption key changed during the download")
    row.state = FileState.STORED
    row.size = blob.stats.plaintext_bytes
    row.sha256 = blob.stats.sha256
    row.blob_key = blob.key
    row.kek_id = blob.wrapped.kek_id
    row.wrapped_dek = blob.wrapped.wrapped
    row.stored_at = now
    row.claimed_until = None
    row.error = ""
    session.flush()
    return True


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, CompanionError):
        return exc.message
    if isinstance(exc, ZoomError):
        return f"Zoom: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def mark_failed(
    session: Session,
    file_id: uuid.UUID,
    exc: BaseException,
    now: dt.datetime,
    *,
    attempt: int | None = None,
    step: str = "download",
) -> bool:
    """The file failed: error, retry time, no key; logged and in the audit trail."""
    row = session.get(RecordingFile, file_id, with_for_update=True)
    if row is None or row.state not in (FileState.DOWNLOADING, FileState.STORED):
        return False
    if attempt is not None and row.attempts != attempt:
        return False
    message = describe_error(exc)[:500]
    row.state = FileState.FAILED
    row.error = message
    work.postpone(row, COPY, now)
    row.wrapped_dek = None
    row.kek_id = None
    rec = row.recording
    code = getattr(exc, "code", None) or type(exc).__name__
    audit(
        session,
        "recording.ingest_failed",
        organisation_id=rec.organisation_id,
        subject=("recording_file", row.id),
        course_id=rec.course_id,
        recording_id=str(rec.id),
        file_type=row.file_type,
        step=step,
        attempt=row.attempts,
        code=str(code),
        error=message,
        next_attempt_at=row.next_attempt_at,
    )
    log.error(
        "recording file %s (%s) failed at %s, attempt %d: %s; Zoom's copy is kept, next try %s",
        row.id,
        row.file_type,
        step,
        row.attempts,
        message,
        row.next_attempt_at.isoformat(timespec="seconds"),  # type: ignore[union-attr]
    )
    session.flush()
    return True


class CopyFile:
    """Download, encrypt and store one file (``work.Step`` on :data:`COPY`)."""

    def __init__(self, zoom: ZoomApi, storage: RecordingStorage, keyring: Keyring):
        self.zoom, self.storage, self.keyring = zoom, storage, keyring

    def prepare(self, session: Session, file_id: uuid.UUID, now: dt.datetime) -> Claim | None:
        """Take the file for downloading (committed with the claim, before the download)."""
        row = session.get(RecordingFile, file_id)
        if (
            row is None
            or row.recording.state != RecordingState.ACTIVE
            or row.state not in (FileState.PENDING, FileState.FAILED, FileState.DOWNLOADING)
        ):
            return None
        row.state = FileState.DOWNLOADING
        row.attempts += 1
        row.next_attempt_at = None
        rec = row.recording
        return Claim(
            file_id=row.id,
            recording_id=rec.id,
            zoom_uuid=rec.zoom_uuid,
            zoom_file_id=row.zoom_file_id,
            file_type=row.file_type,
            download_url=row.download_url,
            expected_size=row.expected_size,
            download_token=rec.download_token,
            attempt=row.attempts,
        )

    def call(self, claim: Claim) -> StoredBlob:
        return download_and_store(self.zoom, self.storage, self.keyring, claim)

    def record(
        self,
        session: Session,
        file_id: uuid.UUID,
        claim: Claim,
        blob: StoredBlob,
        now: dt.datetime,
    ) -> work.Outcome:
        if not mark_stored(session, claim, blob, self.keyring, now):
            # Retention deleted the recording meanwhile (or another attempt owns the file): the
            # caller removes the blob once this is committed.
            return "discarded"
        log.info(
            "recording file %s (%s) stored: %d bytes in %.1f s",
            file_id,
            claim.file_type,
            blob.stats.plaintext_bytes,
            blob.seconds,
        )
        metrics.ingested(blob.stats.plaintext_bytes, blob.seconds)
        return "stored"

    def failed(
        self,
        session: Session,
        file_id: uuid.UUID,
        claim: Claim,
        exc: Exception,
        now: dt.datetime,
    ) -> work.Outcome:
        mark_failed(session, file_id, exc, now, attempt=claim.attempt)
        return "failed"


# --- 3. verify -----------------------------------------------------------------------------------


def verify_stored(app: Flask, file_id: uuid.UUID, storage: RecordingStorage) -> str:
    """Decrypt the stored blob with the key from the database and compare it with what came in."""
    with job_session(app) as session:
        row = session.get(RecordingFile, file_id)
        if row is None or row.state != FileState.STORED or row.wrapped_dek is None:
            return "skipped"
        kek_id, wrapped, key = row.kek_id, bytes(row.wrapped_dek), row.blob_key
        recording_id, size, sha256 = row.recording_id, row.size, row.sha256
    assert kek_id is not None and key is not None
    try:
        dek = vault.unwrap(app, kek_id, file_id, wrapped)
        reader = storage.open_reader(key)
        try:
            # Every tag checked and the length matched: no second hash of the plaintext.
            stored_size = crypto.authenticate_stream(reader, dek, file_id, recording_id)
        finally:
            reader.close()
        if stored_size != size:
            raise IngestError("the stored file does not match what was received")
    except Exception as exc:
        with job_session(app) as session:
            failed = mark_failed(session, file_id, exc, utcnow(), step="verify")
        if failed:
            storage.delete(key)
        return "failed"
    with job_session(app) as session:
        row = session.get(RecordingFile, file_id, with_for_update=True)
        if row is None or row.state != FileState.STORED:
            return "skipped"
        now = utcnow()
        row.state = FileState.VERIFIED
        row.verified_at = now
        row.error = ""
        rec = row.recording
        if all(
            f.state in (FileState.VERIFIED, FileState.ZOOM_DELETED, FileState.DELETED)
            for f in rec.files
        ):
            rec.download_token = None  # nothing left to download with it
        session.flush()
    log.info(
        "recording file %s verified (%s bytes, sha256 %s...)", file_id, size, (sha256 or "")[:12]
    )
    return "verified"


# --- 4. delete everything Zoom has of the class ------------------------------------------------


class StillInZoom(CompanionError):
    """Zoom answered the delete, yet still lists (or has in its trash) the meeting instance."""

    code = "zoom_still_holds_recording"
    status = 502


@dataclass(frozen=True)
class PurgePlan:
    recording_id: uuid.UUID
    zoom_uuid: str
    zoom_meeting_id: int
    # Zoom's ids of the files companion has (or made, for files Zoom lists without one).
    known_file_ids: frozenset[str]
    # Whether a kept file Zoom lists that companion does not have yet is copied first (not
    # once retention has deleted the recording: then Zoom's copy just goes).
    copies_first: bool


@dataclass(frozen=True)
class Purged:
    outcome: str  # "deleted", "new_files" or "still_processing"
    listing: MeetingRecordings | None = None
    recovered_from_trash: bool = False


class PurgeFromZoom:
    """Delete Zoom's copy of one recorded class for good and check that nothing is left
    (``work.Step`` on :data:`ZOOM_PURGE`)."""

    def __init__(self, zoom: ZoomApi, host_user_id: str):
        self.zoom, self.host_user_id = zoom, host_user_id

    def prepare(
        self, session: Session, recording_id: uuid.UUID, now: dt.datetime
    ) -> PurgePlan | None:
        rec = session.get(Recording, recording_id)
        if rec is None or rec.zoom_purged_at is not None:
            return None
        if any(f.state not in SETTLED_STATES for f in rec.files):
            return None  # a file is still being copied: Zoom's copy is what it is copied from
        return PurgePlan(
            recording_id=rec.id,
            zoom_uuid=rec.zoom_uuid,
            zoom_meeting_id=rec.zoom_meeting_id,
            known_file_ids=frozenset(f.zoom_file_id for f in rec.files),
            copies_first=rec.state == RecordingState.ACTIVE,
        )

    def _listing(self, plan: PurgePlan) -> MeetingRecordings | None:
        try:
            return self.zoom.get_meeting_recordings(plan.zoom_uuid)
        except ZoomNotFound:
            return None

    def _in_trash(self, plan: PurgePlan) -> bool:
        for trash_type in ("meeting_recordings", "recording_file"):
            for meeting in self.zoom.iter_trashed_recordings(
                self.host_user_id, meeting_id=plan.zoom_meeting_id, trash_type=trash_type
            ):
                if meeting.get("uuid") == plan.zoom_uuid:
                    return True
        return False

    def _unknown_kept_files(self, plan: PurgePlan, listing: MeetingRecordings) -> bool:
        return any(d.zoom_file_id not in plan.known_file_ids for d in describe_files(listing))

    def call(self, plan: PurgePlan) -> Purged:
        listing = self._listing(plan)
        recovered = False
        if self._in_trash(plan):
            # Trashed (by an earlier companion, or a person): recoverable by anyone with the
            # host account for 30 days. Recovered, so that the delete below removes it for good.
            self.zoom.recover_meeting_recordings(plan.zoom_uuid)
            recovered = True
            listing = self._listing(plan)
        if listing is not None and plan.copies_first:
            if still_processing(listing):
                return Purged("still_processing", listing, recovered)
            if self._unknown_kept_files(plan, listing):
                return Purged("new_files", listing, recovered)
        if listing is not None:
            # A "not found" means it went meanwhile; the check below decides either way.
            with contextlib.suppress(ZoomNotFound):
                self.zoom.delete_meeting_recordings(plan.zoom_uuid, action="delete")
        # Zoom must now list nothing for the instance, in the recordings or in the trash.
        if self._listing(plan) is not None:
            raise StillInZoom("Zoom still lists the recording after deleting it")
        if self._in_trash(plan):
            raise StillInZoom("Zoom still has the recording in its trash after deleting it")
        return Purged("deleted", None, recovered)

    def record(
        self,
        session: Session,
        recording_id: uuid.UUID,
        plan: PurgePlan,
        result: Purged,
        now: dt.datetime,
    ) -> work.Outcome:
        rec = session.get(Recording, recording_id)
        if rec is None:
            return "missing"
        if result.outcome != "deleted":
            assert result.listing is not None
            registered = record_from_zoom(
                session, result.listing, download_token=None, source="zoom_check", now=now
            )
            # New files wait to be copied (the queue's condition holds the purge until they are
            # verified); a file Zoom is still making is looked at again after the backoff.
            if result.outcome == "new_files" and registered.new_files:
                work.release(rec, ZOOM_PURGE)
            else:
                work.postpone(rec, ZOOM_PURGE, now)
            log.info(
                "recording %s: Zoom %s; deleted once copied",
                rec.id,
                f"has {registered.new_files} new file(s)"
                if result.outcome == "new_files"
                else "is still making a file",
            )
            return result.outcome
        rec.zoom_purged_at = now
        rec.zoom_held_reason = ""
        work.release(rec, ZOOM_PURGE)
        files = []
        for f in rec.files:
            if f.zoom_deleted_at is None:
                f.zoom_deleted_at = now
            if f.state == FileState.VERIFIED:
                f.state = FileState.ZOOM_DELETED
            f.error = ""
            files.append({"id": str(f.id), "type": f.file_type})
        audit(
            session,
            "recording.zoom_copy_deleted",
            organisation_id=rec.organisation_id,
            subject=("recording", rec.id),
            course_id=rec.course_id,
            action="delete",
            recovered_from_trash=result.recovered_from_trash,
            checked="Zoom lists nothing for the class, trash included",
            was_refused_since=rec.zoom_refused_at,
            files=files,
        )
        return "zoom_deleted"

    def failed(
        self,
        session: Session,
        recording_id: uuid.UUID,
        plan: PurgePlan,
        exc: Exception,
        now: dt.datetime,
    ) -> work.Outcome:
        if not isinstance(exc, ZoomError | StillInZoom):
            raise exc  # not Zoom's answer: logged by the caller, the claim runs out
        rec = session.get(Recording, recording_id)
        if rec is None:
            return "missing"
        retry_after = exc.retry_after if isinstance(exc, ZoomRateLimited) else None
        when = work.postpone(rec, ZOOM_PURGE, now, retry_after=retry_after)
        if isinstance(exc, ZoomRateLimited | ZoomServerError | ZoomConnectionError):
            log.warning(
                "recording %s: Zoom did not answer the delete (%s); retrying at %s",
                rec.id,
                exc,
                when.isoformat(timespec="seconds"),
            )
            return "retry"
        # Zoom refused (no permission, a missing scope, bad credentials) or kept a copy: a
        # person must change something in Zoom, so the lead and the admins are told now.
        told = refused(session, rec, describe_error(exc), now)
        log.error(
            "recording %s: Zoom keeps its copy (%s); %s, retrying at %s",
            rec.id,
            exc,
            f"{told} people told" if told else "already told",
            when.isoformat(timespec="seconds"),
        )
        return "refused"


def refused(session: Session, rec: Recording, reason: str, now: dt.datetime) -> int:
    """Zoom will not delete the class: kept for the security review; the first time, on the
    audit trail and told to the organisation's leads and admins. Returns how many were told."""
    from .. import mail
    from ..access import ADMIN, LEAD
    from ..accounts.models import User

    rec.zoom_held_reason = reason[:500]
    if rec.zoom_refused_at is not None:
        return 0
    rec.zoom_refused_at = now
    audit(
        session,
        "recording.zoom_delete_refused",
        organisation_id=rec.organisation_id,
        subject=("recording", rec.id),
        course_id=rec.course_id,
        class_session_id=rec.class_session_id,
        zoom_said=reason[:500],
    )
    if rec.organisation_id is None:
        return 0
    people = session.scalars(
        select(User)
        .where(
            User.organisation_id == rec.organisation_id,
            User.role.in_((LEAD, ADMIN)),
            User.active.is_(True),
        )
        .order_by(User.id)
    ).all()
    if rec.course is not None:
        from ..courses.timetable import local_time

        local = local_time(rec.course, rec.started_at)
        recorded = f"{local:%d %b %Y %H:%M} ({rec.course.timezone})"
    else:
        recorded = f"{rec.started_at:%d %b %Y %H:%M} (UTC)"
    for person in people:
        mail.send(
            session,
            kind="recording.zoom_refused_delete",
            to_address=person.email,
            to_name=person.name,
            organisation_id=rec.organisation_id,
            recording=rec,
            course=rec.course,
            zoom_said=reason,
            recorded=recorded,
            kinds=sorted({f.file_type for f in rec.files}),
        )
    return len(people)


def purge_from_zoom(app: Flask, zoom: ZoomApi, recording_id: uuid.UUID) -> str:
    """Delete everything Zoom has of one recorded class, if nothing of it is still copying."""
    step = PurgeFromZoom(zoom, str(app.config["ZOOM_USER_ID"]))
    outcome = work.run_one(app, ZOOM_PURGE, step, recording_id)
    return "skipped" if outcome in ("skipped", "idle") else str(outcome)


def purge_due(app: Flask, zoom: ZoomApi, *, limit: int = 50) -> dict[str, int]:
    """Every recorded class whose Zoom copy may go now (see :data:`ZOOM_PURGE`)."""
    result: dict[str, int] = {}
    with job_session(app) as session:
        ids = work.due_ids(session, ZOOM_PURGE, utcnow(), limit)
    for recording_id in ids:
        try:
            outcome = purge_from_zoom(app, zoom, recording_id)
        except Exception:
            log.exception("recording %s: deleting Zoom's copy could not be recorded", recording_id)
            outcome = "errors"
        result[outcome] = result.get(outcome, 0) + 1
    return result


# --- the whole path for one file -----------------------------------------------------------------


def process_file(
    app: Flask, file_id: uuid.UUID, *, zoom: ZoomApi, storage: RecordingStorage
) -> str:
    """Move one file as far as it can go now: download -> store -> verify. Zoom's copy goes
    with the whole class afterwards (:func:`purge_due`)."""
    with job_session(app) as session:
        row = session.get(RecordingFile, file_id)
        state = row.state if row is not None else None
    if state != "stored":
        step = CopyFile(zoom, storage, vault.keyring_for(app))
        copied = work.run_one(app, COPY, step, file_id)
        if copied == "discarded":
            storage.delete(blob_key(file_id))
            return "discarded"
        if copied != "stored":
            return "skipped" if copied in ("skipped", "idle") else str(copied)
    return verify_stored(app, file_id, storage)


def recover_interrupted(app: Flask, storage: RecordingStorage) -> dict[str, int]:
    """At worker start: remove partial blobs and give every interrupted download back.

    Only the worker holding the scheduler lease downloads, so at its start nothing is really
    downloading: every such row is a leftover of a worker that was killed.
    """
    removed = storage.cleanup_partials()
    with job_session(app) as session:
        result = session.execute(
            update(RecordingFile)
            .where(RecordingFile.state == FileState.DOWNLOADING)
            .values(
                {
                    # Given back to the queue: due now, held by nobody.
                    COPY.due.key: None,
                    COPY.claimed_until.key: None,
                    RecordingFile.state.key: FileState.PENDING,
                    RecordingFile.error.key: "interrupted when the worker stopped; copied again",
                }
            )
        )
        resumed = changed_rows(result)
    if removed or resumed:
        log.warning(
            "recovered after an interrupted worker: %d partial file(s) removed, "
            "%d download(s) resumed",
            removed,
            resumed,
        )
    return {"partials_removed": removed, "resumed": resumed}


def known_meeting_ids(session: Session) -> set[int]:
    return set(
        session.scalars(select(Course.zoom_meeting_id).where(Course.zoom_meeting_id.is_not(None)))
    )


def reconcile_meetings(
    app: Flask, meetings: Iterable[MeetingRecordings], *, known: set[int]
) -> dict[str, int]:
    """Register what Zoom lists for companion's meetings and companion does not have yet."""
    result = {"recordings": 0, "files": 0, "ignored": 0}
    for meeting in meetings:
        try:
            meeting_id = int(meeting.get("id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            result["ignored"] += 1
            continue
        if meeting_id not in known:
            result["ignored"] += 1  # not a course meeting: not ours to copy and delete
            continue
        with job_session(app) as session:
            registered = record_from_zoom(
                session, meeting, download_token=None, source="reconcile", now=utcnow()
            )
        if registered.created:
            result["recordings"] += 1
            log.warning(
                "reconcile: recording %s of meeting %s had not arrived by webhook; taken now",
                registered.recording.id,
                meeting_id,
            )
        result["files"] += registered.new_files
    return result
