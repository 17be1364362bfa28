"""Scheduled work on families. Each job is safe to run twice, late, or with a list of ids.

* :func:`sync_zoom` registers families left "pending in Zoom" and cancels the registrants of
  withdrawn ones: the work engine's run of the :data:`~registrants.REGISTRANTS` queue. Each family
  is claimed (committed) before Zoom is called, Zoom is called with no transaction open, and an
  attempt after a first one looks the registrant up by its address before adding it, so none is
  added twice.
* :func:`after_request` hands one family's Zoom work (:func:`work_family`) to run once a
  request (enrol, retry, withdraw) has committed what it wants and answered;
  :func:`reread_join_url` reads a family's join link from Zoom again for the family's own page,
  with no transaction open either.
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
from collections.abc import Iterable

from flask import Flask, current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import db, work
from ..work import Outcome, run_each
from ..zoom import zoom_for
from ..zoom.api import ZoomApi
from . import admit, links, registrants
from .models import Family

log = logging.getLogger(__name__)


def sync_zoom(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Register pending families and cancel withdrawn ones in Zoom (or exactly ``family_ids``)."""
    step = registrants.RegistrantStep(zoom_for(app))
    return work.run(app, registrants.REGISTRANTS, step, family_ids, now=now)


def work_family(
    app: Flask, family_id: int, *, actor_id: int | None = None, zoom: ZoomApi | None = None
) -> Outcome:
    """One family's Zoom work now: claim and commit, call Zoom with no transaction open, record
    the answer in a transaction of its own. The caller must have committed what it wants."""
    step = registrants.RegistrantStep(zoom or zoom_for(app), actor_id=actor_id)
    return work.run_one(app, registrants.REGISTRANTS, step, family_id)


def after_request(family: Family, *, actor_id: int | None) -> None:
    """Run ``family``'s Zoom work once the request has committed and answered.

    For the views and the API right after a service recorded Zoom work (enrol, retry, withdraw):
    the person sees the family at once, "pending in Zoom" (or "cancelling"), and a reload shows
    the result; Zoom is called with no transaction open and no lock held, however long it takes.
    If this never runs (the process stops), the work is still due and the worker does it.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    family_id = family.id
    db.after_commit(lambda: work_family(app, family_id, actor_id=actor_id))


def reread_join_url(app: Flask, family_id: int) -> Outcome:
    """Read a family's join link from Zoom again (it was sealed under a key now lost).

    The caller has committed: this claims, calls Zoom with no transaction open, and records.
    """
    try:
        return work.run_one(
            app, registrants.JOIN_LINKS, registrants.JoinLinkStep(zoom_for(app)), family_id
        )
    except Exception:
        log.exception("family %s: could not re-read the join link", family_id)
        return "errors"


def send_owed_links(
    app: Flask, family_ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Send every family link that is owed and may now go."""

    def send(session: Session, family_id: int, now: dt.datetime) -> Outcome:
        family = session.get(Family, family_id)
        if family is None:
            return None
        return ("sent", links.deliver_owed_links(session, family, now=now))

    return run_each(
        app,
        family_ids,
        what="family (owed links)",
        due=links.families_owed_links,
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
        due=admit.due_summaries,
        work=lambda session, class_id, now: (
            "sent" if admit.send_summary(session, class_id=class_id, now=now) else "skipped"
        ),
        now=now,
        # Another worker sent it between our look and our write; nothing was queued.
        skip_on=(IntegrityError,),
        domain_errors="errors",
    )
