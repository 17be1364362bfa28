"""Queue messages in the outbox and deliver them; one recipient per message, always."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import OutboxMessage

__all__ = ["OutboxMessage", "queue", "deliver", "due", "backoff", "list_outbox"]

log = logging.getLogger(__name__)

MAX_BACKOFF = dt.timedelta(hours=1)


def queue(
    session: Session,
    *,
    to_address: str,
    subject: str,
    body: str,
    kind: str,
    to_name: str = "",
    organisation_id: int | None = None,
    now: dt.datetime,
    smtp_enabled: bool,
) -> OutboxMessage:
    """Add a message for one person. It is sent by the worker once the transaction commits."""
    if "," in to_address or ";" in to_address:
        # Each message goes to exactly one person; nobody sees another recipient's address.
        raise ValueError("one recipient per message")
    msg = OutboxMessage(
        organisation_id=organisation_id,
        kind=kind,
        to_address=to_address,
        to_name=to_name[:200],
        subject=subject[:300],
        body_text=body,
        status="pending" if smtp_enabled else "held",
        next_attempt_at=now if smtp_enabled else None,
        created_at=now,
    )
    session.add(msg)
    session.flush()
    return msg


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try: 1, 2, 4 ... minutes, never more than an hour."""
    # The exponent is bounded so that a message failing for weeks cannot overflow timedelta.
    return min(dt.timedelta(minutes=2 ** min(max(0, attempts - 1), 16)), MAX_BACKOFF)


def build_message(msg: OutboxMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = formataddr((msg.to_name, msg.to_address)) if msg.to_name else msg.to_address
    email["Subject"] = msg.subject
    email["Message-ID"] = make_msgid(domain=sender.split("@", 1)[-1])
    email.set_content(msg.body_text)
    return email


def due(session: Session, now: dt.datetime, limit: int = 100) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.status == "pending",
                or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )


def deliver(
    session: Session,
    msg: OutboxMessage,
    send: Callable[[EmailMessage], None],
    *,
    sender: str,
    now: dt.datetime,
) -> bool:
    """Try one message; on failure keep it pending with a later retry time. Never drops it."""
    msg.attempts += 1
    try:
        send(build_message(msg, sender))
    except Exception as exc:  # any transport failure is retried, whatever its type
        msg.last_error = f"{type(exc).__name__}: {exc}"[:500]
        msg.next_attempt_at = now + backoff(msg.attempts)
        log.warning("mail %s failed (attempt %s)", msg.id, msg.attempts)
        session.flush()
        return False
    msg.status = "sent"
    msg.sent_at = now
    msg.last_error = ""
    # Once delivered, the outbox need not keep a working personal link: anyone who can read
    # the outbox (or a database backup) could otherwise use it.
    msg.body_text = redact_links(msg.body_text)
    session.flush()
    return True


# Personal links carry their secret as the last path segment: /f/<token>, /invite/<token>.
_PERSONAL_LINK = re.compile(r"(/(?:f|invite)/)[A-Za-z0-9_-]{20,}")


def redact_links(text: str) -> str:
    """The text with the secret part of every personal link replaced."""
    return _PERSONAL_LINK.sub(r"\1[link removed after sending]", text)


def list_outbox(session: Session, organisation_id: int, limit: int = 200) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                or_(
                    OutboxMessage.organisation_id == organisation_id,
                    OutboxMessage.organisation_id.is_(None),
                )
            )
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )
