"""Recordings leave Zoom completely (issue 12, items 1 and 2), against the Zoom sandbox with
companion's real client: every kind of file Zoom makes, captions and timeline without an id,
the trash, the account setting that stops hosts deleting, and a missing scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from companion.audit.models import AuditEvent
from companion.mail.models import OutboxMessage
from companion.recordings import crypto, ingest, vault
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import RecordingFile
from companion.zoom.sandbox.errors import ZoomApiError
from companion.zoom.sandbox.recordings import DEFAULT_RECORDING_SETTINGS
from companion.zoom.sandbox.store import dumps

from ..test_security_review import PAGE, section
from .vault_helpers import Vault

EVERY_KIND = {k: True for k in DEFAULT_RECORDING_SETTINGS}
KEPT = ["CC", "CHAT", "M4A", "M4A", "M4A", "MP4", "TIMELINE", "TRANSCRIPT"]


def plain(vault_: Vault, f: RecordingFile) -> bytes:
    dek = vault.unwrap(vault_.app, f.kek_id, f.id, f.wrapped_dek)
    with vault_.storage.open_reader(f.blob_key) as fh:
        return b"".join(crypto.decrypt_stream(fh, dek, f.id, f.recording_id))


def kinds(db_session: Any, kind: str) -> list[AuditEvent]:
    db_session.expire_all()
    return list(db_session.scalars(select(AuditEvent).where(AuditEvent.kind == kind)))


def mails(db_session: Any, kind: str) -> list[OutboxMessage]:
    db_session.expire_all()
    return list(db_session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))


def test_every_kind_of_file_leaves_zoom_and_the_review_kinds_are_kept(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    vault.sandbox.set_recording_settings(EVERY_KIND)
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(
        course_in_zoom.zoom_meeting_id, cls.starts_at, participants=["Ava Child"]
    )
    # 8 files, and the teacher's and the child's own audio.
    assert len(vault.zoom_holds(summary["uuid"])) == 10

    outcome = vault.work()
    assert outcome == {"verified": 8, "zoom_deleted": 1}, outcome
    (rec,) = vault.recordings()
    files = vault.files()
    # Video, audio (the class's and each participant's), transcript, chat, captions, timeline:
    # in the vault, encrypted like the video. Poll and AI summary: not kept.
    assert sorted(f.file_type for f in files) == KEPT
    assert {f.state for f in files} == {"zoom_deleted"}
    by_type = {f.file_type: f for f in files}
    for text_kind in ("TRANSCRIPT", "CHAT", "CC", "TIMELINE"):
        f = by_type[text_kind]
        assert f.kek_id and f.wrapped_dek and f.readable
        assert b"Ava Child" in plain(vault, f)  # the children's words and names
        assert b"Ava Child" not in (vault.storage.root / f.blob_key).read_bytes()
    assert by_type["CC"].zoom_file_id.startswith("noid-")
    # Nothing of the class is left in Zoom: not listed, not in the trash, nothing to recover.
    assert vault.zoom_holds(rec.zoom_uuid) == []
    with pytest.raises(ZoomApiError) as gone:
        vault.sandbox.recover_recordings(rec.zoom_uuid, {"action": "recover"})
    assert gone.value.status == 404
    (deleted,) = kinds(db_session, "recording.zoom_copy_deleted")
    assert '"action": "delete"' in deleted.detail
    assert "trash included" in deleted.detail


def test_a_transcript_that_arrives_after_the_video_is_copied_before_zoom_deletes(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    """The webhook names the video and audio; by the delete Zoom has made the transcript."""
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    # Zoom adds a transcript to the instance after the event (Zoom's own later processing).
    transcript = {
        "id": "late-transcript",
        "meeting_id": summary["uuid"],
        "file_type": "TRANSCRIPT",
        "file_extension": "VTT",
        "recording_type": "audio_transcript",
        "status": "completed",
        "download_url": f"{vault.server.url}/rec/download/late-transcript",
        "_source": {
            "kind": "text",
            "text": "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\nAva: hi\n",
        },
        "_instance": summary["uuid"],
    }
    transcript["file_size"] = len(transcript["_source"]["text"])
    vault.sandbox.store.execute(
        "INSERT INTO recording_files (id, instance_uuid, meeting_id, status, doc) "
        "VALUES (?, ?, ?, 'completed', ?)",
        ("late-transcript", summary["uuid"], course_in_zoom.zoom_meeting_id, dumps(transcript)),
    )
    first = vault.ingest()
    # The purge saw a file companion did not have: registered it, deleted nothing.
    assert first == {"verified": 2, "new_files": 1}, first
    assert len(vault.zoom_holds(summary["uuid"])) == 3
    second = vault.ingest()
    assert second == {"verified": 1, "zoom_deleted": 1}, second
    files = vault.files()
    assert sorted(f.file_type for f in files) == ["M4A", "MP4", "TRANSCRIPT"]
    assert b"Ava: hi" in plain(vault, next(f for f in files if f.file_type == "TRANSCRIPT"))
    assert vault.zoom_holds(summary["uuid"]) == []


def test_a_copy_left_in_zooms_trash_is_recovered_and_deleted_for_good(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    """What an earlier companion (or a person) put in Zoom's trash stays recoverable there for
    30 days: the purge takes it out and deletes it for good."""
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    (rec,) = vault.recordings()
    for f in vault.files():
        ingest.process_file(vault.app, f.id, zoom=vault.zoom, storage=vault.storage)
    # Trashed in Zoom by the old per-file delete (Zoom's default action).
    for zoom_file_id in vault.zoom_files(summary["uuid"]):
        vault.zoom.delete_recording_file(summary["uuid"], zoom_file_id)
    assert vault.zoom_files(summary["uuid"]) == [] and len(vault.zoom_holds(summary["uuid"])) == 2

    assert recording_jobs.delete_from_zoom_pending(vault.app) == {"zoom_deleted": 1}
    assert vault.zoom_holds(rec.zoom_uuid) == []
    (deleted,) = kinds(db_session, "recording.zoom_copy_deleted")
    assert '"recovered_from_trash": true' in deleted.detail


def test_zoom_refusing_the_delete_tells_the_lead_and_the_admin_at_once(
    vault: Vault,
    course_in_zoom: Any,
    db_session: Any,
    lead: Any,
    admin: Any,
    app: Any,
    clock: Any,
    browser: Any,
) -> None:
    """The account does not let hosts delete cloud recordings: Zoom answers 400, code 200."""
    vault.sandbox.set_recording_settings({"host_delete_cloud_recording": False})
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)

    assert vault.work() == {"verified": 2, "refused": 1}
    (rec,) = vault.recordings()
    assert rec.zoom_purged_at is None and rec.zoom_refused_at is not None
    assert "No permission" in rec.zoom_held_reason
    assert len(vault.zoom_files(summary["uuid"])) == 2  # Zoom keeps it, and we say so
    told = mails(db_session, "recording.zoom_refused_delete")
    assert sorted(m.to_address for m in told) == sorted([lead.email, admin.email])
    body = told[0].body_text
    assert "No permission" in body and "The host can delete cloud recordings" in body
    assert f"({course_in_zoom.timezone})" in body  # the class time in the course's zone
    assert told[0].subject == f"Zoom will not delete a class recording: {course_in_zoom.title}"
    assert len(kinds(db_session, "recording.zoom_delete_refused")) == 1

    # The security review shows it, with what Zoom said.
    browser.login(admin.email)
    page = browser.client.get(PAGE)
    assert page.status_code == 200
    held = section(page.get_data(as_text=True), "held-by-zoom")
    assert course_in_zoom.title in held and "No permission" in held

    # Retried later, not silently: nobody is told twice for the same recording.
    clock.advance(ingest.ZOOM_PURGE.backoff_cap + dt.timedelta(minutes=1))
    assert recording_jobs.delete_from_zoom_pending(app) == {"refused": 1}
    assert len(mails(db_session, "recording.zoom_refused_delete")) == 2

    # Once the admin turns the setting on, the next try deletes it for good; the review clears.
    vault.sandbox.set_recording_settings({"host_delete_cloud_recording": True})
    clock.advance(ingest.ZOOM_PURGE.backoff_cap + dt.timedelta(minutes=1))
    assert recording_jobs.delete_from_zoom_pending(app) == {"zoom_deleted": 1}
    assert vault.zoom_holds(summary["uuid"]) == []
    browser.login(admin.email)  # the clock moved past the staff session's lifetime
    page = browser.client.get(PAGE).get_data(as_text=True)
    assert "Zoom holds no recorded class" in section(page, "held-by-zoom")


def test_a_missing_scope_is_a_refusal_too(
    vault: Vault, course_in_zoom: Any, db_session: Any, lead: Any, admin: Any
) -> None:
    """A scope removed after set-up: Zoom answers the delete with a 4xx naming the scope."""
    cls = course_in_zoom.classes[0]
    summary = vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.fault(
        path="/v2/meetings/*/recordings",
        method="DELETE",
        status=400,
        body={
            "code": 4711,
            "message": "Invalid access token, does not contain scopes:"
            "[cloud_recording:delete:meeting_recording:admin].",
        },
        count=5,
    )
    assert vault.work() == {"verified": 2, "refused": 1}
    (rec,) = vault.recordings()
    assert "does not contain scopes" in rec.zoom_held_reason
    assert len(vault.zoom_files(summary["uuid"])) == 2
    assert len(mails(db_session, "recording.zoom_refused_delete")) == 2


def test_the_lead_opens_the_transcript_chat_and_captions_like_the_video(
    vault: Vault, course_in_zoom: Any, db_session: Any, lead: Any, browser: Any
) -> None:
    """The kept kinds are listed with the recording and open through the same grant/stream
    path (a reason, a grant for this browser, the audit trail)."""
    from .test_retrieval import REASON, events, open_file, stream_url

    vault.sandbox.set_recording_settings(EVERY_KIND)
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, participants=["Ava Child"])
    vault.work()
    (rec,) = vault.recordings()
    browser.login(lead.email)
    detail = browser.client.get(f"/recordings/{rec.id}").get_data(as_text=True)
    for kind in ("TRANSCRIPT", "CHAT", "CC", "TIMELINE"):
        assert kind in detail
    for kind, content_type in (("TRANSCRIPT", "text/vtt"), ("CHAT", "text/plain")):
        response = open_file(browser, rec, kind)
        got = browser.client.get(stream_url(response))
        assert got.status_code == 200
        assert got.headers["Content-Type"].startswith(content_type)
        assert b"Ava Child" in got.data
    granted = events(db_session, "recording.access_granted")
    assert len(granted) == 2 and all(REASON in g.detail for g in granted)


def test_retention_deletes_the_extra_kinds_like_the_video(
    vault: Vault, course_in_zoom: Any, app: Any
) -> None:
    from companion.recordings import retention

    vault.sandbox.set_recording_settings(EVERY_KIND)
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    (rec,) = vault.recordings()
    assert retention.sweep(app, vault.storage, now=rec.delete_after) == {"deleted": 1}
    files = vault.files()
    assert {f.file_type for f in files} >= {"TRANSCRIPT", "CHAT", "CC", "TIMELINE"}
    assert {f.state for f in files} == {"deleted"}
    assert all(f.wrapped_dek is None and f.kek_id is None for f in files)
    assert vault.blob_names() == []
