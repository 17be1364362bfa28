"""The handler of Zoom's meeting and participant events: each stored webhook event becomes one
attendance event. It receives ``companion.signals.zoom_event`` for the names in
``attendance.ZOOM_EVENTS`` (connected by ``companion.evidence.init_app``)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ..errors import ValidationError
from . import attendance

if TYPE_CHECKING:
    from ..webhooks.services import StoredEvent

log = logging.getLogger(__name__)


def handle(_name: str, *, session: Session, event: StoredEvent, now: dt.datetime) -> str:
    """ "done", or "unhandled" for an event too malformed to place (no meeting id, a participant
    event without its participant): trying again would not help, and the stored webhook keeps
    it as it came. Anything else that goes wrong is raised, so the job retries it."""
    document = event.document
    try:
        attendance.record_event(session, document, now=now, webhook_event_id=event.id)
    except ValidationError as exc:
        log.warning("webhook %s (%s) kept unhandled: %s", event.id, document.get("event"), exc)
        return "unhandled"
    return "done"
