"""Scheduled work on families. Each job is safe to run twice, late, or with a list of ids.

* :func:`sync_zoom` registers families left "pending in Zoom" and cancels the registrants of
  withdrawn ones. Each family is claimed (committed) before Zoom is called, and an attempt after
  a first one looks the registrant up by its address before adding it, so none is added twice.
* :func:`send_owed_links` sends the family links that waited for a safe course (the course's
  safety event sends them at once; this catches anything that event could not).
* :func:`class_summaries` mails each teacher the admit list of each class about two hours
  before it; a row per class records that it went out, so it goes out once.

Every family (and every class) is handled in its own transaction: one failing never holds up
the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable

from flask import Flask
from sqlalchemy.exc import IntegrityError

from ..courses.zoomclient import zoom_for
from ..db import job_session, utcnow
from . import services
from .models import Family

log = logging.getLogger(__name__)


def sync_zoom(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Register pending families and cancel withdrawn ones in Zoom (or exactly ``family_ids``)."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        zoom = zoom_for(app)
        if family_ids is None:
            with job_session(app) as session:
                family_ids = services.due_for_zoom(session, now)
        for family_id in family_ids:
            with job_session(app) as session:
                claimed = services.claim_for_zoom(session, family_id, now)
            if not claimed:
                result["skipped"] += 1
                continue
            try:
                with job_session(app) as session:
                    state = services.push_zoom(session, zoom, family_id=family_id, now=now)
            except Exception:
                # The claim runs out by itself; the next run tries again.
                log.exception("family %s: Zoom sync failed", family_id)
                result["errors"] += 1
                continue
            result[state] += 1
    return dict(result)


def send_owed_links(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Send every family link that is owed and may now go."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        if family_ids is None:
            with job_session(app) as session:
                family_ids = services.families_owed_links(session, now)
        for family_id in family_ids:
            try:
                with job_session(app) as session:
                    family = session.get(Family, family_id)
                    if family is None:
                        continue
                    result["sent"] += services.deliver_owed_links(session, family, now=now)
            except Exception:
                log.exception("family %s: sending owed links failed", family_id)
                result["errors"] += 1
    return dict(result)


def class_summaries(
    app: Flask, class_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Mail the teacher the admit list of every class starting within two hours, once."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        if class_ids is None:
            with job_session(app) as session:
                class_ids = services.due_summaries(session, now)
        for class_id in class_ids:
            try:
                with job_session(app) as session:
                    sent = services.send_summary(session, class_id=class_id, now=now)
            except IntegrityError:
                # Another worker sent it between our look and our write; nothing was queued.
                result["skipped"] += 1
                continue
            except Exception:
                log.exception("class %s: summary failed", class_id)
                result["errors"] += 1
                continue
            result["sent" if sent else "skipped"] += 1
    return dict(result)
