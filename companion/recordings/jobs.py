"""Scheduled work of the recordings vault (rows of ``companion.scheduler.JOBS``).

* :func:`ingest_pending` copies, verifies and then deletes from Zoom every file that is due,
  including failed ones whose retry time has come. Its first run in a worker process first
  cleans up after a killed worker (partial blobs, interrupted downloads).
* :func:`delete_from_zoom_pending` retries deleting Zoom's copy of verified files (429/5xx).
* :func:`reconcile` asks Zoom for recent recordings of course meetings, so a lost webhook does
  not lose a recording.
* :func:`retention_sweep` deletes what is due by crypto-shredding.

Each works from the database and is safe to run twice or late.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter

from flask import Flask

from .. import work
from ..db import job_session, utcnow
from ..zoom import zoom_for
from . import ingest, retention, vault

log = logging.getLogger(__name__)

RECOVERED = "companion.recordings.recovered"
RECONCILE_DAYS = 7
# Ingest and the start-up recovery must not overlap within one process (the recovery removes
# partial files, which would include one being written).
_ingest_lock = threading.Lock()


def ingest_pending(app: Flask, *, limit: int = 50) -> dict[str, int]:
    result: Counter[str] = Counter()
    with app.app_context(), _ingest_lock:
        storage = vault.storage_for(app)
        if not app.extensions.get(RECOVERED):
            recovered = ingest.recover_interrupted(app, storage)
            app.extensions[RECOVERED] = True
            result.update({k: v for k, v in recovered.items() if v})
        with job_session(app) as session:
            ids = work.due_ids(session, ingest.COPY, utcnow(), limit)
        if not ids:
            return dict(result)
        zoom = zoom_for(app)
        for file_id in ids:
            try:
                result[ingest.process_file(app, file_id, zoom=zoom, storage=storage)] += 1
            except Exception:
                # Bookkeeping itself failed (database down?); the claim expires and it is retried.
                log.exception("recording file %s: ingest could not be recorded", file_id)
                result["errors"] += 1
    return dict(result)


def delete_from_zoom_pending(app: Flask) -> dict[str, int]:
    result: Counter[str] = Counter()
    with app.app_context():
        with job_session(app) as session:
            ids = work.due_ids(session, ingest.ZOOM_DELETE, utcnow())
        if not ids:
            return {}
        zoom = zoom_for(app)
        for file_id in ids:
            try:
                result[ingest.delete_from_zoom(app, zoom, file_id)] += 1
            except Exception:
                log.exception("recording file %s: deleting Zoom's copy failed", file_id)
                result["errors"] += 1
    return dict(result)


def reconcile(app: Flask, *, days: int = RECONCILE_DAYS) -> dict[str, int]:
    with app.app_context():
        today = utcnow().date()
        with job_session(app) as session:
            known = ingest.known_meeting_ids(session)
        if not known:
            return {}
        zoom = zoom_for(app)
        meetings = zoom.iter_user_recordings(
            app.config["ZOOM_USER_ID"],
            from_date=today - dt.timedelta(days=days),
            to_date=today,
        )
        return {k: v for k, v in ingest.reconcile_meetings(app, meetings, known=known).items() if v}


def retention_sweep(app: Flask) -> dict[str, int]:
    with app.app_context():
        return retention.sweep(app, vault.storage_for(app))
