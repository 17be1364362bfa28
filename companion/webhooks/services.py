"""Store verified Zoom events once, and hand them to their handlers later.

The view checks the signature over the raw body before calling anything here. :func:`store`
keeps the raw body under the event's redelivery key (``companion.zoom.webhooks.dedupe_key``), so
Zoom's retries and duplicates are recognised and never processed twice. The worker (``jobs.py``)
takes stored events from :data:`QUEUE` (the work engine) and :func:`dispatch` hands each, as a
:class:`StoredEvent`, to the receivers of ``companion.signals.zoom_event`` connected for its
name (by the packages' ``init_app``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import signals, work
from ..db import changed_rows
from ..errors import ValidationError
from ..zoom.webhooks import dedupe_key
from .models import EventStatus, WebhookEvent

log = logging.getLogger(__name__)

URL_VALIDATION = "endpoint.url_validation"
# An event whose handler keeps failing is retried with growing pauses, then left as "dead".
MAX_ATTEMPTS = 10


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
    if not event.isprintable():
        # Zoom's event names are words and dots; a control character (a NUL cannot even be
        # stored on PostgreSQL) is no event of Zoom's.
        raise ValidationError("The event name is not valid.", field="event")
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
            status=EventStatus.PENDING,
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


@dataclass(frozen=True)
class Kept:
    """What :func:`store_all` gives each delivery: its event, and whether it repeats one."""

    event_id: int
    duplicate: bool
    status: str


def store_all(
    session: Session, deliveries: list[tuple[dict[str, Any], bytes, dt.datetime]]
) -> list[Kept] | None:
    """:func:`store` for several deliveries at once, in a few statements whatever their number:
    one look-up of their keys, one insert of the new events, and a count on each event
    delivered again (already stored, or twice in this list). Returns None, having changed
    nothing, when another connection stored one of the events in the meantime (the unique
    key refused the insert); the caller then stores them one by one with :func:`store`.
    """
    keys = [dedupe_key(document) for document, _body, _now in deliveries]
    found = {
        key: (event_id, str(status))
        for key, event_id, status in session.execute(
            select(WebhookEvent.dedupe_key, WebhookEvent.id, WebhookEvent.status).where(
                WebhookEvent.dedupe_key.in_(set(keys))
            )
        )
    }
    new: dict[str, dict[str, Any]] = {}
    repeats: dict[str, tuple[int, dt.datetime]] = {}
    for key, (document, body, now) in zip(keys, deliveries, strict=True):
        if key in found or key in new:
            count, _last = repeats.get(key, (0, now))
            repeats[key] = (count + 1, now)
        else:
            new[key] = {
                "dedupe_key": key,
                "event": str(document["event"]),
                "body": body,
                "received_at": now,
                "status": EventStatus.PENDING,
                "next_attempt_at": now,
            }
    if new:
        try:
            with session.begin_nested():
                ids = session.scalars(
                    insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True),
                    list(new.values()),
                ).all()
        except IntegrityError:
            return None
        for key, event_id in zip(new, ids, strict=True):
            found[key] = (event_id, str(EventStatus.PENDING))
    for key, (count, last) in repeats.items():
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == found[key][0])
            .values(redeliveries=WebhookEvent.redeliveries + count, last_redelivery_at=last)
        )
    kept, seen = [], set()
    for key in keys:
        event_id, status = found[key]
        # The first delivery of a new event is the event; every other one repeats it.
        first_of_new = key in new and key not in seen
        seen.add(key)
        kept.append(Kept(event_id, duplicate=not first_of_new, status=status))
    return kept


# --- processing (the worker, ``jobs.py``) ------------------------------------------------------

# Events on the work engine: a claim holds one event while its handler runs; a failing handler is
# retried after 30 s, 1, 2, 4 ... minutes (at most an hour), and given up as "dead" after
# MAX_ATTEMPTS. A worker that died mid-event leaves its claim to run out, and since the handler's
# writes and the event's new status commit together, an event is never handled twice.
QUEUE = work.Queue(
    name="webhook_events",
    model=WebhookEvent,
    id=WebhookEvent.id,
    attempts=WebhookEvent.attempts,
    due=WebhookEvent.next_attempt_at,
    claimed_until=WebhookEvent.claimed_until,
    ready=lambda: WebhookEvent.status.in_((EventStatus.PENDING, EventStatus.FAILED)),
    claim_for=dt.timedelta(minutes=5),
    backoff_base=dt.timedelta(seconds=30),
    backoff_cap=dt.timedelta(hours=1),
)


@dataclass(frozen=True)
class StoredEvent:
    """What a handler is given: the stored event it handles, as plain values.

    ``id`` is the ``WebhookEvent`` row (for the handler's own records), ``document`` the body
    exactly as stored, parsed once for this attempt; nothing is looked up again by its key.
    """

    id: int
    name: str
    dedupe_key: str
    document: Mapping[str, Any]
    received_at: dt.datetime


def stored_event(event: WebhookEvent) -> StoredEvent:
    return StoredEvent(
        id=event.id,
        name=event.event,
        dedupe_key=event.dedupe_key,
        document=parse(event.body),
        received_at=event.received_at,
    )


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


def dispatch(session: Session, event: StoredEvent, *, now: dt.datetime) -> str:
    """Run the event's handler in this transaction; its outcome ("done" or "unhandled").

    The one place events meet their handlers, the receivers of ``signals.zoom_event`` for the
    event's name: meeting.* and participant events go to attendance, ``recording.completed`` to
    the recordings ingest; an event nobody receives, or nobody could place, is kept as it came
    ("unhandled"). What a receiver raises propagates: the job retries the event.
    """
    results = signals.zoom_event.send(event.name, session=session, event=event, now=now)
    return "done" if any(outcome == "done" for _, outcome in results) else "unhandled"


def handled(event: WebhookEvent, outcome: str, *, now: dt.datetime) -> str:
    """Mark the event with its handler's outcome; nothing is due on it any more."""
    event.status = EventStatus(outcome)
    event.processed_at = now
    event.error = ""
    work.release(event, QUEUE)
    return outcome


def failed(event: WebhookEvent, error: str, *, now: dt.datetime) -> str:
    """The handler failed: try again later with the queue's backoff, or give up."""
    event.error = error[:500]
    if event.attempts >= MAX_ATTEMPTS:
        event.status = EventStatus.DEAD
        work.release(event, QUEUE)
    else:
        event.status = EventStatus.FAILED
        work.postpone(event, QUEUE, now)
    return event.status


def prune(session: Session, *, before: dt.datetime) -> int:
    """Delete events that were handled before ``before``; pending or failed ones are kept."""
    result = session.execute(
        delete(WebhookEvent).where(
            WebhookEvent.status == EventStatus.DONE,
            WebhookEvent.processed_at.is_not(None),
            WebhookEvent.processed_at < before,
        )
    )
    return changed_rows(result)
