"""Queue messages in the outbox and deliver them; one recipient per message, always."""

from __future__ import annotations

import datetime as dt
import logging
import re
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..audit.services import record as audit
from ..errors import ValidationError
from .models import MessageStatus, OutboxMessage

__all__ = ["OutboxMessage", "queue", "build_message", "mark_sent", "resend", "list_outbox"]

log = logging.getLogger(__name__)


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
        status=MessageStatus.PENDING if smtp_enabled else MessageStatus.HELD,
        next_attempt_at=now if smtp_enabled else None,
        created_at=now,
    )
    session.add(msg)
    session.flush()
    return msg


def build_message(msg: OutboxMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = formataddr((msg.to_name, msg.to_address)) if msg.to_name else msg.to_address
    email["Subject"] = msg.subject
    # One Message-ID per outbox row, the same on every attempt: should a message be sent twice
    # after all (the admin's resend of one that had arrived), mail clients can tell.
    domain = sender.split("@", 1)[-1]
    email["Message-ID"] = f"<outbox.{msg.id}.{int(msg.created_at.timestamp())}@{domain}>"
    email.set_content(msg.body_text)
    return email


def mark_sent(msg: OutboxMessage, now: dt.datetime) -> None:
    """The server accepted the message."""
    msg.status = MessageStatus.SENT
    msg.sent_at = now
    msg.last_error = ""
    msg.claimed_until = None
    msg.next_attempt_at = None
    # Once delivered, the outbox need not keep a working personal link: anyone who can read
    # the outbox (or a database backup) could otherwise use it.
    msg.body_text = redact_links(msg.body_text)


class NotResendable(ValidationError):
    code = "not_resendable"
    status = 409


def resend(session: Session, msg: OutboxMessage, *, actor: Any, now: dt.datetime) -> None:
    """The admin asks for a message that may have been sent to be sent (again) after all."""
    if msg.status != MessageStatus.UNCERTAIN:
        raise NotResendable(
            "Only a message that may have been sent can be sent again by hand; "
            f"this one is {msg.status_label}."
        )
    msg.status = MessageStatus.PENDING
    msg.next_attempt_at = now
    msg.claimed_until = None
    audit(
        session,
        "mail.resent_by_hand",
        actor=actor,
        organisation_id=msg.organisation_id,
        subject=("outbox_message", msg.id),
        message_kind=msg.kind,
        attempts=msg.attempts,
        sending_at=msg.sending_at,
    )
    session.flush()


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
