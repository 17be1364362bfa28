"""Scheduled work of the recordings vault (rows of ``companion.scheduler.JOBS``).

* :func:`ingest_pending` copies and verifies every file that is due, including failed ones
  whose retry time has come, then deletes for good in Zoom each class nothing of which is still
  being copied. Its first run in a worker process first cleans up after a killed worker
  (partial blobs, interrupted downloads).
* :func:`delete_from_zoom_pending` retries deleting Zoom's copy of a class (429/5xx, refusals).
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
            purges = bool(work.due_ids(session, ingest.ZOOM_PURGE, utcnow(), 1))
        if not ids and not purges:
            return dict(result)
        zoom = zoom_for(app)
        for file_id in ids:
            try:
                result[ingest.process_file(app, file_id, zoom=zoom, storage=storage)] += 1
            except Exception:
                # Bookkeeping itself failed (database down?); the claim expires and it is retried.
                log.exception("recording file %s: ingest could not be recorded", file_id)
                result["errors"] += 1
        # Each class whose kept files are all verified now leaves Zoom.
        result.update(ingest.purge_due(app, zoom, limit=limit))
    return dict(result)


def delete_from_zoom_pending(app: Flask) -> dict[str, int]:
    with app.app_context():
        with job_session(app) as session:
            if not work.due_ids(session, ingest.ZOOM_PURGE, utcnow(), 1):
                return {}
        return ingest.purge_due(app, zoom_for(app), limit=100)


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
