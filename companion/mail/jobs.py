"""Deliver pending mail on the work engine (``companion.work``): at most one email per message.

The outbox is a :class:`~companion.work.Queue` (``OUTBOX``). One message is one step, in four
short phases, with no transaction open while the SMTP server is talked to:

1. **claim** (committed): the message is ``pending`` and due; the claim holds it for
   ``OUTBOX.claim_for`` so no other run starts it. The message is built from the row.
2. **begin** (committed, right before the conversation): the status becomes ``sending``.
3. **call**: the SMTP conversation, with plain values only.
4. **record** (committed): ``sent``, and its personal links are removed from the stored body;
   or, when the server refused or could not be reached, ``pending`` again with the one backoff
   (``work.backoff``: 1, 2, 4 ... minutes, at most an hour).

What a crash (the worker killed, the machine lost) at each point means:

* after the claim, before ``begin``: nothing was sent. The claim runs out and the message is
  sent by a later run, once.
* after ``begin``: the server may or may not have the message (it may have accepted it a moment
  before the crash). Sending again could be a second email to a parent, so nothing is sent
  automatically: when the claim runs out, the next run turns an unanswered ``sending`` into
  ``uncertain``, shown in the admin's outbox as "may have been sent", with the time it was
  handed over. The admin, who can ask the recipient or read the mail server's log, sends it
  again by hand (``POST /admin/outbox/<id>/resend``, on the audit trail), and the worker sends it
  in its next run. The same happens when the connection is lost after the message itself was
  handed over (``SmtpUncertain``: a timeout waiting for the server's final answer).
* after the server answered, before it was recorded: as after ``begin``.

So each message is sent at most once without a person deciding otherwise, and never lost: a
message is ``sent``, still to be sent, or in front of the admin. The same message carries the
same Message-ID on every attempt.

When the server is down or refuses us (``SmtpUnavailable``), the rest of the batch would fail the
same way: the run stops, and the rest keep their turn for the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import metrics, work
from ..db import job_session, utcnow
from . import services
from .models import MessageStatus, OutboxMessage
from .transport import SmtpSender, SmtpUnavailable, SmtpUncertain, sender_from_config

log = logging.getLogger(__name__)

OUTBOX = work.Queue(
    name="outbox",
    model=OutboxMessage,
    id=OutboxMessage.id,
    attempts=OutboxMessage.attempts,
    due=OutboxMessage.next_attempt_at,
    claimed_until=OutboxMessage.claimed_until,
    ready=lambda: OutboxMessage.status == MessageStatus.PENDING,
    # Far longer than one SMTP conversation (30 s per command), so a run still sending is never
    # taken for a dead one.
    claim_for=dt.timedelta(minutes=10),
    backoff_base=dt.timedelta(minutes=1),
    backoff_cap=dt.timedelta(hours=1),
)


@dataclass(frozen=True)
class MailPlan:
    message_id: int
    to_address: str
    email: EmailMessage


class SendMessage:
    """One message over one SMTP connection shared by the batch (``work.Step``)."""

    def __init__(self, smtp: SmtpSender, sender: str):
        self.smtp = smtp
        self.sender = sender

    def prepare(self, session: Session, item_id: int, now: dt.datetime) -> MailPlan | None:
        msg = session.get(OutboxMessage, item_id)
        if msg is None or msg.status != MessageStatus.PENDING:
            return None
        return MailPlan(msg.id, msg.to_address, services.build_message(msg, self.sender))

    def begin(self, session: Session, item_id: int, plan: MailPlan, now: dt.datetime) -> bool:
        # Conditional, like the claim: only a message still pending (not resent, not sent by
        # another run after our claim ran out) is handed to the server.
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == item_id, OutboxMessage.status == MessageStatus.PENDING)
            .values(status=MessageStatus.SENDING, sending_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def call(self, plan: MailPlan) -> None:
        # The outbox row's one address, whatever the headers say.
        self.smtp.send(plan.email, to_addrs=[plan.to_address])

    def record(
        self, session: Session, item_id: int, plan: MailPlan, result: None, now: dt.datetime
    ) -> work.Outcome:
        msg = session.get(OutboxMessage, item_id)
        if msg is None:
            return "missing"
        services.mark_sent(msg, now)
        metrics.mail_sent()
        return "sent"

    def failed(
        self, session: Session, item_id: int, plan: MailPlan, exc: Exception, now: dt.datetime
    ) -> work.Outcome:
        msg = session.get(OutboxMessage, item_id)
        if msg is None:
            return "missing"
        msg.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, SmtpUncertain):
            msg.status = MessageStatus.UNCERTAIN
            msg.claimed_until = None
            log.error("mail %s may have been sent (%s); left for the admin", msg.id, exc)
            metrics.mail_failed("uncertain")
            return "uncertain"
        # Refused, or never handed over: any transport failure is retried, whatever its type.
        msg.status = MessageStatus.PENDING
        when = work.postpone(msg, OUTBOX, now)
        log.warning("mail %s failed (attempt %s); next try %s", msg.id, msg.attempts, when)
        outcome = "unavailable" if isinstance(exc, SmtpUnavailable) else "failed"
        metrics.mail_failed(outcome)
        return outcome


def give_up_unanswered(session: Session, now: dt.datetime) -> int:
    """``sending`` messages whose claim ran out (the worker stopped mid-send) become
    ``uncertain``: they may have been sent, so only the admin sends them again."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.claimed_until < now)
        .values(
            status=MessageStatus.UNCERTAIN,
            claimed_until=None,
            last_error="the worker stopped while sending; it may have been sent",
        )
        .execution_options(synchronize_session="fetch")
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        log.error("mail: %d message(s) may have been sent; the admin decides on each", count)
    return count


def deliver_pending(
    app: Flask, *, limit: int = 100, clock: Callable[[], dt.datetime] = utcnow
) -> int:
    """Send what is due; returns how many messages the SMTP server accepted."""
    make_sender = sender_from_config(app.config)
    if make_sender is None:
        # Held mode: messages stay in the outbox for the admin to read.
        return 0
    with job_session(app) as session:
        give_up_unanswered(session, clock())
        anything_due = bool(work.due_ids(session, OUTBOX, clock(), 1))
    if not anything_due:
        return 0
    counts: dict[str, int] = {}
    done: list[int] = []
    with make_sender() as smtp:
        step = SendMessage(smtp, app.config["MAIL_FROM"])
        # One message claimed at a time (work.claim_next: SKIP LOCKED on PostgreSQL), so
        # several workers sending at once each take the next message nobody holds.
        while len(done) < limit:
            with job_session(app) as session:
                message_id = work.claim_next(session, OUTBOX, clock(), exclude=done)
            if message_id is None:
                break
            done.append(message_id)
            outcome: Any = work.run_one(app, OUTBOX, step, message_id, now=clock(), claimed=True)
            counts[str(outcome)] = counts.get(str(outcome), 0) + 1
            if outcome == "unavailable":
                log.warning("mail: SMTP unavailable; the rest is left for the next run")
                break
    if counts:
        log.info("mail: %s", ", ".join(f"{n} {what}" for what, n in sorted(counts.items())))
    return counts.get("sent", 0)
