"""Safeguarding only: the lead lists and opens recordings with a reason each time; the file is
decrypted as a stream with ranges; nobody else sees or fetches anything, and every attempt and
every retrieval is in the audit trail."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.recordings import services
from companion.recordings.models import Recording, RecordingGrant
from companion.zoom.sandbox import media

from .. import factories
from ..conftest import Browser
from .vault_helpers import Vault, file_of

VIDEO = media.media_bytes(media.VIDEO)
REASON = "Concern #12: checking what was said at minute 12."


@pytest.fixture
def recording(vault: Vault, course_in_zoom: Any) -> Recording:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.work()
    return vault.recordings()[0]


def events(db_session: Session, kind: str) -> list[AuditEvent]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
        )
    )


def open_file(browser: Browser, rec: Recording, file_type: str, **form: str) -> Any:
    f = file_of(list(rec.files), file_type)
    data = {"reason": REASON, **form}
    return browser.post(
        f"/recordings/{rec.id}/files/{f.id}/access", data, form_page=f"/recordings/{rec.id}"
    )


def stream_url(response: Any) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response.headers["Location"] + "/file"


def test_the_lead_lists_recordings_with_what_matters(
    browser: Browser, lead: Any, recording: Recording, course_in_zoom: Any
) -> None:
    browser.login(lead.email)
    page = browser.client.get("/recordings/").get_data(as_text=True)
    assert course_in_zoom.title in page
    assert "MP4" in page and "M4A" in page
    assert f"{recording.duration_minutes} min" in page
    assert recording.delete_after.strftime("%b %Y") in page
    detail = browser.client.get(f"/recordings/{recording.id}").get_data(as_text=True)
    assert "Why do you need this recording?" in detail
    assert "No hold" in detail


def test_opening_asks_for_a_reason_and_records_it_with_the_file(
    browser: Browser, lead: Any, recording: Recording, db_session: Session
) -> None:
    browser.login(lead.email)
    refused = open_file(browser, recording, "MP4", reason="")
    assert refused.status_code == 422
    assert db_session.scalars(select(RecordingGrant)).all() == []
    assert events(db_session, "recording.access_granted") == []

    response = open_file(browser, recording, "MP4", incident_ref="INC-2026-004")
    url = stream_url(response)
    (granted,) = events(db_session, "recording.access_granted")
    detail = json.loads(granted.detail)
    mp4 = file_of(list(recording.files), "MP4")
    assert granted.subject_id == str(mp4.id) and granted.actor == lead.email
    assert detail["reason"] == REASON and detail["incident_ref"] == "INC-2026-004"

    player = browser.client.get(response.headers["Location"])
    assert player.status_code == 200
    html = player.get_data(as_text=True)
    assert re.search(r'<video[^>]+src="[^"]+/file"', html)

    whole = browser.client.get(url)
    assert whole.status_code == 200
    assert whole.data == VIDEO
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Cache-Control"] == "no-store"
    assert whole.headers["Content-Disposition"].startswith("attachment; filename=")
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Length"] == str(len(VIDEO))
    assert "sandbox" in whole.headers["Content-Security-Policy"]
    assert len(events(db_session, "recording.retrieved")) == 1

    # Each opening needs its own reason, and each is recorded.
    open_file(browser, recording, "M4A")
    assert len(events(db_session, "recording.access_granted")) == 2


def test_range_requests_let_a_browser_seek(
    browser: Browser, lead: Any, recording: Recording, db_session: Session
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    size = len(VIDEO)

    first = browser.client.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert first.data == VIDEO[:100]
    middle = browser.client.get(url, headers={"Range": "bytes=5000-"})
    assert middle.status_code == 206 and middle.data == VIDEO[5000:]
    tail = browser.client.get(url, headers={"Range": "bytes=-256"})
    assert tail.status_code == 206 and tail.data == VIDEO[-256:]
    clipped = browser.client.get(url, headers={"Range": f"bytes={size - 10}-{size + 500}"})
    assert clipped.status_code == 206 and clipped.data == VIDEO[-10:]
    outside = browser.client.get(url, headers={"Range": f"bytes={size}-"})
    assert outside.status_code == 416
    assert outside.headers["Content-Range"] == f"bytes */{size}"
    several = browser.client.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.data == VIDEO
    etag = first.headers["ETag"]
    stale = browser.client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200
    fresh = browser.client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206
    head = browser.client.head(url)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(size)
    # One retrieval for one opening, however many requests the player makes.
    assert len(events(db_session, "recording.retrieved")) == 1


def test_the_grant_is_for_this_browser_only_and_expires(
    app: Any, browser: Browser, lead: Any, recording: Recording, db_session: Session, clock: Any
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    assert browser.client.get(url, headers={"Range": "bytes=0-0"}).status_code == 206

    # The same lead in another browser (another staff session): not valid there.
    other = Browser(app.test_client())
    clock.advance(seconds=31)  # a fresh two-factor code
    other.login(lead.email)
    assert other.client.get(url).status_code == 404
    # Another lead: not theirs.
    lead2 = factories.user(db_session, lead.organisation, role="safeguarding_lead")
    third = Browser(app.test_client())
    third.login(lead2.email)
    assert third.client.get(url).status_code == 404
    refused = events(db_session, "recording.access_refused")
    assert len(refused) == 2

    # Unused for longer than the idle limit: gone; the form must be filled in again.
    clock.advance(services.GRANT_IDLE)
    assert browser.client.get(url).status_code == 404


@pytest.mark.parametrize("role", ["teacher", "admin"])
def test_teachers_and_admins_cannot_see_or_fetch_recordings_and_are_recorded(
    role: str,
    app: Any,
    browser: Browser,
    lead: Any,
    recording: Recording,
    db_session: Session,
    course_in_zoom: Any,
    clock: Any,
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    mp4 = file_of(list(recording.files), "MP4")
    person = (
        course_in_zoom.teacher
        if role == "teacher"
        else factories.user(db_session, lead.organisation, role="admin")
    )
    intruder = Browser(app.test_client())
    intruder.login(person.email)
    before = len(events(db_session, "access.denied"))
    for path in (
        "/recordings/",
        f"/recordings/{recording.id}",
        url.removesuffix("/file"),
        url,
    ):
        response = intruder.client.get(path)
        assert response.status_code == 403, path
        assert VIDEO[:64] not in response.data
    response = intruder.client.post(
        f"/recordings/{recording.id}/files/{mp4.id}/access",
        data={"reason": REASON, "csrf_token": intruder.csrf("/")},
    )
    assert response.status_code == 403
    assert len(events(db_session, "access.denied")) == before + 5


def test_someone_not_signed_in_is_sent_away_and_recorded(
    client: FlaskClient, browser: Browser, lead: Any, recording: Recording, db_session: Session
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    stranger = browser.client.application.test_client()
    response = stranger.get(url)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert VIDEO[:64] not in response.data
    refused = events(db_session, "recording.access_refused")
    assert refused and refused[-1].actor == "anonymous"


def test_a_tampered_blob_is_not_served(
    browser: Browser, lead: Any, recording: Recording, vault: Vault
) -> None:
    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    mp4 = file_of(list(recording.files), "MP4")
    path = vault.storage.root / mp4.blob_key
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    response = browser.client.get(url)
    # A clear page, not a 5xx (tests/recordings/test_damaged.py covers damage in more places).
    assert response.status_code == 409
    assert VIDEO[:64] not in response.data
    assert "This recording is damaged" in response.get_data(as_text=True)


def test_retrieval_needs_a_fresh_second_factor(
    browser: Browser, lead: Any, recording: Recording, clock: Any, app: Any
) -> None:
    from ..twofactor_helpers import fresh_code

    browser.login(lead.email)
    clock.advance(minutes=6)
    page = browser.client.get(f"/recordings/{recording.id}")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/account/two-factor/confirm")
    f = file_of(list(recording.files), "MP4")
    refused = browser.client.post(
        f"/recordings/{recording.id}/files/{f.id}/access", data={"reason": REASON}
    )
    assert refused.status_code in (302, 400)
    assert "/recordings/open/" not in refused.headers.get("Location", "")
    confirm = page.headers["Location"]
    token = re.search(
        r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"',
        browser.client.get(confirm).get_data(as_text=True),
    ).group(1)
    back = browser.client.post(
        confirm, data={"code": fresh_code(app, lead.email), "csrf_token": token}
    )
    assert back.headers["Location"] == f"/recordings/{recording.id}"
    assert "/recordings/open/" in stream_url(open_file(browser, recording, "MP4"))


def test_a_grant_for_a_file_that_retention_deleted_since_is_refused_clearly(
    app: Any, browser: Browser, lead: Any, recording: Recording, db_session: Session, vault: Vault
) -> None:
    from companion.recordings import retention

    browser.login(lead.email)
    url = stream_url(open_file(browser, recording, "MP4"))
    assert browser.client.get(url, headers={"Range": "bytes=0-0"}).status_code == 206
    # The grant is still within its time; the recording's retention date comes meanwhile.
    assert retention.sweep(app, vault.storage, now=recording.delete_after) == {"deleted": 1}

    answer = browser.client.get(url)
    assert answer.status_code == 404
    assert "expired" in answer.get_data(as_text=True)
    (refused,) = events(db_session, "recording.access_refused")
    assert json.loads(refused.detail)["problem"] == "file no longer readable"
    # The player page for the grant says the same, not a 5xx.
    assert browser.client.get(url.removesuffix("/file")).status_code == 404
