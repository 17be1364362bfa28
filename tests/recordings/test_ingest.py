"""Ingest against the Zoom sandbox: webhook -> job -> download, encrypt, verify -> Zoom delete."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from sqlalchemy import select

from companion.audit.models import AuditEvent
from companion.recordings import crypto, ingest, vault
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import KekCheck
from companion.zoom.sandbox import media

from ..factories import class_start
from .vault_helpers import Vault, file_of


def audit_kinds(db_session: Any, prefix: str = "recording.") -> list[str]:
    db_session.expire_all()
    return [
        e.kind
        for e in db_session.scalars(
            select(AuditEvent).where(AuditEvent.kind.like(prefix + "%")).order_by(AuditEvent.id)
        )
    ]


def decrypt(vault_: Vault, f: Any) -> bytes:
    dek = vault.unwrap(vault_.app, f.kek_id, f.id, f.wrapped_dek)
    with vault_.storage.open_reader(f.blob_key) as fh:
        return b"".join(crypto.decrypt_stream(fh, dek, f.id, f.recording_id))


def test_a_recorded_class_is_copied_verified_and_deleted_from_zoom(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    assert set(vault.webhook_statuses) == {200}

    # The intake only stored the events; nothing was downloaded yet.
    events = vault.events()
    assert {e.event for e in events} >= {"recording.completed", "meeting.ended"}
    assert all(e.status == "pending" for e in events)
    assert vault.recordings() == []

    outcome = vault.work()
    # Two files copied and verified, then the class deleted in Zoom for good, in one go.
    assert outcome == {"verified": 2, "zoom_deleted": 1}, outcome

    statuses = {e.event: e.status for e in vault.events()}
    assert statuses["recording.completed"] == "done"
    assert statuses["meeting.ended"] == "done"  # attendance (issue 7)
    assert statuses["meeting.participant_joined"] == "done"

    (rec,) = vault.recordings()
    assert rec.course_id == course_in_zoom.id
    assert rec.class_session_id == cls.id
    assert not rec.unmatched
    assert rec.zoom_uuid == summary["uuid"]
    assert rec.download_token is None  # no longer needed once every file is in
    assert rec.delete_after.date() == (rec.ended_at.date() + __import__("datetime").timedelta(30))

    files = vault.files()
    assert sorted(f.file_type for f in files) == ["M4A", "MP4"]
    for f in files:
        assert f.state == "zoom_deleted"
        assert f.kek_id == "kek-test" and len(f.wrapped_dek) == crypto.WRAPPED_SIZE
        plain = decrypt(vault, f)
        expected = media.media_bytes(media.VIDEO if f.file_type == "MP4" else media.AUDIO)
        assert plain == expected
        assert f.size == len(expected) and f.sha256 == hashlib.sha256(expected).hexdigest()
        # The blob is ciphertext: the plaintext appears nowhere on disk.
        blob = (vault.storage.root / f.blob_key).read_bytes()
        assert expected[:64] not in blob and blob[:4] == b"KREC"
    # Zoom's copy is gone only now, after verification, and for good: not in Zoom's trash.
    assert vault.zoom_holds(rec.zoom_uuid) == []
    assert rec.zoom_purged_at is not None and rec.zoom_held_reason == ""
    assert vault.blob_names() == sorted(f.blob_key for f in files)
    kinds = audit_kinds(db_session)
    assert kinds.count("recording.received") == 1
    assert kinds.count("recording.zoom_copy_deleted") == 1
    assert db_session.get(KekCheck, "kek-test") is not None


def test_the_kinds_a_review_needs_are_kept_and_the_others_are_not(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    """Video, audio (participant audio too), transcript, chat, captions and timeline are
    registered, captions and timeline although Zoom gives them no id; poll and summary not."""
    now = class_start(1)
    kinds = ("MP4", "M4A", "TRANSCRIPT", "CHAT", "TIMELINE", "CC", "CSV", "SUMMARY")
    obj = {
        "uuid": "abc/def==",
        "id": course_in_zoom.zoom_meeting_id,
        "start_time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration": 45,
        "recording_files": [
            {"file_type": t, "download_url": f"https://zoom.us/rec/{t}"}
            if t in ("CC", "TIMELINE")
            else {"id": f"f-{t}", "file_type": t, "download_url": "https://zoom.us/rec/x"}
            for t in kinds
        ],
        "participant_audio_files": [
            {"id": "pa-1", "file_type": "M4A", "download_url": "https://zoom.us/rec/y"}
        ],
    }
    registered = ingest.record_from_zoom(
        db_session, obj, download_token="t", source="webhook", now=now
    )
    types = sorted(f.file_type for f in registered.recording.files)
    assert types == sorted(["MP4", "M4A", "TRANSCRIPT", "CHAT", "TIMELINE", "CC", "M4A"])
    assert registered.new_files == 7
    no_id = [f for f in registered.recording.files if f.file_type in ("CC", "TIMELINE")]
    assert all(f.zoom_file_id.startswith("noid-") for f in no_id)
    assert no_id[0].zoom_file_id != no_id[1].zoom_file_id
    # Described again (a redelivery, the reconcile): nothing new, the no-id files included.
    again = ingest.record_from_zoom(
        db_session, obj, download_token="t2", source="reconcile", now=now
    )
    assert not again.created and again.new_files == 0


def test_a_recording_of_an_unknown_class_is_kept_and_flagged(
    vault: Vault, course_in_zoom: Any
) -> None:
    # A class at a time the course has none (an extra session the host started).
    odd = class_start(3)
    vault.run_class(course_in_zoom.zoom_meeting_id, odd)
    vault.work()

    (rec,) = vault.recordings()
    assert rec.unmatched and rec.class_session_id is None
    assert rec.course_id == course_in_zoom.id
    assert {f.state for f in vault.files()} == {"zoom_deleted"}


def test_a_meeting_no_course_owns_is_kept_and_flagged_too(vault: Vault, org: Any) -> None:
    meeting_id = vault.meeting(class_start(-3))
    vault.run_class(meeting_id, class_start(1))
    vault.work()
    (rec,) = vault.recordings()
    assert rec.unmatched and rec.course_id is None
    assert rec.organisation_id == org.id  # the only organisation
    assert {f.state for f in vault.files()} == {"zoom_deleted"}


def test_progress_is_logged_for_long_downloads(
    vault: Vault, course_in_zoom: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    monkeypatch.setattr(ingest, "PROGRESS_EVERY", 1 << 20)
    cls = course_in_zoom.classes[0]
    size = 5 * (1 << 20) + 123
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, recording_bytes=size)
    with caplog.at_level(logging.INFO, logger="companion.recordings.ingest"):
        vault.work()
    progress = [r.getMessage() for r in caplog.records if "MiB received" in r.getMessage()]
    assert len(progress) >= 4
    mp4 = file_of(vault.files(), "MP4")
    assert mp4.state == "zoom_deleted" and mp4.size == size
    assert mp4.sha256 == media.synthetic_sha256(size, mp4.zoom_file_id)


def test_a_lost_webhook_is_made_good_by_the_reconcile(
    vault: Vault, course_in_zoom: Any, app: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    # Zoom gave up on the webhook (or it never came): nothing is delivered.
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, deliver=False)
    other = vault.meeting(class_start(-5))  # a meeting no course owns: not ours to take
    vault.run_class(other, class_start(2), deliver=False)

    assert recording_jobs.reconcile(app) == {"recordings": 1, "files": 2, "ignored": 1}
    (rec,) = vault.recordings()
    assert rec.source == "reconcile" and rec.zoom_uuid == summary["uuid"]
    assert rec.class_session_id == cls.id and rec.download_token is None
    # Downloaded with the app's own token (no event token), verified, then deleted from Zoom.
    assert vault.ingest() == {"verified": 2, "zoom_deleted": 1}
    assert vault.zoom_holds(rec.zoom_uuid) == []
    # The webhook arriving late after all changes nothing.
    from companion.zoom.sandbox import deliver_due

    deliver_due(vault.sandbox, force=True)
    vault.work()
    assert len(vault.recordings()) == 2  # the other meeting's event is kept and flagged
    assert [r.unmatched for r in vault.recordings() if r.course_id is None] == [True]
    assert recording_jobs.reconcile(app) == {}  # Zoom has nothing left to give
