"""Safeguarding access to recordings: only the safeguarding lead, with a reason, every time.

* :func:`list_recordings` / :func:`get_recording` show the lead what is kept.
* :func:`grant_access` is what the reason form calls: it records the reason (and incident
  reference) in the audit trail with the file id and returns a short-lived grant for this lead
  in this signed-in browser only. The grant token goes into the stream URL; only its hash is
  stored, and it is worthless without the staff session it was made in.
* :func:`use_grant` checks a grant on each request of the stream (a <video> element makes many
  range requests for one viewing) and records the first use as the retrieval.

Nobody else can list or fetch a recording; the views refuse other roles before these run, and
these refuse them again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, selectinload

from ..access import LEAD
from ..accounts.models import StaffSession, User
from ..audit.services import record as audit
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from .models import READABLE_STATES, Recording, RecordingFile, RecordingGrant, RecordingState

# A grant lapses this long after its last use, and never lives longer than the absolute limit.
GRANT_IDLE = dt.timedelta(minutes=5)
GRANT_ABSOLUTE = dt.timedelta(hours=2)
MIN_REASON = 10
MAX_REASON = 2000
MAX_INCIDENT_REF = 100

CONTENT_TYPES = {
    "MP4": "video/mp4",
    "M4A": "audio/mp4",
    "TRANSCRIPT": "text/vtt",
    "CC": "text/vtt",
    "CHAT": "text/plain",
    "TIMELINE": "application/json",
    "SUMMARY": "application/json",
    "CSV": "text/csv",
}
EXTENSIONS = {
    "MP4": "mp4",
    "M4A": "m4a",
    "TRANSCRIPT": "vtt",
    "CC": "vtt",
    "CHAT": "txt",
    "TIMELINE": "json",
    "SUMMARY": "json",
    "CSV": "csv",
}


def _require_lead(actor: User) -> None:
    if actor is None or actor.role != LEAD:
        raise Forbidden("Only the safeguarding lead can see recordings.")


def _visible(actor: User) -> Select[Recording]:
    # Recordings whose organisation is unknown (a meeting no course owns) are the lead's too.
    return select(Recording).where(
        or_(Recording.organisation_id == actor.organisation_id, Recording.organisation_id.is_(None))
    )


def list_recordings(
    session: Session, actor: User, *, include_deleted: bool = False, limit: int = 200
) -> list[Recording]:
    _require_lead(actor)
    query = _visible(actor).options(
        selectinload(Recording.files),
        selectinload(Recording.course),
        selectinload(Recording.class_session),
    )
    if not include_deleted:
        query = query.where(Recording.state == RecordingState.ACTIVE)
    return list(session.scalars(query.order_by(Recording.started_at.desc()).limit(limit)))


def get_recording(session: Session, actor: User, recording_id: uuid.UUID) -> Recording:
    _require_lead(actor)
    rec = session.scalars(_visible(actor).where(Recording.id == recording_id)).first()
    if rec is None:
        raise NotFound("No such recording.")
    return rec


def get_file(
    session: Session, actor: User, recording_id: uuid.UUID, file_id: uuid.UUID
) -> RecordingFile:
    rec = get_recording(session, actor, recording_id)
    for f in rec.files:
        if f.id == file_id:
            return f
    raise NotFound("No such file in this recording.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewGrant:
    grant: RecordingGrant
    token: str


def grant_access(
    session: Session,
    actor: User,
    staff_session: StaffSession | None,
    *,
    recording_id: uuid.UUID,
    file_id: uuid.UUID,
    reason: str,
    incident_ref: str = "",
    ip: str = "",
    now: dt.datetime,
) -> NewGrant:
    """The lead states why; the reason is in the audit trail before any byte can be sent."""
    _require_lead(actor)
    if staff_session is None:
        raise Forbidden("Recordings can be opened only from a signed-in browser.")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise ValidationError(
            f"Say why you need this recording (at least {MIN_REASON} characters).", field="reason"
        )
    if len(reason) > MAX_REASON:
        raise ValidationError(f"Keep the reason under {MAX_REASON} characters.", field="reason")
    incident_ref = (incident_ref or "").strip()
    if len(incident_ref) > MAX_INCIDENT_REF:
        raise ValidationError(
            f"Keep the incident reference under {MAX_INCIDENT_REF} characters.",
            field="incident_ref",
        )
    file = get_file(session, actor, recording_id, file_id)
    if file.recording.state != RecordingState.ACTIVE or file.state not in READABLE_STATES:
        raise Conflict("This file cannot be opened: it is not stored and verified (or deleted).")
    token = secrets.token_urlsafe(32)
    grant = RecordingGrant(
        token_hash=hash_token(token),
        file_id=file.id,
        user_id=actor.id,
        staff_session_id=staff_session.id,
        reason=reason,
        incident_ref=incident_ref,
        created_at=now,
        expires_at=now + GRANT_IDLE,
        absolute_expires_at=now + GRANT_ABSOLUTE,
    )
    session.add(grant)
    session.flush()
    rec = file.recording
    audit(
        session,
        "recording.access_granted",
        actor=actor,
        ip=ip,
        subject=("recording_file", file.id),
        course_id=rec.course_id,
        recording_id=str(rec.id),
        class_session_id=rec.class_session_id,
        file_type=file.file_type,
        grant_id=grant.id,
        reason=reason,
        incident_ref=incident_ref,
    )
    return NewGrant(grant, token)


def use_grant(
    session: Session,
    actor: User,
    staff_session: StaffSession | None,
    token: str,
    *,
    ip: str = "",
    what: str = "",
    now: dt.datetime,
    use: bool = True,
) -> RecordingGrant:
    """The grant behind a stream URL, if it is this lead's, in this browser, and still valid.

    Each use pushes the idle expiry forward (within the absolute limit); the first use is
    recorded as the retrieval. ``use=False`` only checks (the player page). A refusal is
    recorded too and looks like "not found".
    """
    _require_lead(actor)
    grant = None
    if staff_session is not None and isinstance(token, str) and 20 <= len(token) <= 100:
        grant = session.scalars(
            select(RecordingGrant).where(RecordingGrant.token_hash == hash_token(token))
        ).first()
    problem = None
    if grant is None:
        problem = "unknown grant"
    elif (
        grant.user_id != actor.id
        or staff_session is None
        or grant.staff_session_id != staff_session.id
    ):
        problem = "grant of another person or browser"
    elif now >= grant.expires_at or now >= grant.absolute_expires_at:
        problem = "grant expired"
    elif (
        grant.file.recording.state != RecordingState.ACTIVE
        or grant.file.state not in READABLE_STATES
    ):
        problem = "file no longer readable"
    if problem is not None:
        audit(
            session,
            "recording.access_refused",
            actor=actor,
            ip=ip,
            subject=("recording_file", grant.file_id) if grant is not None else None,
            problem=problem,
        )
        raise NotFound(
            "This recording link has expired or belongs to another session. Open the recording "
            "again from its page and state the reason."
        )
    assert grant is not None
    if not use:
        return grant
    if grant.first_used_at is None:
        grant.first_used_at = now
        rec = grant.file.recording
        audit(
            session,
            "recording.retrieved",
            actor=actor,
            ip=ip,
            subject=("recording_file", grant.file_id),
            course_id=rec.course_id,
            recording_id=str(rec.id),
            grant_id=grant.id,
            request=what[:100],
        )
    grant.last_used_at = now
    grant.uses += 1
    grant.expires_at = min(now + GRANT_IDLE, grant.absolute_expires_at)
    session.flush()
    return grant


def content_type(file: RecordingFile) -> str:
    return CONTENT_TYPES.get(file.file_type, "application/octet-stream")


def download_name(file: RecordingFile) -> str:
    """A server-chosen ASCII file name (never anything a user typed)."""
    rec = file.recording
    ext = EXTENSIONS.get(file.file_type) or (
        file.file_extension.lower() if file.file_extension.isalnum() else "bin"
    )
    course = f"course{rec.course_id}" if rec.course_id else "unmatched"
    return f"recording-{rec.started_at:%Y%m%d-%H%M}-{course}-{file.file_type.lower()}.{ext}"


def record_refused(
    session: Session, *, path: str, method: str, ip: str, actor: User | None
) -> None:
    """An attempt on a recording page by someone who may not see recordings."""
    audit(
        session,
        "recording.access_refused",
        actor=actor,
        actor_label=None if actor is not None else "anonymous",
        ip=ip,
        method=method,
        path=path[:300],
        problem="not signed in as the safeguarding lead",
    )


def record_integrity_failure(
    session: Session,
    actor: User,
    file_id: uuid.UUID,
    *,
    ip: str = "",
    what: str = "",
    now: dt.datetime,
) -> int:
    """A stored copy failed its integrity check while being served: on the trail, every time;
    the file is marked damaged and, the first time, the organisation's leads and admins are
    told. Returns how many people were told."""
    from .. import mail
    from ..access import ADMIN

    file = session.get(RecordingFile, file_id, with_for_update=True)
    if file is None:  # pragma: no cover - the caller just read it
        return 0
    rec = file.recording
    first = file.integrity_failed_at is None
    if first:
        file.integrity_failed_at = now
    audit(
        session,
        "recording.integrity_failed",
        actor=actor,
        ip=ip,
        subject=("recording_file", file.id),
        course_id=rec.course_id,
        recording_id=str(rec.id),
        file_type=file.file_type,
        request=what[:100],
        first=first,
    )
    if not first:
        session.flush()
        return 0
    organisation_id = rec.organisation_id or actor.organisation_id
    people = session.scalars(
        select(User)
        .where(
            User.organisation_id == organisation_id,
            User.role.in_((LEAD, ADMIN)),
            User.active.is_(True),
        )
        .order_by(User.id)
    ).all()
    for person in people:
        mail.send(
            session,
            kind="recording_integrity_failed",
            to_address=person.email,
            to_name=person.name,
            organisation_id=organisation_id,
            recording=rec,
            file=file,
        )
    session.flush()
    return len(people)
