"""The recordings vault under test: companion's app wired to the Zoom sandbox over loopback.

``Vault`` runs the sandbox on a real port (downloads, redirects, faults, Zoom's status codes),
points companion's Zoom client at it, delivers the sandbox's signed webhooks into companion's
``/zoom/webhook`` through the Flask test client, and gives companion its own blob folder (or
the storage a test passes, such as a bucket on the loopback S3 server).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.courses.models import ClassSession, Course
from companion.recordings import jobs as recording_jobs
from companion.recordings import vault as vault_module
from companion.recordings.models import Recording, RecordingFile
from companion.recordings.storage import LocalEncryptedStorage, RecordingStorage
from companion.sealing import Purpose
from companion.webhooks import jobs as webhook_jobs
from companion.webhooks.models import WebhookEvent
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.sandbox import create_sandbox_app, deliver_due
from companion.zoom.webhooks import sandbox_webhook_secret

from ..keys_helpers import suite_sealer
from ..servers import WsgiServer
from .storage_helpers import leftovers

CLASS_MINUTES = 45


def meeting_body(start: dt.datetime) -> dict[str, Any]:
    return {
        "topic": "Art club (ages 8-10)",
        "type": 2,
        "duration": CLASS_MINUTES,
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "Europe/London",
        "password": "Kq7mP2xZ4r",
        "settings": {"waiting_room": True, "auto_recording": "cloud"},
    }


def make_course(
    session: Session,
    teacher: Any,
    *,
    meeting_id: int | None,
    starts: list[dt.datetime],
    title: str = "Art club",
) -> Course:
    """A course row with classes at ``starts`` (Zoom's meeting made separately)."""
    first = starts[0]
    course = Course(
        organisation_id=teacher.organisation_id,
        teacher_id=teacher.id,
        title=title,
        timezone="Europe/London",
        first_date=first.date(),
        weekdays="mon",
        start_time=first.time().replace(tzinfo=None),
        duration_minutes=CLASS_MINUTES,
        class_count=len(starts),
        end_date=None,
        ends_at=starts[-1] + dt.timedelta(minutes=CLASS_MINUTES),
        zoom_user_id="me",
        zoom_meeting_id=meeting_id,
        zoom_state="created",
        companion_ref=secrets.token_hex(8),
        # Not read by these tests, but sealed as companion seals it: an app started on a database
        # holding a value its keys cannot open refuses to start.
        passcode_encrypted=suite_sealer().seal(Purpose.COURSE_PASSCODE, "000000"),
        passcode_set_at=first,
        safety_state="safe",
    )
    session.add(course)
    session.flush()
    for at in starts:
        session.add(ClassSession(course_id=course.id, starts_at=at, duration_minutes=CLASS_MINUTES))
    session.flush()
    return course


class Vault:
    def __init__(
        self,
        app: Flask,
        session: Session,
        folder: Path,
        storage: RecordingStorage | None = None,
    ):
        self.app = app
        self.session = session
        self.folder = folder
        self.server = WsgiServer()
        self.sandbox_app = create_sandbox_app(
            str(folder / "sandbox.sqlite3"),
            webhook_url="http://companion.test/zoom/webhook",
            webhook_secret=sandbox_webhook_secret(app.config),
            public_url=self.server.url,
        )
        self.sandbox = self.sandbox_app.extensions["zoom_sandbox"]
        self.server.start(self.sandbox_app)
        self.http: FlaskClient = app.test_client()
        self.webhook_statuses: list[int] = []
        self.sandbox.webhook_transport = self._deliver
        self.zoom = client_from_config(
            {"ZOOM_MODE": "sandbox", "SANDBOX_URL": self.server.url, "ZOOM_TIMEOUT_SECONDS": 5},
            max_retries=1,
            retry_base=0.01,
            retry_cap=0.05,
        )
        app.extensions[EXTENSION_KEY] = self.zoom
        self.storage = storage or LocalEncryptedStorage(folder / "blobs")
        app.extensions[vault_module.STORAGE_EXTENSION] = self.storage

    def _deliver(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        response = self.http.post("/zoom/webhook", data=body, headers=headers)
        self.webhook_statuses.append(response.status_code)
        return response.status_code

    def close(self) -> None:
        self.zoom.close()
        self.server.stop()
        self.sandbox.close()

    # --- driving it ------------------------------------------------------------------------

    def meeting(self, start: dt.datetime) -> int:
        return int(self.zoom.create_meeting("me", meeting_body(start))["id"])

    def run_class(
        self, meeting_id: int, start: dt.datetime, *, deliver: bool = True, **options: Any
    ) -> dict[str, Any]:
        result = self.sandbox.simulate_class(meeting_id, start_at=start, **options)
        if deliver:
            deliver_due(self.sandbox, force=True)
        return result

    def fault(self, **spec: Any) -> None:
        self.sandbox.add_fault(spec)

    def process_webhooks(self) -> dict[str, int]:
        return webhook_jobs.process_pending(self.app)

    def ingest(self) -> dict[str, int]:
        return recording_jobs.ingest_pending(self.app)

    def work(self) -> dict[str, int]:
        """What the worker does after a class: handle the webhooks, then copy the files."""
        self.process_webhooks()
        return self.ingest()

    # --- looking at it ---------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        self.session.expire_all()
        return list(self.session.scalars(select(Recording).order_by(Recording.started_at)))

    def files(self) -> list[RecordingFile]:
        self.session.expire_all()
        return list(self.session.scalars(select(RecordingFile).order_by(RecordingFile.file_type)))

    def events(self) -> list[WebhookEvent]:
        self.session.expire_all()
        return list(self.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))

    def zoom_files(self, zoom_uuid: str) -> list[str]:
        """Ids of the recording files Zoom still has (not trashed) for a meeting instance."""
        rows = self.sandbox.store.query(
            "SELECT id FROM recording_files WHERE instance_uuid = ? AND status = 'completed'",
            (zoom_uuid,),
        )
        return sorted(row["id"] for row in rows)

    def blob_names(self) -> list[str]:
        """Everything the storage holds, partial writes included."""
        return leftovers(self.storage)


def file_of(files: list[RecordingFile], file_type: str) -> RecordingFile:
    return next(f for f in files if f.file_type == file_type)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
