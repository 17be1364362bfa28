"""Webhook handlers for Zoom's meeting and participant events (registered with the dispatcher in
``companion.webhooks.services``): each event becomes one attendance event."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ..errors import ValidationError
from . import attendance

if TYPE_CHECKING:
    from ..webhooks.services import StoredEvent

log = logging.getLogger(__name__)


def handle(session: Session, event: StoredEvent, *, now: dt.datetime) -> str:
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


HANDLERS: dict[str, Callable[..., str]] = {name: handle for name in attendance.ZOOM_EVENTS}
