"""In Debian's Chromium: the sandbox runs a class, its webhooks reach companion over HTTP, the
worker's jobs copy the recording; the safeguarding lead signs in, opens it with a reason and the
video element loads and seeks in it; the teacher is refused."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.models import User
from companion.db import make_engine
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import Recording
from companion.webhooks import jobs as webhook_jobs
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.sandbox import create_sandbox_app, deliver_due, media
from companion.zoom.webhooks import sandbox_webhook_secret

from ..factories import meeting_body, zoom_course
from ..servers import WsgiServer

pytestmark = pytest.mark.browser

VIDEO = media.media_bytes(media.VIDEO)


@pytest.fixture
def recorded_class(live_server: Any, tmp_path: Any) -> Iterator[dict[str, Any]]:
    """A class recorded in the sandbox, delivered to the live server and ingested by its jobs."""
    app = live_server.app
    server = WsgiServer()
    sandbox_app = create_sandbox_app(
        str(tmp_path / "sandbox.sqlite3"),
        webhook_url=f"{live_server}/zoom/webhook",  # real HTTP, signed as Zoom signs
        webhook_secret=sandbox_webhook_secret(app.config),
        public_url=server.url,
    )
    sandbox = sandbox_app.extensions["zoom_sandbox"]
    server.start(sandbox_app)
    zoom = client_from_config({"ZOOM_MODE": "sandbox", "SANDBOX_URL": server.url})
    saved = app.extensions.get(EXTENSION_KEY)
    app.extensions[EXTENSION_KEY] = zoom
    engine = make_engine(live_server.database_url)
    try:
        start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(days=1)
        meeting_id = int(zoom.create_meeting("me", meeting_body(start))["id"])
        title = f"Violin club {secrets.token_hex(3)}"
        with app.app_context(), Session(engine) as session, session.begin():
            teacher = session.scalars(select(User).where(User.email == "teacher@example.org")).one()
            zoom_course(session, teacher, meeting_id=meeting_id, starts=[start], title=title)
        summary = sandbox.simulate_class(meeting_id, start_at=start)
        assert deliver_due(sandbox, force=True) > 0
        # What `companion worker` runs every few seconds.
        handled = webhook_jobs.process_pending(app)
        assert handled.get("done", 0) >= 1 and not handled.get("failed"), handled
        # Both files copied and verified, then the whole class deleted from Zoom for good.
        assert recording_jobs.ingest_pending(app) == {"verified": 2, "zoom_deleted": 1}
        with Session(engine) as session:
            # Read and closed before the test: an open SQLite transaction holds the write lock.
            rec_id = session.scalars(
                select(Recording.id).where(Recording.zoom_uuid == summary["uuid"])
            ).one()
        yield {"title": title, "recording_id": str(rec_id)}
    finally:
        if saved is None:
            app.extensions.pop(EXTENSION_KEY, None)
        else:
            app.extensions[EXTENSION_KEY] = saved
        zoom.close()
        server.stop()
        sandbox.close()
        engine.dispose()


def sign_in(page: Any, live_server: Any, email: str) -> None:
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(live_server.passwords[email])
    page.get_by_role("button", name="Sign in").click()
    if "/login/code" in page.url:
        page.get_by_label("Code from your app, or a recovery code").fill(
            live_server.totp_code(email)
        )
        page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:2000]


def test_the_lead_plays_the_recording_and_the_teacher_cannot(
    live_server: Any, recorded_class: dict[str, Any], chromium_launch_options: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            lead = browser.new_context()
            page = lead.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            sign_in(page, live_server, "lead@example.org")

            page.get_by_role("link", name="Recordings").first.click()
            expect(page.locator("h1")).to_have_text("Recordings")
            page.get_by_role("link", name=recorded_class["title"]).click()
            assert recorded_class["recording_id"] in page.url

            mp4_form = page.locator("form.access-form").filter(has_text="Open MP4")
            mp4_form.get_by_label("Why do you need this recording?").fill(
                "Concern raised by the teacher about minute 2 of this class."
            )
            mp4_form.get_by_label("Incident reference (if there is one)").fill("INC-77")
            mp4_form.get_by_role("button", name="Open MP4").click()
            video = page.locator("video.recording")
            expect(video).to_be_visible()

            state = page.evaluate(
                """async () => {
                    const v = document.querySelector('video.recording');
                    const loaded = () => new Promise((ok) => {
                        if (v.readyState >= 1) return ok('loaded');
                        v.addEventListener('loadedmetadata', () => ok('loaded'), {once: true});
                        v.addEventListener('error', () => ok('error'), {once: true});
                        setTimeout(() => ok('timeout'), 15000);
                    });
                    const first = await loaded();
                    if (first !== 'loaded') {
                        return {first, code: v.error && v.error.code};
                    }
                    const seeked = new Promise((ok) => {
                        v.addEventListener('seeked', () => ok('seeked'), {once: true});
                        setTimeout(() => ok('timeout'), 15000);
                    });
                    v.currentTime = Math.min(2, v.duration / 2);
                    return {first, duration: v.duration, seek: await seeked,
                            at: v.currentTime};
                }"""
            )
            src = video.get_attribute("src")
            assert src and src.endswith("/file")
            # The same browser session fetches the file (as the download link does), with ranges.
            whole = lead.request.get(f"{live_server}{src}")
            assert whole.status == 200 and whole.body() == VIDEO
            assert whole.headers["cache-control"] == "no-store"
            assert whole.headers["content-disposition"].startswith("attachment")
            part = lead.request.get(f"{live_server}{src}", headers={"Range": "bytes=100-199"})
            assert part.status == 206 and part.body() == VIDEO[100:200]
            if state["first"] == "loaded":
                assert state["duration"] > 1 and state["seek"] == "seeked", state
            else:
                # A Chromium built without H.264 cannot decode the sandbox's MP4 (a media
                # error, code 4); the bytes above still arrived intact through the same URL.
                assert state == {"first": "error", "code": 4}, state
            assert [m for m in console if "Content Security Policy" in m] == []

            # The teacher of the course is refused, also with the lead's URL in hand.
            teacher = browser.new_context()
            tpage = teacher.new_page()
            sign_in(tpage, live_server, "teacher@example.org")
            assert tpage.goto(f"{live_server}/recordings/").status == 403
            assert (
                tpage.goto(f"{live_server}/recordings/{recorded_class['recording_id']}").status
                == 403
            )
            refused = teacher.request.get(f"{live_server}{src}")
            assert refused.status == 403 and VIDEO[:64] not in refused.body()
            assert tpage.locator("a", has_text="Recordings").count() == 0
        finally:
            browser.close()
