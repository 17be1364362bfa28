"""Webhook handlers for Zoom's meeting and participant events (registered with the dispatcher in
``companion.webhooks.services``): each event becomes one attendance event."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ValidationError
from ..webhooks.models import WebhookEvent
from ..zoom.webhooks import dedupe_key
from . import attendance

log = logging.getLogger(__name__)


def handle(session: Session, document: Mapping[str, Any], *, now: dt.datetime) -> str:
    """ "done", or "unhandled" for an event too malformed to place (no meeting id, a participant
    event without its participant): trying again would not help, and the stored webhook keeps
    it as it came. Anything else that goes wrong is raised, so the job retries it."""
    # The stored webhook this came from, for the record (same redelivery key).
    webhook_id = session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.dedupe_key == dedupe_key(document))
    ).first()
    try:
        attendance.record_event(session, document, now=now, webhook_event_id=webhook_id)
    except ValidationError as exc:
        log.warning("webhook %s (%s) kept unhandled: %s", webhook_id, document.get("event"), exc)
        return "unhandled"
    return "done"


HANDLERS: dict[str, Callable[..., str]] = {name: handle for name in attendance.ZOOM_EVENTS}
