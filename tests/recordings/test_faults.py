"""Faults that must lose nothing: a cut download, a full disk, the same webhook three times,
Zoom refusing to delete (429/500), HTML instead of a file, a wrong size, an expired token."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from companion.audit.models import AuditEvent
from companion.recordings import ingest
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import Recording
from companion.recordings.storage import LocalEncryptedStorage, StorageError, _error
from companion.zoom.sandbox import media

from .vault_helpers import Vault, file_of


def audits(db_session: Any, kind: str) -> list[AuditEvent]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
        )
    )


def partials(vault: Vault) -> list[str]:
    return [n for n in vault.blob_names() if n.endswith(".partial")]


def test_a_download_cut_halfway_is_retried_and_leaves_nothing_behind(
    vault: Vault, course_in_zoom: Any, db_session: Any, clock: Any
) -> None:
    cls = course_in_zoom.classes[0]
    size = 3 * (1 << 20) + 17
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, recording_bytes=size)
    vault.process_webhooks()
    # The video's download is cut (the files are copied in no set order, so name it).
    video = file_of(vault.files(), "MP4")
    vault.fault(
        path=f"/rec/files/{video.zoom_file_id}/*", method="GET", truncate_after=size // 2, count=1
    )

    outcome = vault.ingest()
    assert outcome.get("failed") == 1, outcome
    mp4 = file_of(vault.files(), "MP4")
    assert mp4.state == "failed"
    assert "cut" in mp4.error or "ended after" in mp4.error, mp4.error
    assert mp4.wrapped_dek is None and mp4.next_attempt_at is not None
    # Nothing half-written stays on disk, and Zoom still has the file.
    assert partials(vault) == []
    assert f"{mp4.id}.krec" not in vault.blob_names()
    rec = vault.recordings()[0]
    assert mp4.zoom_file_id in vault.zoom_files(rec.zoom_uuid)
    assert audits(db_session, "recording.ingest_failed")

    assert vault.ingest() == {}  # not due yet
    clock.advance(minutes=5)
    assert vault.ingest() == {"verified": 1, "zoom_deleted": 1}
    assert vault.zoom_holds(rec.zoom_uuid) == []
    mp4 = file_of(vault.files(), "MP4")
    assert mp4.state == "zoom_deleted" and mp4.attempts == 2 and mp4.error == ""
    assert mp4.sha256 == media.synthetic_sha256(size, mp4.zoom_file_id)


class FullDisk(LocalEncryptedStorage):
    """A blob folder whose disk fills up after ``room`` bytes of any one write."""

    def __init__(self, root: Any, room: int):
        super().__init__(root)
        self.room = room
        self.full = True

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[Any]:
        with super().open_writer(key) as blob:
            if not self.full:
                yield blob
                return
            written = 0
            real_write = blob.write

            def write(data: Any) -> int:
                nonlocal written
                if written + len(data) > self.room:
                    raise _error("write", key, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                written += len(data)
                return real_write(data)

            blob.write = write  # type: ignore[method-assign]
            yield blob


def test_a_full_disk_fails_visibly_and_keeps_zooms_copy(
    vault: Vault, course_in_zoom: Any, db_session: Any, app: Any, clock: Any
) -> None:
    disk = FullDisk(vault.storage.root, room=2 << 20)
    app.extensions["companion.recordings.storage"] = disk
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, recording_bytes=6 << 20)
    vault.process_webhooks()

    outcome = vault.ingest()
    assert outcome == {"failed": 1, "verified": 1}, outcome  # the small M4A fitted
    mp4 = file_of(vault.files(), "MP4")
    assert mp4.state == "failed"
    assert "disk is full" in mp4.error
    assert partials(vault) == [] and f"{mp4.id}.krec" not in vault.blob_names()
    rec = vault.recordings()[0]
    # Zoom keeps the class, the M4A too: it goes with the rest once the video is copied.
    assert mp4.zoom_file_id in vault.zoom_files(rec.zoom_uuid)
    assert len(vault.zoom_files(rec.zoom_uuid)) == 2
    (event,) = audits(db_session, "recording.ingest_failed")
    assert '"code": "disk_full"' in event.detail

    disk.full = False
    clock.advance(minutes=5)
    assert vault.ingest() == {"verified": 1, "zoom_deleted": 1}
    assert vault.zoom_holds(rec.zoom_uuid) == []


def test_the_same_webhook_three_times_makes_one_recording(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    completed = next(e for e in summary["events"] if e["event"] == "recording.completed")
    from companion.zoom.sandbox.delivery import redeliver

    # Zoom sends it again (a slow answer, its own retries): twice more, and once mid-ingest.
    redeliver(vault.sandbox, completed["delivery_id"])
    vault.process_webhooks()
    redeliver(vault.sandbox, completed["delivery_id"])
    vault.work()

    assert len(vault.recordings()) == 1
    files = vault.files()
    assert len(files) == 2 and {f.state for f in files} == {"zoom_deleted"}
    assert all(f.attempts == 1 for f in files)  # each downloaded once
    events = [e for e in vault.events() if e.event == "recording.completed"]
    assert len(events) == 1 and events[0].redeliveries == 2
    assert len(audits(db_session, "recording.received")) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_zoom_busy_with_the_delete_keeps_the_recording_and_retries_later(
    status: int, vault: Vault, course_in_zoom: Any, app: Any, clock: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    fault: dict[str, Any] = {"path": "/v2/meetings/*/recordings", "method": "DELETE"}
    fault.update(status=status, count=50)
    if status == 429:
        fault["retry_after"] = "120"
    vault.fault(**fault)

    assert vault.ingest() == {"verified": 2, "retry": 1}
    files = vault.files()
    assert {f.state for f in files} == {"verified"}
    assert all(f.wrapped_dek is not None for f in files)
    rec = vault.recordings()[0]
    assert len(vault.zoom_files(rec.zoom_uuid)) == 2
    # Zoom being busy is not a refusal: retried quietly, nobody is told.
    assert rec.zoom_refused_at is None and rec.zoom_held_reason == ""

    assert recording_jobs.delete_from_zoom_pending(app) == {}  # waits its turn
    vault.sandbox.clear_faults()
    clock.advance(minutes=10)
    assert recording_jobs.delete_from_zoom_pending(app) == {"zoom_deleted": 1}
    assert {f.state for f in vault.files()} == {"zoom_deleted"}
    assert vault.zoom_holds(rec.zoom_uuid) == []


def test_an_html_page_instead_of_the_file_is_a_failure(vault: Vault, course_in_zoom: Any) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    vault.fault(path="/rec/download/*", method="GET", html=True, count=4)
    outcome = vault.ingest()
    assert outcome.get("failed", 0) >= 1, outcome
    failed = [f for f in vault.files() if f.state == "failed"]
    assert failed and all("HTML" in f.error or "web page" in f.error for f in failed)
    assert partials(vault) == []


def test_a_size_other_than_zooms_file_size_is_a_failure(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    m4a = file_of(vault.files(), "M4A")
    m4a.expected_size = (m4a.expected_size or 0) + 1
    db_session.commit()
    vault.ingest()
    m4a = file_of(vault.files(), "M4A")
    assert m4a.state == "failed" and "said the file has" in m4a.error
    assert f"{m4a.id}.krec" not in vault.blob_names()


def test_an_expired_event_token_falls_back_to_the_api_token(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    rec = vault.recordings()[0]
    rec.download_token = "an-expired-download-token"
    db_session.commit()
    assert vault.ingest() == {"verified": 2, "zoom_deleted": 1}


def test_wrong_content_types_are_refused() -> None:
    assert ingest.content_type_ok("MP4", "video/mp4")
    assert ingest.content_type_ok("MP4", "application/octet-stream")
    assert not ingest.content_type_ok("MP4", "text/html")
    assert not ingest.content_type_ok("MP4", "application/json")
    assert not ingest.content_type_ok("M4A", "video/mp4")
    assert ingest.content_type_ok("TRANSCRIPT", "text/vtt")
    assert not ingest.content_type_ok("TRANSCRIPT", "text/html")


def test_a_blob_that_fails_verification_is_not_verified_and_zoom_keeps_its_copy(
    vault: Vault, course_in_zoom: Any, db_session: Any, app: Any, monkeypatch: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()

    real = ingest.mark_stored

    def tamper(session: Any, claim: Any, blob: Any, keyring: Any, now: Any) -> bool:
        path = vault.storage.root / blob.key
        data = bytearray(path.read_bytes())
        data[100] ^= 1  # a bit flips on disk between the write and the check
        path.write_bytes(bytes(data))
        return real(session, claim, blob, keyring, now)

    monkeypatch.setattr(ingest, "mark_stored", tamper)
    outcome = vault.ingest()
    assert outcome == {"failed": 2}, outcome
    files = vault.files()
    assert {f.state for f in files} == {"failed"}
    assert all("corrupted or tampered" in f.error for f in files)
    assert vault.blob_names() == []
    rec = db_session.scalars(select(Recording)).one()
    assert len(vault.zoom_files(rec.zoom_uuid)) == 2


def test_storage_errors_name_the_disk(tmp_path: Any) -> None:
    err = _error("write", "x.krec", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, StorageError) and err.code == "disk_full"
