"""Issue 10, item 7: a recording whose stored copy fails its integrity check is never served in
part. Damage anywhere in what a response would send (the first segment, one in the middle, the
last) gets the lead a clear "this recording is damaged" page before any byte of the file goes
out, never a 5xx or a cut connection; it is on the audit trail as its own event, and the
organisation's leads and admins are told by email, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.mail.models import OutboxMessage
from companion.recordings import crypto, vault
from companion.recordings.models import Recording, RecordingFile
from companion.zoom.sandbox import media

from ..conftest import Browser
from ..staff_helpers import audit_events, text
from .test_retrieval import open_file, stream_url
from .vault_helpers import Vault, file_of

VIDEO = media.media_bytes(media.VIDEO)
SEGMENT = 1 << 12  # re-stored with the smallest segments, so the 32 KiB video has nine of them


@pytest.fixture
def recording(vault: Vault, course_in_zoom: Any) -> Recording:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    return vault.recordings()[0]


def restore_in_small_segments(app: Flask, vault: Vault, file: RecordingFile) -> Any:
    """Store the file again (same key, same plaintext) in 4 KiB segments; return its path."""
    assert file.kek_id and file.wrapped_dek and file.blob_key
    dek = vault_module_unwrap(app, file)
    path = vault.storage.root / file.blob_key
    path.write_bytes(crypto.encrypt_bytes(VIDEO, dek, file.id, file.recording_id, seg_log2=12))
    return path


def vault_module_unwrap(app: Flask, file: RecordingFile) -> bytes:
    return vault.unwrap(app, file.kek_id, file.id, bytes(file.wrapped_dek))  # type: ignore[arg-type]


def damage_segment(path: Any, index: int) -> None:
    data = bytearray(path.read_bytes())
    data[crypto.HEADER_SIZE + index * (SEGMENT + crypto.TAG_SIZE) + 10] ^= 0x01
    path.write_bytes(bytes(data))


def told(db_session: Session) -> list[OutboxMessage]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "recording_integrity_failed")
            .order_by(OutboxMessage.id)
        )
    )


@pytest.fixture
def small_segments(app: Flask, vault: Vault, recording: Recording) -> Any:
    mp4 = file_of(list(recording.files), "MP4")
    return restore_in_small_segments(app, vault, mp4)


def test_an_intact_file_in_small_segments_is_served_whole_and_by_range(
    browser: Browser, lead: Any, recording: Recording, small_segments: Any
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    assert browser.client.get(url).data == VIDEO
    part = browser.client.get(url, headers={"Range": "bytes=5000-13000"})
    assert part.status_code == 206 and part.data == VIDEO[5000:13001]


@pytest.mark.parametrize("where", ["start", "middle"])
def test_damage_is_refused_whole_with_a_clear_page(
    browser: Browser,
    db_session: Session,
    lead: Any,
    admin: Any,
    recording: Recording,
    small_segments: Any,
    where: str,
) -> None:
    damage_segment(small_segments, 0 if where == "start" else 4)
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))

    response = browser.client.get(url)
    assert response.status_code == 409  # not 200 then a cut connection; not a 500
    page = text(response)
    assert "This recording is damaged" in page
    assert VIDEO[:64] not in response.data and VIDEO[SEGMENT : SEGMENT + 64] not in response.data
    assert response.headers["Content-Type"].startswith("text/html")

    [event] = audit_events(db_session, "recording.integrity_failed")
    mp4 = file_of(list(recording.files), "MP4")
    assert event.subject_id == str(mp4.id) and event.actor == lead.email
    assert json.loads(event.detail)["first"] is True
    assert sorted(m.to_address for m in told(db_session)) == sorted([lead.email, admin.email])
    db_session.refresh(mp4)
    assert mp4.integrity_failed_at is not None

    # Asked again (a player retries): refused again and recorded, but nobody is told twice.
    again = browser.client.get(url, headers={"Accept": "application/json"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "recording_damaged"
    assert len(audit_events(db_session, "recording.integrity_failed")) == 2
    assert len(told(db_session)) == 2
    # The player page says so instead of offering the file.
    player = text(browser.client.get(url.rsplit("/file", 1)[0]))
    assert "This recording is damaged" in player and "<video" not in player


def test_a_range_is_checked_over_the_segments_it_covers(
    browser: Browser, db_session: Session, lead: Any, recording: Recording, small_segments: Any
) -> None:
    damage_segment(small_segments, 4)  # bytes 16384..20479
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    before = browser.client.get(url, headers={"Range": "bytes=0-8191"})
    assert before.status_code == 206 and before.data == VIDEO[:8192]
    over = browser.client.get(url, headers={"Range": "bytes=12000-17000"})
    assert over.status_code == 409 and VIDEO[12000:12064] not in over.data
    assert len(audit_events(db_session, "recording.integrity_failed")) == 1
