"""While Zoom holds a recording download, or the deletion of Zoom's copy, for seconds, nothing
else waits: another connection writes and a signed /zoom/webhook is answered at once.

companion and the Zoom sandbox are served for real on a committed database of their own; the
class is run in the sandbox, its webhooks are delivered to companion over HTTP, and the worker's
jobs run in a thread, as in the worker process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from companion.courses.models import Course
from companion.db import job_session
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import Recording, RecordingFile
from companion.webhooks import jobs as webhook_jobs
from companion.zoom.sandbox import deliver_due
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from ..slow_zoom import Live, poll, serve

REAL_CLOCK = True


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serve(tmp_path) as served:
        yield served


def run_class(live: Live) -> None:
    """A class of the course runs in Zoom; its webhooks reach companion as Zoom sends them."""
    state = live.zoom.state
    secret = sandbox_webhook_secret(live.app.config)

    def to_companion(_url: str, body: bytes, _headers: dict[str, str], timeout: float) -> int:
        stamp = str(int(time.time()))
        headers = {
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": sign(secret, stamp, body),
            "Content-Type": "application/json",
        }
        answer = requests.post(live.url + "/zoom/webhook", data=body, headers=headers, timeout=10)
        return answer.status_code

    state.webhook_url = live.url + "/zoom/webhook"
    state.webhook_transport = to_companion
    with job_session(live.app) as session:
        course = session.get(Course, live.course_id)
        assert course is not None and course.zoom_meeting_id is not None
        meeting_id = course.zoom_meeting_id
    state.simulate_class(meeting_id)
    deliver_due(state, force=True)
    assert webhook_jobs.process_pending(live.app)


def in_background(job: Any) -> threading.Thread:
    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread


def test_a_download_zoom_holds_keeps_nothing_waiting(live: Live) -> None:
    run_class(live)
    live.hold_next("/rec/download/*", "GET")
    worker = in_background(lambda: recording_jobs.ingest_pending(live.app))
    live.wait_until_held()
    live.nothing_waits()
    worker.join(60)
    files = poll(
        lambda: [f for f in live.rows(RecordingFile) if f.state == "zoom_deleted"] or None,
        "the copies to be stored and Zoom's copies deleted",
    )
    assert len(files) == len(live.rows(RecordingFile))
    (recording,) = live.rows(Recording)
    assert recording.state == "active"


def test_deleting_zooms_copy_while_zoom_is_slow_keeps_nothing_waiting(live: Live) -> None:
    run_class(live)
    live.hold_next("/v2/meetings/*/recordings", "DELETE")
    worker = in_background(lambda: recording_jobs.ingest_pending(live.app))
    live.wait_until_held()
    live.nothing_waits()
    worker.join(60)
    poll(
        lambda: all(f.state == "zoom_deleted" for f in live.rows(RecordingFile)) or None,
        "Zoom's copies to be deleted",
        timeout=30,
    )
