"""The outbox on the work engine: no transaction while SMTP talks, and never a second email.

A crash (the worker killed) is simulated with the engine's hooks at each point between the
phases; the next runs must send a message exactly once when it was never handed over, and never
again by themselves when it may have been (the admin decides, in the outbox).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from companion import mail
from companion.audit.models import AuditEvent
from companion.db import get_engine, make_engine, utcnow
from companion.mail import jobs, services
from companion.mail.models import OutboxMessage
from companion.webhooks.models import WebhookEvent
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from ..conftest import Browser, csrf_from, make_app
from ..crashes import Crash, crash_fixture
from ..servers import WsgiServer
from .conftest import MAIL_FROM, fresh_database, use_smtp
from .smtp_server import SmtpServer

Start = Callable[..., SmtpServer]


crash_at = crash_fixture(jobs.OUTBOX.name)


def queue(session: Session, org: Any, to: str = "pat@example.net") -> OutboxMessage:
    return mail.send(
        session,
        to_address=to,
        to_name="Pat Parent",
        subject="Your link for Violin for beginners",
        body="Hello Pat,\n\nOpen https://companion.example/f/" + "T" * 30 + " to see it.\n",
        kind="family_link",
        organisation_id=org.id,
    )


def past_the_claim(clock: Any) -> None:
    clock.advance(jobs.OUTBOX.claim_for + dt.timedelta(seconds=1))


# --- a crash at each point ----------------------------------------------------------------------


def test_a_crash_after_the_claim_sends_the_message_exactly_once_later(
    app: Flask,
    db_session: Session,
    org: Any,
    smtp_server: Start,
    crash_at: Callable[[str], None],
    clock: Any,
) -> None:
    server = smtp_server()
    use_smtp(app, server)
    msg = queue(db_session, org)
    crash_at("after_claim")

    with pytest.raises(Crash):
        jobs.deliver_pending(app)

    db_session.refresh(msg)
    assert (msg.status, msg.attempts) == ("pending", 1)
    assert msg.claimed_until is not None and msg.claimed_until > utcnow()
    assert server.received == []
    # While the dead worker's claim lasts, nobody else starts the message.
    assert jobs.deliver_pending(app) == 0
    past_the_claim(clock)
    assert jobs.deliver_pending(app) == 1
    assert jobs.deliver_pending(app) == 0
    past_the_claim(clock)
    assert jobs.deliver_pending(app) == 0
    assert len(server.received) == 1
    db_session.refresh(msg)
    assert (msg.status, msg.attempts) == ("sent", 2)


@pytest.mark.parametrize("point", ["before_call", "after_call"])
def test_a_crash_once_the_message_may_be_with_the_server_never_sends_it_again_by_itself(
    point: str,
    app: Flask,
    db_session: Session,
    org: Any,
    smtp_server: Start,
    crash_at: Callable[[str], None],
    clock: Any,
) -> None:
    """before_call: marked "sending" and committed, then killed before the conversation;
    after_call: the server accepted it, and the worker died before recording that."""
    server = smtp_server()
    use_smtp(app, server)
    msg = queue(db_session, org)
    other = queue(db_session, org, "ann@example.net")
    crash_at(point)

    with pytest.raises(Crash):
        jobs.deliver_pending(app)

    handed_over = 1 if point == "after_call" else 0
    assert len(server.received) == handed_over
    db_session.refresh(msg)
    assert msg.status == "sending" and msg.sending_at is not None
    for _ in range(3):
        past_the_claim(clock)
        jobs.deliver_pending(app)
    db_session.refresh(msg)
    db_session.refresh(other)
    assert msg.status == "uncertain"
    assert "may have been sent" in msg.last_error
    assert other.status == "sent"  # the crash cost nothing but that one message's certainty
    assert [r.rcpt_tos for r in server.received].count(["pat@example.net"]) == handed_over


def test_the_admin_sees_a_message_that_may_have_been_sent_and_can_send_it_again(
    app: Flask,
    db_session: Session,
    org: Any,
    admin: Any,
    browser: Browser,
    smtp_server: Start,
    crash_at: Callable[[str], None],
    clock: Any,
) -> None:
    server = smtp_server()
    use_smtp(app, server)
    msg = queue(db_session, org)
    crash_at("after_call")
    with pytest.raises(Crash):
        jobs.deliver_pending(app)
    past_the_claim(clock)
    jobs.deliver_pending(app)
    assert len(server.received) == 1

    browser.login(admin.email)
    listing = browser.client.get("/admin/outbox/").get_data(as_text=True)
    assert "may have been sent" in listing
    page = browser.client.get(f"/admin/outbox/{msg.id}").get_data(as_text=True)
    assert "may have been sent" in page and "Send it again" in page

    # Without the form's token nothing happens.
    assert browser.client.post(f"/admin/outbox/{msg.id}/resend").status_code in (400, 403)
    db_session.refresh(msg)
    assert msg.status == "uncertain"

    answer = browser.client.post(
        f"/admin/outbox/{msg.id}/resend", data={"csrf_token": csrf_from(page)}
    )
    assert answer.status_code == 302
    db_session.refresh(msg)
    assert msg.status == "pending"
    audit = db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "mail.resent_by_hand")
    ).one()
    assert audit.actor == admin.email and audit.subject_id == str(msg.id)

    assert jobs.deliver_pending(app) == 1
    assert len(server.received) == 2  # the second copy, because a person asked for it
    # The same Message-ID on both copies: the recipient's mail client can tell.
    assert server.received[0].message["Message-ID"] == server.received[1].message["Message-ID"]

    # A sent message cannot be "sent again" this way.
    page = browser.client.get(f"/admin/outbox/{msg.id}").get_data(as_text=True)
    assert "Send it again" not in page
    browser.client.post(f"/admin/outbox/{msg.id}/resend", data={"csrf_token": csrf_from(page)})
    assert jobs.deliver_pending(app) == 0
    assert len(server.received) == 2


def test_a_teacher_cannot_resend(
    app: Flask, db_session: Session, org: Any, teacher: Any, browser: Browser
) -> None:
    msg = queue(db_session, org)
    msg.status = "uncertain"
    db_session.flush()
    browser.login(teacher.email)
    answer = browser.post(f"/admin/outbox/{msg.id}/resend")
    assert answer.status_code == 403
    db_session.refresh(msg)
    assert msg.status == "uncertain"


def test_no_answer_after_the_message_was_handed_over_is_may_have_been_sent_not_a_retry(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, clock: Any
) -> None:
    """The server takes the message but answers after our timeout: it did arrive, so a retry
    would be a second email."""
    server = smtp_server(hold=3)
    use_smtp(app, server, SMTP_TIMEOUT=1)
    msg = queue(db_session, org)

    assert jobs.deliver_pending(app) == 0

    db_session.refresh(msg)
    assert msg.status == "uncertain"
    assert msg.last_error.startswith("SmtpUncertain")
    server.handler.hold = 0
    assert len(server.handler.wait_for(1)) == 1  # it arrived after all
    past_the_claim(clock)
    clock.advance(hours=2)
    assert jobs.deliver_pending(app) == 0
    assert len(server.received) == 1


# --- no transaction while the server holds the message -----------------------------------------


def webhook_body(uuid: str) -> bytes:
    document = {
        "event": "meeting.started",
        "payload": {"account_id": "AAAA", "object": {"id": "85746065", "uuid": uuid}},
        "event_ts": 1700000000123,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def test_while_the_mail_server_holds_a_message_the_database_and_the_webhook_are_free(
    tmp_path: Path, smtp_server: Start
) -> None:
    hold = 4.0
    server = smtp_server(hold=hold)
    url = fresh_database(tmp_path, "mail_live")
    web = WsgiServer()
    app = make_app(url, tmp_path, BASE_URL=web.url)
    use_smtp(app, server)
    base = web.start(app)
    other_connection = make_engine(url)
    try:
        with Session(get_engine(app)) as session, session.begin():
            message_id = services.queue(
                session,
                to_address="pat@example.net",
                subject="Hello",
                body="Hello Pat\n",
                kind="test",
                now=utcnow(),
                smtp_enabled=True,
            ).id
            spare_id = services.queue(
                session,
                to_address="held@example.net",
                subject="Kept",
                body="Kept\n",
                kind="test",
                now=utcnow(),
                smtp_enabled=False,
            ).id

        delivered: list[int] = []
        worker = threading.Thread(
            target=lambda: delivered.append(jobs.deliver_pending(app)), daemon=True
        )
        worker.start()
        assert server.handler.holding.wait(10), "the message never reached the server"

        # The worker holds no connection at all while it waits for the server ...
        assert get_engine(app).pool.checkedout() == 0
        # ... another connection writes at once and sees the committed "sending" ...
        started = time.monotonic()
        with other_connection.begin() as conn:
            conn.execute(
                update(OutboxMessage).where(OutboxMessage.id == spare_id).values(to_name="Kim")
            )
            status = conn.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id))
        wrote_in = time.monotonic() - started
        assert status == "sending"
        # ... and a signed Zoom webhook is answered at once over real HTTP.
        secret = sandbox_webhook_secret(app.config)
        body = webhook_body("mail-hold-1")
        timestamp = str(int(time.time()))
        started = time.monotonic()
        answer = requests.post(
            f"{base}/zoom/webhook",
            data=body,
            headers={
                "x-zm-request-timestamp": timestamp,
                "x-zm-signature": sign(secret, timestamp, body),
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        answered_in = time.monotonic() - started
        still_holding = server.handler.holding.is_set()

        worker.join(timeout=hold + 20)
        assert not worker.is_alive()
        assert answer.status_code == 200 and answer.json() == {"status": "received"}
        assert wrote_in < 1.0, f"another connection waited {wrote_in:.2f} s to write"
        assert answered_in < 1.0, f"the webhook took {answered_in:.2f} s"
        assert still_holding, "the checks ran after the server had answered"
        assert delivered == [1]
        with other_connection.connect() as conn:
            assert (
                conn.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id))
                == "sent"
            )
            assert conn.scalar(select(WebhookEvent.event)) == "meeting.started"
        [got] = server.received
        assert got.mail_from == MAIL_FROM
    finally:
        web.stop()
        other_connection.dispose()
        get_engine(app).dispose()
