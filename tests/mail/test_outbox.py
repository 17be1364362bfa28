"""Held mode (no SMTP server): messages stay in the database outbox and the admin reads them."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from companion import mail
from companion.mail import jobs
from companion.mail.models import OutboxMessage

from .. import factories


def send(session: Session, org: Any, **overrides: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "to_address": "pat@example.net",
        "to_name": "Pat Parent",
        "subject": "Your link for Violin for beginners",
        "body": "Hello Pat,\n\nOpen https://companion.example/f/xyz to see the classes.\n",
        "kind": "family_link",
        "organisation_id": org.id,
    }
    values.update(overrides)
    return mail.send(session, **values)


def test_without_smtp_messages_are_held_and_the_worker_leaves_them(
    app: Flask, db_session: Session, org: Any
) -> None:
    assert not app.config["SMTP_HOST"]
    msg = send(db_session, org)
    assert msg.status == "held"
    assert msg.next_attempt_at is None

    assert jobs.deliver_pending(app) == 0

    db_session.refresh(msg)
    assert (msg.status, msg.attempts, msg.sent_at) == ("held", 0, None)


def test_the_admin_reads_held_messages_in_the_outbox(
    app: Flask, db_session: Session, org: Any, admin: Any, browser: Any
) -> None:
    msg = send(db_session, org)
    other_org = factories.organisation(db_session)
    hidden = send(
        db_session,
        other_org,
        to_address="someone@elsewhere.example",
        subject="Another school's message",
    )
    browser.login(admin.email)

    page = browser.client.get("/admin/outbox/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "No SMTP server is configured" in html
    assert "Your link for Violin for beginners" in html
    assert "pat@example.net" in html
    assert "held" in html
    assert "Another school" not in html and "someone@elsewhere.example" not in html

    page = browser.client.get(f"/admin/outbox/{msg.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Open https://companion.example/f/xyz to see the classes." in html
    assert "Pat Parent" in html

    assert browser.client.get(f"/admin/outbox/{hidden.id}").status_code == 404


def test_a_teacher_cannot_read_the_outbox(
    app: Flask, db_session: Session, org: Any, teacher: Any, browser: Any
) -> None:
    msg = send(db_session, org)
    browser.login(teacher.email)

    assert browser.client.get("/admin/outbox/").status_code == 403
    page = browser.client.get(f"/admin/outbox/{msg.id}")
    assert page.status_code == 403
    assert "companion.example/f/xyz" not in page.get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(app: Flask, db_session: Session, org: Any) -> None:
    msg = send(db_session, org)
    client = app.test_client()
    for path in ("/admin/outbox/", f"/admin/outbox/{msg.id}"):
        response = client.get(path)
        assert response.status_code in (302, 401)
        assert "Open https://companion.example" not in response.get_data(as_text=True)


def test_sent_message_keeps_no_working_personal_link(
    app: Flask, db_session: Session, smtp_server: Any
) -> None:
    from companion.db import utcnow
    from companion.mail import services as mail_services

    from .conftest import use_smtp

    server = smtp_server()
    use_smtp(app, server)
    token = "A" * 43
    msg = mail_services.queue(
        db_session,
        to_address="parent@example.org",
        subject="Your link",
        body=f"Open https://school.example/f/{token} to see the class.\n",
        kind="family.link",
        now=utcnow(),
        smtp_enabled=True,
    )
    assert jobs.deliver_pending(app) == 1
    [got] = server.received
    assert token in got.message.get_content()
    db_session.refresh(msg)
    assert msg.status == "sent"
    assert token not in msg.body_text
    assert "/f/[link removed after sending]" in msg.body_text
