"""Process stored Zoom events on the work engine: each claimed, handled in its own transaction,
and retried with the one backoff when its handler fails."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask
from sqlalchemy.orm import Session

from .. import work
from ..db import job_session, utcnow
from ..errors import CompanionError, ValidationError
from . import services
from .models import EventStatus, WebhookEvent

log = logging.getLogger(__name__)


class HandleEvent:
    """One stored event (``work.Step``). Handlers only write to the database, so there is no
    network call: the handler runs in ``record``, in the same short transaction that marks the
    event handled, and a crash at any point leaves the event to be handled again, once."""

    def prepare(
        self, session: Session, item_id: int, now: dt.datetime
    ) -> services.StoredEvent | None:
        event = session.get(WebhookEvent, item_id)
        if event is None:
            return None
        try:
            return services.stored_event(event)
        except ValidationError as exc:
            # Checked when it came in, so only a damaged row gets here; retrying cannot help.
            event.status, event.error = (
                EventStatus.DEAD,
                f"the stored body cannot be read: {exc.message}",
            )
            work.release(event, services.QUEUE)
            return None

    def call(self, plan: services.StoredEvent) -> services.StoredEvent:
        return plan  # nothing leaves the process

    def record(
        self,
        session: Session,
        item_id: int,
        plan: services.StoredEvent,
        result: services.StoredEvent,
        now: dt.datetime,
    ) -> work.Outcome:
        event = session.get(WebhookEvent, item_id)
        if event is None:
            return "missing"
        try:
            # A savepoint: a failing handler's writes are undone, the failure is still recorded.
            with session.begin_nested():
                outcome = services.dispatch(session, plan, now=now)
        except Exception as exc:
            message = exc.message if isinstance(exc, CompanionError) else repr(exc)
            log.exception("webhook event %s could not be processed", item_id)
            return services.failed(event, message, now=now)
        return services.handled(event, outcome, now=now)

    def failed(
        self,
        session: Session,
        item_id: int,
        plan: services.StoredEvent,
        exc: Exception,
        now: dt.datetime,
    ) -> work.Outcome:  # pragma: no cover - call() cannot fail
        raise exc


def process_pending(app: Flask, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Hand every due event to its handler; one failing event never holds up the others."""
    return work.run(app, services.QUEUE, HandleEvent(), now=now)


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
