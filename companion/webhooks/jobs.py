"""Process stored Zoom events: each in its own transaction, claimed first, retried on failure."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from flask import Flask

from ..db import job_session, utcnow
from ..errors import CompanionError
from . import services

log = logging.getLogger(__name__)


def process_pending(app: Flask, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Hand every due event to its handler; one failing event never holds up the others."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        with job_session(app) as session:
            ids = services.due(session, now)
        for event_id in ids:
            with job_session(app) as session:
                claimed = services.claim(session, event_id, now)
            if claimed is None:
                result["skipped"] += 1
                continue
            try:
                with job_session(app) as session:
                    result[services.dispatch(session, event_id, now=now)] += 1
            except Exception as exc:
                message = exc.message if isinstance(exc, CompanionError) else repr(exc)
                log.exception("webhook event %s could not be processed", event_id)
                with job_session(app) as session:
                    result[services.failed(session, event_id, message, now=now)] += 1
    return dict(result)


# Zoom's last retry comes 85 minutes after the first delivery; a month is far beyond it, and the
# raw bodies hold download tokens and participants' names that need not be kept longer.
KEEP_PROCESSED = dt.timedelta(days=30)


def prune_processed(app: Flask, *, now: dt.datetime | None = None) -> int:
    """Delete handled events older than a month; returns how many were removed."""
    with app.app_context(), job_session(app) as session:
        removed = services.prune(session, before=(now or utcnow()) - KEEP_PROCESSED)
    if removed:
        log.info("pruned %d processed webhook event(s)", removed)
    return removed
