"""Store verified Zoom events once, and hand them to their handlers later.

The view checks the signature over the raw body before calling anything here. :func:`store`
keeps the raw body under the event's redelivery key (``companion.zoom.webhooks.dedupe_key``), so
Zoom's retries and duplicates are recognised and never processed twice. :func:`dispatch` runs
in the worker (``jobs.py``) and hands each event to the receivers of
``companion.signals.zoom_event`` connected for its name (by the packages' ``init_app``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import signals
from ..errors import ValidationError
from ..zoom.webhooks import dedupe_key
from .models import WebhookEvent

log = logging.getLogger(__name__)

URL_VALIDATION = "endpoint.url_validation"
# An event whose handler keeps failing is retried with growing pauses, then left as "dead".
MAX_ATTEMPTS = 10
MAX_BACKOFF = dt.timedelta(hours=1)


def parse(body: bytes) -> dict[str, Any]:
    """The event document, or ValidationError for anything but a Zoom event envelope."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("The body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ValidationError("The body is not a JSON object.")
    event = document.get("event")
    if not isinstance(event, str) or not event or len(event) > 100:
        raise ValidationError("The event has no name.", field="event")
    if not isinstance(document.get("payload"), dict):
        raise ValidationError("The event has no payload object.", field="payload")
    return document


def plain_token(document: dict[str, Any]) -> str:
    """The token of an ``endpoint.url_validation`` challenge."""
    token = document["payload"].get("plainToken")
    if not isinstance(token, str) or not 0 < len(token) <= 256:
        raise ValidationError("The URL validation has no plainToken.", field="plainToken")
    return token


@dataclass(frozen=True)
class Stored:
    event: WebhookEvent
    duplicate: bool


def store(session: Session, document: dict[str, Any], body: bytes, *, now: dt.datetime) -> Stored:
    """Keep a verified event for the worker; a redelivery is counted and changes nothing else."""
    key = dedupe_key(document)
    existing = session.scalars(select(WebhookEvent).where(WebhookEvent.dedupe_key == key)).first()
    if existing is None:
        event = WebhookEvent(
            dedupe_key=key,
            event=str(document["event"]),
            body=body,
            received_at=now,
            status="pending",
            next_attempt_at=now,
        )
        try:
            # A savepoint: two deliveries of one event racing each other must not fail both.
            with session.begin_nested():
                session.add(event)
                session.flush()
        except IntegrityError:
            existing = session.scalars(
                select(WebhookEvent).where(WebhookEvent.dedupe_key == key)
            ).one()
        else:
            return Stored(event, duplicate=False)
    existing.redeliveries += 1
    existing.last_redelivery_at = now
    session.flush()
    return Stored(existing, duplicate=True)


# --- processing (the worker) -------------------------------------------------------------------


def handle(
    session: Session, event: WebhookEvent, document: dict[str, Any], *, now: dt.datetime
) -> str:
    """Hand the stored ``event`` to the receivers connected for its name: "done" when one did
    something with it, "unhandled" when none is connected or none could place it (then it is
    kept as it came and not retried). What a receiver raises propagates: the job retries."""
    results = signals.zoom_event.send(
        event.event, session=session, event=event, document=document, now=now
    )
    return "done" if any(outcome == "done" for _, outcome in results) else "unhandled"


def due(session: Session, now: dt.datetime, limit: int = 100) -> list[int]:
    """Ids of events to process now, oldest first (a job that died leaves its claim to expire)."""
    query = (
        select(WebhookEvent.id)
        .where(
            (WebhookEvent.status.in_(("pending", "failed")) & (WebhookEvent.next_attempt_at <= now))
            | ((WebhookEvent.status == "processing") & (WebhookEvent.claimed_until < now))
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    return list(session.scalars(query))


CLAIM_FOR = dt.timedelta(minutes=5)


def claim(session: Session, event_id: int, now: dt.datetime) -> WebhookEvent | None:
    event = session.get(WebhookEvent, event_id, with_for_update=True)
    if event is None:
        return None
    claimable = (
        event.status in ("pending", "failed")
        and event.next_attempt_at is not None
        and event.next_attempt_at <= now
    ) or (
        event.status == "processing"
        and event.claimed_until is not None
        and event.claimed_until < now
    )
    if not claimable:
        return None
    event.status = "processing"
    event.claimed_until = now + CLAIM_FOR
    event.attempts += 1
    session.flush()
    return event


def dispatch(session: Session, event_id: int, *, now: dt.datetime) -> str:
    """Run the event's handler in this transaction and mark the event with the outcome."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return "missing"
    document = parse(event.body)
    outcome = handle(session, event, document, now=now)
    event.status = outcome
    event.processed_at = now
    event.claimed_until = None
    event.next_attempt_at = None
    event.error = ""
    session.flush()
    return outcome


def backoff(attempts: int) -> dt.timedelta:
    return min(dt.timedelta(seconds=30 * 2 ** min(max(0, attempts - 1), 12)), MAX_BACKOFF)


def failed(session: Session, event_id: int, error: str, *, now: dt.datetime) -> str:
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return "missing"
    event.error = error[:500]
    event.claimed_until = None
    if event.attempts >= MAX_ATTEMPTS:
        event.status = "dead"
        event.next_attempt_at = None
    else:
        event.status = "failed"
        event.next_attempt_at = now + backoff(event.attempts)
    session.flush()
    return event.status


def prune(session: Session, *, before: dt.datetime) -> int:
    """Delete events that were handled before ``before``; pending or failed ones are kept."""
    result = session.execute(
        delete(WebhookEvent).where(
            WebhookEvent.status == "done",
            WebhookEvent.processed_at.is_not(None),
            WebhookEvent.processed_at < before,
        )
    )
    return result.rowcount or 0
