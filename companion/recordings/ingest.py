"""Copy recordings out of Zoom: register, download, encrypt, verify, then delete Zoom's copy.

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
4. Only a verified file is deleted from Zoom's cloud (to Zoom's trash), as a step on
   :data:`ZOOM_DELETE`. A 429 or 5xx leaves it ``verified`` and it is tried again later.

A failure leaves the file ``failed`` with a clear error and a retry time (the engine's one
backoff: 1, 2, 4 ... minutes, at most six hours), Zoom's copy untouched, and nothing half-written
on disk; it is logged and recorded in the audit trail. A worker killed mid-download leaves its
claim: the next worker's start gives it back at once (:func:`recover_interrupted`), and a claim
that runs out is taken again anyway. A worker killed after Zoom trashed its copy but before that
was recorded asks Zoom again later, and Zoom's "not found" counts as done.

The module runs past 600 lines and is kept whole: the copy and the Zoom-delete steps share one
plan and one recovery story, told above.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from flask import Flask
from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from .. import metrics, work
from ..audit.services import record as audit
from ..courses.models import ClassSession, Course
from ..db import changed_rows, job_session, utcnow
from ..errors import CompanionError, ValidationError
from ..orgs.models import Organisation
from ..zoom import ZoomAuthError, ZoomError, ZoomNotFound, ZoomRateLimited
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
BINARY = ("application/octet-stream", "binary/octet-stream")
NEVER_A_RECORDING = ("text/html", "application/xhtml+xml")


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


def describe_files(obj: Mapping[str, Any]) -> list[FileDescription]:
    """Every completed file of a recording, whatever its type (MP4, M4A, TRANSCRIPT, CHAT, ...)."""
    found = []
    items = [*(obj.get("recording_files") or []), *(obj.get("participant_audio_files") or [])]
    for item in items:
        if not isinstance(item, Mapping):
            continue
        file_id, url = item.get("id"), item.get("download_url")
        if not isinstance(file_id, str) or not file_id or not isinstance(url, str) or not url:
            log.warning("a recording file without id or download URL was skipped: %s", file_id)
            continue
        status = item.get("status")
        if status not in (None, "", "completed"):
            # Still processing at Zoom; the reconcile picks it up once it is complete.
            log.info("recording file %s is %s at Zoom; taken later", file_id, status)
            continue
        size = item.get("file_size")
        found.append(
            FileDescription(
                zoom_file_id=file_id[:128],
                file_type=str(item.get("file_type") or "UNKNOWN").upper()[:32],
                file_extension=str(item.get("file_extension") or "")[:16],
                recording_type=str(item.get("recording_type") or "")[:64],
                download_url=url[:2000],
                size=int(size) if isinstance(size, int) and size >= 0 else None,
                recording_start=parse_time(item.get("recording_start")),
                recording_end=parse_time(item.get("recording_end")),
            )
        )
    return found


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

# Zoom's copy of a verified (or retention-deleted) file, to be put in Zoom's trash; a 429 or 5xx
# waits with the one backoff (or Zoom's Retry-After).
ZOOM_DELETE = work.Queue(
    name="recording_zoom_copies",
    model=RecordingFile,
    id=RecordingFile.id,
    attempts=RecordingFile.zoom_delete_attempts,
    due=RecordingFile.next_attempt_at,
    claimed_until=RecordingFile.claimed_until,
    ready=lambda: and_(
        RecordingFile.state.in_((FileState.VERIFIED, FileState.DELETED)),
        RecordingFile.zoom_deleted_at.is_(None),
    ),
    claim_for=dt.timedelta(minutes=10),
    backoff_base=dt.timedelta(minutes=1),
    backoff_cap=dt.timedelta(hours=6),
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
        work.schedule(row, ZOOM_DELETE, now)  # Zoom's copy may go now
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


# --- 4. delete Zoom's copy -----------------------------------------------------------------------


@dataclass(frozen=True)
class ZoomCopy:
    file_id: uuid.UUID
    zoom_uuid: str
    zoom_file_id: str


class DeleteZoomCopy:
    """Trash Zoom's copy of one file (``work.Step`` on :data:`ZOOM_DELETE`)."""

    def __init__(self, zoom: ZoomApi):
        self.zoom = zoom

    def prepare(self, session: Session, file_id: uuid.UUID, now: dt.datetime) -> ZoomCopy | None:
        row = session.get(RecordingFile, file_id)
        if (
            row is None
            or row.state not in (FileState.VERIFIED, FileState.DELETED)
            or row.zoom_deleted_at
        ):
            return None
        return ZoomCopy(file_id, row.recording.zoom_uuid, row.zoom_file_id)

    def call(self, plan: ZoomCopy) -> str:
        try:
            self.zoom.delete_recording_file(plan.zoom_uuid, plan.zoom_file_id, action="trash")
        except ZoomNotFound:
            return "already_gone"
        return "deleted"

    def record(
        self, session: Session, file_id: uuid.UUID, plan: ZoomCopy, outcome: str, now: dt.datetime
    ) -> work.Outcome:
        row = session.get(RecordingFile, file_id)
        if row is None:
            return "missing"
        row.zoom_deleted_at = now
        row.error = ""
        work.release(row, ZOOM_DELETE)
        if row.state == FileState.VERIFIED:
            row.state = FileState.ZOOM_DELETED
        rec = row.recording
        audit(
            session,
            "recording.zoom_copy_deleted",
            organisation_id=rec.organisation_id,
            subject=("recording_file", row.id),
            course_id=rec.course_id,
            recording_id=str(rec.id),
            file_type=row.file_type,
            zoom_answer=outcome,
        )
        return outcome

    def failed(
        self, session: Session, file_id: uuid.UUID, plan: ZoomCopy, exc: Exception, now: dt.datetime
    ) -> work.Outcome:
        if not isinstance(exc, ZoomError):
            raise exc  # not Zoom's answer: logged by the caller, the claim runs out
        row = session.get(RecordingFile, file_id)
        if row is None:
            return "missing"
        retry_after = exc.retry_after if isinstance(exc, ZoomRateLimited) else None
        when = work.postpone(row, ZOOM_DELETE, now, retry_after=retry_after)
        row.error = f"deleting Zoom's copy failed, retried later: {describe_error(exc)}"[:500]
        log.warning(
            "recording file %s: Zoom did not delete its copy (%s); our copy is kept and "
            "verified, retrying at %s",
            file_id,
            exc,
            when.isoformat(timespec="seconds"),
        )
        return "retry"


def delete_from_zoom(app: Flask, zoom: ZoomApi, file_id: uuid.UUID) -> str:
    """Trash one verified (or retention-deleted) file in Zoom; a Zoom failure is retried later."""
    outcome = work.run_one(app, ZOOM_DELETE, DeleteZoomCopy(zoom), file_id)
    return "skipped" if outcome in ("skipped", "idle") else str(outcome)


# --- the whole path for one file -----------------------------------------------------------------


def process_file(
    app: Flask, file_id: uuid.UUID, *, zoom: ZoomApi, storage: RecordingStorage
) -> str:
    """Move one file as far as it can go now: download -> store -> verify -> delete in Zoom."""
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
    outcome = verify_stored(app, file_id, storage)
    if outcome != "verified":
        return outcome
    deleted = delete_from_zoom(app, zoom, file_id)
    return "zoom_deleted" if deleted in ("deleted", "already_gone") else "verified"


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
