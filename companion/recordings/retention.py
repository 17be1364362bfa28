"""Retention: delete what is due by destroying its file keys (crypto-shredding), then its blobs.

Each recording is deleted through its own small state machine, every step committed::

    active --(1: keys destroyed + audit event, one transaction)--> deleting
           --(2: blobs unlinked, folder synced)--> (3) deleted

After step 1 the recording cannot be read by anyone, whatever happens to the blobs or to
backups of them. A crash after step 1 leaves the recording ``deleting``, and the next sweep
finishes it; running the sweep twice, or after days without one, deletes each recording once.
A recording on hold is never deleted: it is skipped by the query and checked again, against the
holds themselves, inside the transaction that destroys the keys.

The sweep reads only what is due (``state = 'active' AND delete_after <= now``, indexed by
``ix_recordings_state_delete_after``), plus any recording left ``deleting`` by a crash.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.services import record as audit
from ..db import job_session, utcnow
from . import concerns
from .models import FileState, Recording, RecordingState
from .storage import RecordingStorage

log = logging.getLogger(__name__)

BATCH = 500


def due(session: Session, now: dt.datetime, limit: int = BATCH) -> list[uuid.UUID]:
    """Recordings to delete now: unfinished deletions first, then what is due and not held."""
    unfinished = session.scalars(
        select(Recording.id).where(Recording.state == RecordingState.DELETING).limit(limit)
    ).all()
    room = limit - len(unfinished)
    if room <= 0:
        return list(unfinished)
    ready = session.scalars(
        select(Recording.id)
        .where(
            Recording.state == RecordingState.ACTIVE,
            Recording.delete_after <= now,
            Recording.on_hold.is_(False),
        )
        .order_by(Recording.delete_after)
        .limit(room)
    ).all()
    return [*unfinished, *ready]


def destroy_keys(session: Session, recording_id: uuid.UUID, now: dt.datetime) -> str:
    """Step 1: destroy every file key of a due recording and record why, in one transaction."""
    rec = session.get(Recording, recording_id, with_for_update=True)
    if rec is None:
        return "missing"
    if rec.state != RecordingState.ACTIVE:
        return rec.state
    if rec.delete_after > now:
        return "not_due"
    if concerns.hold_in_force(session, rec):
        rec.on_hold = True  # the flag had fallen behind a hold; never delete a held recording
        return "held"
    days = (rec.delete_after - rec.ended_at).days
    files = []
    for f in rec.files:
        files.append({"id": str(f.id), "type": f.file_type, "size": f.size, "state": f.state})
        f.wrapped_dek = None
        f.kek_id = None
        if f.state != FileState.DELETED:
            f.state = FileState.DELETED
            f.deleted_at = now
            f.claimed_until = None
            f.next_attempt_at = None
    # Zoom's copy of the class goes too if it is still there: with no file left to copy, the
    # Zoom purge (ingest.ZOOM_PURGE) takes the recording, copying nothing new.
    rec.state = RecordingState.DELETING
    rec.download_token = None
    rec.delete_reason = (
        f"retention: kept {days} days after the class, due {rec.delete_after:%Y-%m-%d}"
    )
    # What, when and why; never any content.
    audit(
        session,
        "recording.deleted",
        organisation_id=rec.organisation_id,
        subject=("recording", rec.id),
        course_id=rec.course_id,
        class_session_id=rec.class_session_id,
        class_started_at=rec.started_at,
        reason="retention",
        retention_days=days,
        delete_after=rec.delete_after,
        method="crypto-shredding: file keys destroyed, blobs removed",
        files=files,
    )
    session.flush()
    return "keys_destroyed"


def remove_blobs(app: Flask, recording_id: uuid.UUID, storage: RecordingStorage) -> str:
    """Steps 2 and 3: unlink the (now unreadable) blobs, then mark the recording deleted."""
    with job_session(app) as session:
        rec = session.get(Recording, recording_id)
        if rec is None or rec.state != RecordingState.DELETING:
            return "skipped"
        keys = [f.blob_key for f in rec.files if f.blob_key]
    for key in keys:
        storage.delete(key)  # idempotent, and syncs the folder
    with job_session(app) as session:
        rec = session.get(Recording, recording_id, with_for_update=True)
        if rec is None or rec.state != RecordingState.DELETING:
            return "skipped"
        rec.state = RecordingState.DELETED
        rec.deleted_at = utcnow()
        for f in rec.files:
            f.blob_key = None
    return "deleted"


def sweep(
    app: Flask, storage: RecordingStorage, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete every recording that is due; safe to run twice, late, or after a crash."""
    result: Counter[str] = Counter()
    now = now or utcnow()
    seen: set[uuid.UUID] = set()
    while True:
        with job_session(app) as session:
            batch = [i for i in due(session, now) if i not in seen]
        if not batch:
            break
        for recording_id in batch:
            seen.add(recording_id)
            try:
                with job_session(app) as session:
                    step = destroy_keys(session, recording_id, now)
                if step in ("keys_destroyed", "deleting"):
                    result[remove_blobs(app, recording_id, storage)] += 1
                else:
                    result[step] += 1
            except Exception:
                # The recording stays as it was (or "deleting", which the next sweep finishes).
                log.exception("retention: recording %s could not be deleted now", recording_id)
                result["errors"] += 1
    if result.get("deleted"):
        log.info("retention: %d recording(s) deleted by crypto-shredding", result["deleted"])
    return dict(result)


def overdue(session: Session, now: dt.datetime) -> int:
    """How many recordings are past due and not held (for health checks; should be 0)."""
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count(Recording.id)).where(
                Recording.state.in_((RecordingState.ACTIVE, RecordingState.DELETING)),
                Recording.delete_after <= now,
                Recording.on_hold.is_(False),
            )
        )
        or 0
    )
