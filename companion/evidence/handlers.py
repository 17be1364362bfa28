"""The handler of Zoom's meeting and participant events: each stored webhook event becomes one
attendance event. It receives ``companion.signals.zoom_event`` for the names in
``attendance.ZOOM_EVENTS`` (connected by ``companion.evidence.init_app``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from ..errors import ValidationError
from ..webhooks.models import WebhookEvent
from . import attendance

log = logging.getLogger(__name__)


def handle(
    _name: str,
    *,
    session: Session,
    event: WebhookEvent,
    document: Mapping[str, Any],
    now: dt.datetime,
) -> str:
    """ "done", or "unhandled" for an event too malformed to place (no meeting id, a participant
    event without its participant): trying again would not help, and the stored webhook keeps
    it as it came. Anything else that goes wrong is raised, so the job retries it."""
    # The stored webhook this came from, for the record.
    webhook_id = event.id
    try:
        attendance.record_event(session, document, now=now, webhook_event_id=webhook_id)
    except ValidationError as exc:
        log.warning("webhook %s (%s) kept unhandled: %s", webhook_id, document.get("event"), exc)
        return "unhandled"
    return "done"
