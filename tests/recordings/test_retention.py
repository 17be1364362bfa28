"""Retention: what is due is deleted by destroying its file keys, then its blobs; holds win;
the sweep is safe to run twice, after a crash and after missed days, and reads only what is due."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.db import utcnow
from companion.recordings import crypto, retention
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import Hold, Recording, RecordingFile

from ..factories import class_start
from .vault_helpers import Vault


@pytest.fixture
def stored(vault: Vault, course_in_zoom: Any) -> Recording:
    """A class recorded, copied and verified (the usual state after ingest)."""
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    (rec,) = vault.recordings()
    assert {f.state for f in rec.files} == {"zoom_deleted"}
    return rec


def deletions(db_session: Session) -> list[AuditEvent]:
    db_session.expire_all()
    return list(
        db_session.scalars(select(AuditEvent).where(AuditEvent.kind == "recording.deleted"))
    )


def sweep(app: Any, vault: Vault, now: dt.datetime) -> dict[str, int]:
    return retention.sweep(app, vault.storage, now=now)


def test_nothing_is_deleted_before_its_date(app: Any, vault: Vault, stored: Recording) -> None:
    assert sweep(app, vault, stored.delete_after - dt.timedelta(seconds=1)) == {}
    assert vault.recordings()[0].state == "active"
    assert len(vault.blob_names()) == 2


def test_a_due_recording_is_crypto_shredded_and_the_deletion_recorded(
    app: Any, vault: Vault, stored: Recording, db_session: Session
) -> None:
    blobs = vault.blob_names()
    blob_bytes = (vault.storage.root / blobs[0]).read_bytes()
    assert sweep(app, vault, stored.delete_after) == {"deleted": 1}

    (rec,) = vault.recordings()
    assert rec.state == "deleted" and rec.deleted_at is not None
    assert "retention" in rec.delete_reason
    for f in rec.files:
        assert f.state == "deleted"
        assert f.wrapped_dek is None and f.kek_id is None  # the keys are gone for good
    assert vault.blob_names() == []
    # Even a copy of a blob made earlier (a backup) is now useless: no key anywhere.
    assert blob_bytes[:4] == b"KREC"

    (audit,) = deletions(db_session)
    detail = json.loads(audit.detail)
    assert audit.subject_id == str(rec.id) and audit.actor == "system"
    assert detail["reason"] == "retention" and detail["retention_days"] == 30
    assert sorted(f["type"] for f in detail["files"]) == ["M4A", "MP4"]
    assert "crypto-shredding" in detail["method"]
    # What, when and why; never content (no names of files' bytes, no keys).
    assert "wrapped" not in audit.detail and "KREC" not in audit.detail


def test_running_the_sweep_twice_deletes_once(
    app: Any, vault: Vault, stored: Recording, db_session: Session
) -> None:
    later = stored.delete_after + dt.timedelta(days=3)  # after missed days, too
    assert sweep(app, vault, later) == {"deleted": 1}
    assert sweep(app, vault, later) == {}
    assert len(deletions(db_session)) == 1


def test_a_held_recording_is_never_deleted(
    app: Any, vault: Vault, stored: Recording, db_session: Session, lead: Any
) -> None:
    hold = Hold(
        organisation_id=stored.organisation_id,
        class_session_id=stored.class_session_id,
        placed_by_id=lead.id,
        reason="test hold",
        placed_at=stored.ended_at,
    )
    db_session.add(hold)
    db_session.flush()
    # The flag has fallen behind (say, a hold written by another process): still kept.
    assert sweep(app, vault, stored.delete_after + dt.timedelta(days=400)) in ({}, {"held": 1})
    rec = vault.recordings()[0]
    assert rec.state == "active" and rec.on_hold
    assert all(f.wrapped_dek is not None for f in rec.files)
    assert len(vault.blob_names()) == 2

    hold.released_at = stored.delete_after
    rec.on_hold = False
    db_session.flush()
    assert sweep(app, vault, stored.delete_after + dt.timedelta(days=400)) == {"deleted": 1}


def test_a_crash_after_the_keys_are_destroyed_is_finished_by_the_next_sweep(
    app: Any, vault: Vault, stored: Recording, db_session: Session, monkeypatch: Any
) -> None:
    real_delete = vault.storage.delete
    calls = []

    def crash(key: str) -> bool:
        calls.append(key)
        raise OSError("the machine lost power")

    monkeypatch.setattr(vault.storage, "delete", crash)
    assert sweep(app, vault, stored.delete_after) == {"errors": 1}
    rec = vault.recordings()[0]
    assert rec.state == "deleting"
    assert all(f.wrapped_dek is None for f in rec.files)  # unreadable already
    assert len(vault.blob_names()) == 2

    monkeypatch.setattr(vault.storage, "delete", real_delete)
    # Resumed even though nothing new is due, and recorded only once.
    assert sweep(app, vault, stored.delete_after) == {"deleted": 1}
    assert vault.recordings()[0].state == "deleted"
    assert vault.blob_names() == []
    assert len(deletions(db_session)) == 1


def test_the_retention_period_is_the_organisations(
    vault: Vault, course_in_zoom: Any, org: Any, db_session: Session
) -> None:
    org.recording_retention_days = 7
    db_session.flush()
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    rec = vault.recordings()[0]
    assert rec.delete_after == rec.ended_at + dt.timedelta(days=7)


def test_a_file_never_copied_is_removed_from_zoom_when_its_time_comes(
    app: Any, vault: Vault, course_in_zoom: Any, clock: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()  # registered, never downloaded
    rec = vault.recordings()[0]
    assert sweep(app, vault, rec.delete_after) == {"deleted": 1}
    assert {f.state for f in vault.files()} == {"deleted"}
    clock.advance(rec.delete_after - utcnow())  # the day the sweep ran
    # Zoom's copy of the class goes for good without being copied (retention came first).
    assert recording_jobs.delete_from_zoom_pending(app) == {"zoom_deleted": 1}
    assert vault.zoom_holds(rec.zoom_uuid) == []


def test_the_daily_job_uses_the_apps_storage(app: Any, vault: Vault, stored: Recording) -> None:
    assert recording_jobs.retention_sweep(app) == {}  # nothing due today


def bulk_recordings(session: Session, org_id: int, n_due: int, n_later: int, now: dt.datetime):
    rows = []
    for i in range(n_due + n_later):
        due = i < n_due
        ended = now - dt.timedelta(days=40 if due else 5, minutes=i)
        rows.append(
            Recording(
                id=uuid.uuid4(),
                organisation_id=org_id,
                zoom_meeting_id=1000 + i,
                zoom_uuid=f"bulk-{i}-{uuid.uuid4()}",
                started_at=ended - dt.timedelta(minutes=45),
                ended_at=ended,
                duration_minutes=45,
                delete_after=ended + dt.timedelta(days=30),
                state="active",
            )
        )
    session.add_all(rows)
    session.flush()
    return rows


def test_the_sweep_reads_only_what_is_due(
    app: Any, vault: Vault, org: Any, db_session: Session
) -> None:
    now = class_start(0)
    bulk_recordings(db_session, org.id, n_due=5, n_later=300, now=now)
    statements: list[str] = []
    rows_read = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", before)
    try:
        with db_session.no_autoflush:
            rows_read = retention.due(db_session, now)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert len(rows_read) == 5
    assert sweep(app, vault, now) == {"deleted": 5}
    left = db_session.scalars(select(Recording.state).where(Recording.zoom_uuid.like("bulk-%")))
    assert sorted(set(left)) == ["active", "deleted"]
    # The query names the indexed columns the sweep relies on.
    due_query = [s for s in statements if "delete_after" in s]
    assert due_query and "state" in due_query[-1]


def test_keys_are_really_gone_a_blob_copy_cannot_be_read(
    app: Any, vault: Vault, stored: Recording, db_session: Session
) -> None:
    f = stored.files[0]
    copy = (vault.storage.root / f.blob_key).read_bytes()
    wrapped = bytes(f.wrapped_dek)
    sweep(app, vault, stored.delete_after)
    db_session.expire_all()
    row = db_session.get(RecordingFile, f.id)
    assert row.wrapped_dek is None
    # Someone kept the blob: without the key row it is noise (the key is not in the blob).
    assert wrapped not in copy and len(copy) > crypto.HEADER_SIZE


def test_a_hold_placed_after_the_sweep_read_its_list_still_wins(
    app: Any, vault: Vault, stored: Recording, db_session: Session, lead: Any, monkeypatch: Any
) -> None:
    """The due list is read first, the keys destroyed after: a hold placed in between (by the
    lead, in another request) is seen by the check inside the transaction that destroys them."""
    from companion.recordings import concerns

    real_due = retention.due
    held: list[uuid.UUID] = []

    def due_then_hold(session: Session, now: dt.datetime, limit: int = retention.BATCH) -> Any:
        ids = real_due(session, now, limit)
        if not held:
            assert ids == [stored.id]  # listed as due: no hold yet
            hold = concerns.place_hold(
                db_session, lead, recording_id=stored.id, reason="concern raised", now=now
            )
            db_session.flush()
            held.append(hold.recording_id)
        return ids

    monkeypatch.setattr(retention, "due", due_then_hold)
    assert sweep(app, vault, stored.delete_after) == {"held": 1}
    rec = vault.recordings()[0]
    assert rec.state == "active" and rec.on_hold
    assert all(f.wrapped_dek is not None for f in rec.files)
    assert len(vault.blob_names()) == 2
    assert deletions(db_session) == []
