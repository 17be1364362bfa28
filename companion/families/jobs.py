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
from collections.abc import Iterable

from flask import Flask
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..courses.zoomclient import zoom_for
from ..work import Outcome, run_each
from . import services
from .models import Family


def sync_zoom(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Register pending families and cancel withdrawn ones in Zoom (or exactly ``family_ids``)."""
    zoom = zoom_for(app)
    return run_each(
        app,
        family_ids,
        what="family (Zoom sync)",
        due=services.due_for_zoom,
        claim=services.claim_for_zoom,
        # The claim runs out by itself if this fails; the next run tries again.
        work=lambda session, family_id, now: services.push_zoom(
            session, zoom, family_id=family_id, now=now
        ),
        now=now,
        domain_errors="errors",
    )


def send_owed_links(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Send every family link that is owed and may now go."""

    def send(session: Session, family_id: int, now: dt.datetime) -> Outcome:
        family = session.get(Family, family_id)
        if family is None:
            return None
        return ("sent", services.deliver_owed_links(session, family, now=now))

    return run_each(
        app,
        family_ids,
        what="family (owed links)",
        due=services.families_owed_links,
        work=send,
        now=now,
        domain_errors="errors",
    )


def class_summaries(
    app: Flask, class_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Mail the teacher the admit list of every class starting within two hours, once."""
    return run_each(
        app,
        class_ids,
        what="class (summary)",
        due=services.due_summaries,
        work=lambda session, class_id, now: (
            "sent" if services.send_summary(session, class_id=class_id, now=now) else "skipped"
        ),
        now=now,
        # Another worker sent it between our look and our write; nothing was queued.
        skip_on=(IntegrityError,),
        domain_errors="errors",
    )
