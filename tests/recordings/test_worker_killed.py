"""The worker killed mid-write (SIGKILL, no cleanup of any kind): at the next worker start the
partial file is removed and the download resumes; nothing is lost and Zoom's copy stays until
the new copy is verified."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import migrate
from companion.db import make_engine
from companion.recordings import jobs as recording_jobs
from companion.recordings.models import RecordingFile
from companion.webhooks import jobs as webhook_jobs
from companion.zoom import client_from_config
from companion.zoom.sandbox import create_sandbox_app, deliver_due, media
from companion.zoom.webhooks import sandbox_webhook_secret

from .. import factories
from ..conftest import SECRET, TEST_KEYS_ENV, make_app
from ..factories import meeting_body, zoom_course
from ..polling import poll
from ..servers import WsgiServer

SIZE = 48 << 20

CHILD = textwrap.dedent(
    """
    import contextlib, sys, time
    from pathlib import Path
    from companion import create_app
    from companion.recordings import jobs, storage

    marker = Path(sys.argv[1])
    real_open_writer = storage.LocalEncryptedStorage.open_writer

    @contextlib.contextmanager
    def slow_writer(self, key):
        with real_open_writer(self, key) as blob:
            written = 0
            real_write = blob.write

            def write(data):
                nonlocal written
                written += real_write(data)
                if written > 8 << 20:
                    marker.write_text("writing")
                    time.sleep(3600)  # the parent kills us here, mid-write
                return len(data)

            blob.write = write
            yield blob

    storage.LocalEncryptedStorage.open_writer = slow_writer
    app = create_app({"TESTING": True})
    jobs.ingest_pending(app)
    """
)


@pytest.mark.slow
def test_a_worker_killed_mid_write_leaves_nothing_and_the_next_start_resumes(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'companion.db'}"
    migrate.upgrade(db_url)
    storage_dir = tmp_path / "recordings"
    server = WsgiServer()
    app = make_app(
        db_url, tmp_path, STORAGE_DIR=str(storage_dir), SANDBOX_URL=server.url, LOG_LEVEL="info"
    )
    sandbox_app = create_sandbox_app(
        str(tmp_path / "sandbox.sqlite3"),
        webhook_url="http://companion.test/zoom/webhook",
        webhook_secret=sandbox_webhook_secret(app.config),
        public_url=server.url,
    )
    sandbox = sandbox_app.extensions["zoom_sandbox"]
    server.start(sandbox_app)
    http = app.test_client()
    sandbox.webhook_transport = lambda url, body, headers, timeout: (
        http.post("/zoom/webhook", data=body, headers=headers).status_code
    )
    engine = make_engine(db_url)
    child: subprocess.Popen[bytes] | None = None
    try:
        zoom = client_from_config(app.config)
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
        meeting_id = int(zoom.create_meeting("me", meeting_body(start))["id"])
        with Session(engine) as session, session.begin():
            org = factories.organisation(session)
            teacher = factories.user(session, org)
            zoom_course(session, teacher, meeting_id=meeting_id, starts=[start])
        sandbox.simulate_class(meeting_id, start_at=start, recording_bytes=SIZE)
        deliver_due(sandbox, force=True)
        with app.app_context():
            handled = webhook_jobs.process_pending(app)
            assert handled.get("done", 0) >= 1 and not handled.get("failed"), handled

        marker = tmp_path / "child-is-writing"
        env = {
            **os.environ,
            "COMPANION_INSTANCE_PATH": str(tmp_path),
            "COMPANION_SECRET_KEY": SECRET,
            **TEST_KEYS_ENV,
            "COMPANION_DATABASE_URL": db_url,
            "COMPANION_STORAGE_DIR": str(storage_dir),
            "COMPANION_SANDBOX_URL": server.url,
        }
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(marker)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def writing() -> bool:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            return marker.exists()

        poll(writing, "the child to start writing", timeout=60)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

        # What the killed worker left: a partial file and a row still "downloading".
        leftovers = [p.name for p in storage_dir.iterdir() if p.name.endswith(".partial")]
        assert len(leftovers) == 1
        with Session(engine) as session:
            states = {f.file_type: f.state for f in session.scalars(select(RecordingFile))}
        assert "downloading" in states.values()

        # The next worker starts (a fresh process: a fresh app) and its first ingest run cleans
        # up and resumes.
        restarted = make_app(db_url, tmp_path, STORAGE_DIR=str(storage_dir), SANDBOX_URL=server.url)
        outcome = recording_jobs.ingest_pending(restarted)
        assert outcome.get("partials_removed") == 1 and outcome.get("resumed") == 1, outcome
        assert outcome.get("zoom_deleted", 0) >= 1, outcome
        assert not [p for p in storage_dir.iterdir() if p.name.endswith(".partial")]
        with Session(engine) as session:
            files = {f.file_type: f for f in session.scalars(select(RecordingFile))}
        mp4 = files["MP4"]
        assert mp4.state == "zoom_deleted" and mp4.attempts == 2
        assert mp4.sha256 == media.synthetic_sha256(SIZE, mp4.zoom_file_id)
        assert {f.state for f in files.values()} == {"zoom_deleted"}
        blobs = sorted(p.name for p in storage_dir.iterdir())
        assert blobs == sorted(f"{f.id}.krec" for f in files.values())
        zoom.close()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if child is not None and child.stderr is not None:
            child.stderr.close()
        server.stop()
        sandbox.close()
        engine.dispose()
