"""Delivery over SMTP to a real server (aiosmtpd on loopback): TLS, AUTH, refusals, outages.

Every failure must leave the message pending with its error and a later retry time; nothing is
ever lost, and nothing is sent twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion import mail, work
from companion.config import ConfigError
from companion.db import utcnow
from companion.mail import jobs, services
from companion.mail.models import OutboxMessage
from companion.mail.transport import SmtpRejected, SmtpSender, SmtpUnavailable

from ..conftest import make_app
from .conftest import MAIL_FROM, use_smtp
from .smtp_server import PASSWORD, Certs, SmtpServer, free_port

Start = Callable[..., SmtpServer]


def queue(
    session: Session,
    org: Any,
    to: str = "pat@example.net",
    *,
    name: str = "Pat Parent",
    subject: str = "Your link for Violin for beginners",
    body: str = "Hello Pat,\n\nHere is your family link.\n",
) -> OutboxMessage:
    msg = mail.send(
        session,
        to_address=to,
        to_name=name,
        subject=subject,
        body=body,
        kind="family_link",
        organisation_id=org.id,
    )
    assert msg.status == "pending"
    return msg


def later(minutes: float) -> Callable[[], dt.datetime]:
    return lambda: utcnow() + dt.timedelta(minutes=minutes)


# --- the message as the server receives it -------------------------------------------------


def test_plain_smtp_delivers_one_message_to_its_one_recipient(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server(security="none")
    use_smtp(app, server)
    msg = queue(db_session, org, name="Zoë Parent", subject="Lesson 1 — Tuesday")

    assert jobs.deliver_pending(app) == 1

    [got] = server.received
    assert got.mail_from == MAIL_FROM
    assert got.rcpt_tos == ["pat@example.net"]
    email = got.message
    assert email["From"] == MAIL_FROM
    assert email["To"] == "Zoë Parent <pat@example.net>"
    assert len(email["To"].addresses) == 1
    assert email["Cc"] is None and email["Bcc"] is None
    assert email["Subject"] == "Lesson 1 — Tuesday"
    assert email["Message-ID"]
    # CRLF is SMTP's line ending on the wire.
    assert email.get_content().replace("\r\n", "\n") == "Hello Pat,\n\nHere is your family link.\n"
    assert not got.tls
    db_session.refresh(msg)
    assert (msg.status, msg.attempts, msg.last_error) == ("sent", 1, "")
    assert msg.sent_at is not None


def test_each_parent_gets_a_message_that_names_only_them(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server()
    use_smtp(app, server)
    queue(db_session, org, "ann@example.net", name="Ann")
    queue(db_session, org, "bob@example.net", name="Bob")

    assert jobs.deliver_pending(app) == 2

    assert [r.rcpt_tos for r in server.received] == [["ann@example.net"], ["bob@example.net"]]
    ann, bob = (r.data.decode() for r in server.received)
    assert "bob@example.net" not in ann
    assert "ann@example.net" not in bob


def test_a_message_for_two_recipients_is_refused_before_it_is_queued(
    app: Flask, db_session: Session, org: Any
) -> None:
    with pytest.raises(ValueError, match="one recipient"):
        queue(db_session, org, "ann@example.net, bob@example.net")
    assert db_session.query(OutboxMessage).count() == 0


def test_delivering_twice_does_not_send_twice(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server()
    use_smtp(app, server)
    queue(db_session, org)

    assert jobs.deliver_pending(app) == 1
    assert jobs.deliver_pending(app) == 0
    assert jobs.deliver_pending(app, clock=later(24 * 60)) == 0
    assert len(server.received) == 1


def test_a_message_claimed_by_another_run_is_left_to_it(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server()
    use_smtp(app, server)
    msg = queue(db_session, org)
    # Another worker has claimed it and is talking to the server right now.
    assert work.claim(db_session, jobs.OUTBOX, msg.id, utcnow())
    assert not work.claim(db_session, jobs.OUTBOX, msg.id, utcnow())

    assert jobs.deliver_pending(app) == 0
    assert server.received == []
    # Had that worker died before handing the message over, it is sent once the claim runs out.
    minutes = jobs.OUTBOX.claim_for.total_seconds() / 60
    assert jobs.deliver_pending(app, clock=later(minutes + 1)) == 1
    assert len(server.received) == 1


# --- TLS -------------------------------------------------------------------------------------


def test_starttls_with_a_private_ca(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="starttls")
    use_smtp(app, server, certs)
    queue(db_session, org)

    assert jobs.deliver_pending(app) == 1
    [got] = server.received
    assert got.tls
    assert got.rcpt_tos == ["pat@example.net"]


def test_implicit_tls(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="tls")
    use_smtp(app, server, certs)
    queue(db_session, org)

    assert jobs.deliver_pending(app) == 1
    [got] = server.received
    assert got.tls


def test_an_untrusted_certificate_is_not_accepted(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server(security="starttls")
    use_smtp(app, server, certs=None)  # the system CAs do not know our test CA
    msg = queue(db_session, org)

    assert jobs.deliver_pending(app) == 0
    assert server.received == []
    db_session.refresh(msg)
    assert msg.status == "pending"
    assert "CERTIFICATE_VERIFY_FAILED" in msg.last_error


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="none")
    use_smtp(app, server, certs, security="starttls")
    msg = queue(db_session, org)

    assert jobs.deliver_pending(app) == 0
    assert server.received == []
    db_session.refresh(msg)
    assert msg.status == "pending"
    assert "STARTTLS" in msg.last_error


def test_the_password_is_not_sent_in_the_clear_to_a_remote_server() -> None:
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = MAIL_FROM, "pat@example.net", "hi"
    sender = SmtpSender("mail.example.org", 25, security="none", username="u", password="p")
    # Refused before any connection: the test network guard would fail a connect attempt.
    with sender, pytest.raises(SmtpUnavailable, match="without TLS"):
        sender.send(email)


def test_a_missing_ca_file_stops_the_app_at_start(database_url: str, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="COMPANION_SMTP_CA_FILE must be a readable file"):
        make_app(database_url, tmp_path, SMTP_CA_FILE=str(tmp_path / "missing.pem"))


# --- AUTH ------------------------------------------------------------------------------------


def test_auth_login_succeeds(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="starttls", auth=True)
    use_smtp(app, server, certs, login=True)
    queue(db_session, org)

    assert jobs.deliver_pending(app) == 1
    [got] = server.received
    assert got.authenticated and got.tls


def test_auth_failure_keeps_the_message(
    app: Flask, db_session: Session, org: Any, smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="starttls", auth=True)
    use_smtp(app, server, certs, login=True, SMTP_PASSWORD="wrong password")
    msg = queue(db_session, org)

    assert jobs.deliver_pending(app) == 0
    assert server.received == []
    db_session.refresh(msg)
    assert msg.status == "pending"
    assert "login refused: 535" in msg.last_error
    assert "wrong password" not in msg.last_error

    app.config["SMTP_PASSWORD"] = PASSWORD
    assert jobs.deliver_pending(app, clock=later(2)) == 1
    assert server.received[0].authenticated


# --- refusals and outages --------------------------------------------------------------------


def test_a_refused_recipient_stays_pending_with_a_later_retry_and_others_still_go(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    server = smtp_server()
    server.handler.refuse.add("gone@example.net")
    use_smtp(app, server)
    refused = queue(db_session, org, "gone@example.net")
    fine = queue(db_session, org, "pat@example.net")
    before = utcnow()

    assert jobs.deliver_pending(app) == 1

    db_session.refresh(refused)
    db_session.refresh(fine)
    assert fine.status == "sent"
    assert [r.rcpt_tos for r in server.received] == [["pat@example.net"]]
    assert refused.status == "pending"
    assert refused.attempts == 1
    assert refused.last_error.startswith("SmtpRejected: recipient refused: 550")
    assert refused.next_attempt_at is not None
    assert refused.next_attempt_at >= before + dt.timedelta(minutes=1)

    # Not due yet: the next run leaves it alone.
    assert jobs.deliver_pending(app) == 0
    assert server.handler.rcpt_attempts.count("gone@example.net") == 1
    # Due again later: retried, still refused, waiting longer each time.
    assert jobs.deliver_pending(app, clock=later(2)) == 0
    db_session.refresh(refused)
    assert refused.attempts == 2
    assert refused.status == "pending"
    assert server.handler.rcpt_attempts.count("gone@example.net") == 2
    # The mailbox comes back: the message goes out after all.
    server.handler.refuse.clear()
    assert jobs.deliver_pending(app, clock=later(10)) == 1
    db_session.refresh(refused)
    assert refused.status == "sent"
    assert server.received[-1].rcpt_tos == ["gone@example.net"]


def test_server_down_loses_nothing_and_the_next_run_after_it_returns_sends(
    app: Flask, db_session: Session, org: Any, smtp_server: Start
) -> None:
    port = free_port()
    down = smtp_server(port=port, start=False)
    use_smtp(app, down)
    first = queue(db_session, org, "ann@example.net")
    second = queue(db_session, org, "bob@example.net")

    assert jobs.deliver_pending(app) == 0

    db_session.refresh(first)
    db_session.refresh(second)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error.startswith("SmtpUnavailable")
    assert "ConnectionRefusedError" in first.last_error
    # The batch stops at the first outage instead of hammering a dead server per message.
    assert (second.status, second.attempts) == ("pending", 0)

    server = smtp_server(port=port)
    assert jobs.deliver_pending(app, clock=later(2)) == 2
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["ann@example.net", "bob@example.net"]
    db_session.refresh(first)
    assert first.status == "sent"


def test_backoff_grows_and_is_capped_at_an_hour() -> None:
    queue = jobs.OUTBOX
    waits = [work.backoff(n, base=queue.backoff_base, cap=queue.backoff_cap) for n in range(1, 12)]
    assert waits[:4] == [dt.timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert waits == sorted(waits)
    assert max(waits) == dt.timedelta(hours=1)
    assert work.backoff(10_000, base=queue.backoff_base, cap=queue.backoff_cap) == dt.timedelta(
        hours=1
    )
    assert not hasattr(services, "backoff")  # the one backoff is the work engine's


def test_a_server_that_drops_idle_connections_is_reconnected(
    smtp_server: Start, certs: Certs
) -> None:
    server = smtp_server(security="starttls")
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = MAIL_FROM, "pat@example.net", "one"
    email.set_content("body")
    with SmtpSender(server.host, server.port, security="starttls", ca_file=str(certs.ca_file)) as s:
        s.send(email)
        assert s._smtp is not None
        s._smtp.sock.close()  # as if the server had timed the idle connection out
        s.send(email)
    assert len(server.received) == 2


def test_sender_reports_a_refusal_as_rejected_not_unavailable(smtp_server: Start) -> None:
    server = smtp_server()
    server.handler.refuse.add("gone@example.net")
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = MAIL_FROM, "gone@example.net", "x"
    email.set_content("body")
    with SmtpSender(server.host, server.port, security="none") as sender:
        with pytest.raises(SmtpRejected) as info:
            sender.send(email)
        assert info.value.code == 550
        assert sender.connected  # the same connection carries on with the next message
        with pytest.raises(ValueError, match="exactly one recipient"):
            sender.send(email, to_addrs=["a@example.net", "b@example.net"])
