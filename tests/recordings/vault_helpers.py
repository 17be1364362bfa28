"""The recordings vault under test: companion's app wired to the Zoom sandbox over loopback.

``Vault`` runs the sandbox on a real port (downloads, redirects, faults, Zoom's status codes),
points companion's Zoom client at it, delivers the sandbox's signed webhooks into companion's
``/zoom/webhook`` through the Flask test client, and gives companion its own blob folder (or
the storage a test passes, such as a bucket on the loopback S3 server).
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.recordings import jobs as recording_jobs
from companion.recordings import vault as vault_module
from companion.recordings.models import Recording, RecordingFile
from companion.recordings.storage import LocalEncryptedStorage, RecordingStorage
from companion.webhooks import jobs as webhook_jobs
from companion.webhooks.models import WebhookEvent
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.sandbox import create_sandbox_app, deliver_due
from companion.zoom.webhooks import sandbox_webhook_secret

from ..factories import meeting_body
from ..servers import WsgiServer
from .storage_helpers import leftovers


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

    def zoom_holds(self, zoom_uuid: str) -> list[str]:
        """Everything Zoom still has of a meeting instance, its trash included."""
        rows = self.sandbox.store.query(
            "SELECT id FROM recording_files WHERE instance_uuid = ?", (zoom_uuid,)
        )
        return sorted(row["id"] for row in rows)

    def blob_names(self) -> list[str]:
        """Everything the storage holds, partial writes included."""
        return leftovers(self.storage)


def file_of(files: list[RecordingFile], file_type: str) -> RecordingFile:
    return next(f for f in files if f.file_type == file_type)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
