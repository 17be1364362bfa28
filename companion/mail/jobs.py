"""Deliver pending mail: safe to run twice, or in two processes at once.

Each message is claimed before it is sent (its next attempt is pushed past the claim window in a
committed UPDATE that only one run can win), and its outcome is committed straight after the
SMTP server answers, so a message is never sent twice by two runs, and a crash between sending and
committing costs at most one repeat after the claim window, never a lost message.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from email.message import EmailMessage

from flask import Flask
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from ..db import job_session, utcnow
from . import services
from .models import OutboxMessage
from .transport import SmtpSender, SmtpUnavailable, sender_from_config

log = logging.getLogger(__name__)

# Longer than a slow SMTP conversation, so a run still sending is not overtaken by another.
CLAIM = dt.timedelta(minutes=10)


def _claim(session: Session, message_id: int, now: dt.datetime) -> OutboxMessage | None:
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == "pending",
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        )
        .values(next_attempt_at=now + CLAIM)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    msg = session.get(OutboxMessage, message_id)
    if msg is not None:
        session.refresh(msg)
    return msg


def deliver_pending(
    app: Flask, *, limit: int = 100, clock: Callable[[], dt.datetime] = utcnow
) -> int:
    """Send what is due; returns how many messages the SMTP server accepted."""
    make_sender = sender_from_config(app.config)
    if make_sender is None:
        # Held mode: messages stay in the outbox for the admin to read.
        return 0
    sent = failed = 0
    with job_session(app) as session, make_sender() as smtp:
        due_ids = [m.id for m in services.due(session, clock(), limit=limit)]
        session.commit()
        for message_id in due_ids:
            msg = _claim(session, message_id, clock())
            if msg is None:
                continue  # sent or claimed by another run since we looked
            unavailable: list[SmtpUnavailable] = []
            ok = services.deliver(
                session,
                msg,
                _sender_to(smtp, msg.to_address, unavailable),
                sender=app.config["MAIL_FROM"],
                now=clock(),
            )
            session.commit()
            if ok:
                sent += 1
                continue
            failed += 1
            if unavailable:
                # The server is unreachable or refuses us: the rest of the batch would fail the
                # same way, so it waits for the next run with its retry times untouched.
                log.warning(
                    "mail: SMTP unavailable (%s); %d message(s) left for the next run",
                    unavailable[0],
                    len(due_ids) - sent - failed,
                )
                break
    if sent or failed:
        log.info("mail: %d sent, %d failed and kept for retry", sent, failed)
    return sent


def _sender_to(
    smtp: SmtpSender, address: str, unavailable: list[SmtpUnavailable]
) -> Callable[[EmailMessage], None]:
    """Send to the outbox row's one address, whatever the headers say; note a server outage."""

    def send(message: EmailMessage) -> None:
        try:
            smtp.send(message, to_addrs=[address])
        except SmtpUnavailable as exc:
            unavailable.append(exc)
            raise

    return send
