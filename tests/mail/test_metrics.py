"""Issue 14, item 5: mail sent and failed are counted, and the outbox queue empties, as a scrape
of `/metrics` shows after the worker's run against a real SMTP server on loopback."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from companion.mail import jobs

from ..metrics_helpers import scrape
from .conftest import use_smtp
from .smtp_server import free_port
from .test_smtp import later, queue


def test_sent_and_failed_mail_is_counted(
    app: Flask, db_session: Session, org: Any, smtp_server: Any
) -> None:
    port = free_port()
    use_smtp(app, smtp_server(port=port, start=False))
    for name in ("ann", "bob", "cat"):
        queue(db_session, org, f"{name}@example.net")
    before = scrape(app)
    assert before.value("companion_queue_depth", queue="outbox") == 3

    assert jobs.deliver_pending(app) == 0  # the server is down: one attempt, the batch stops
    down = scrape(app)
    assert down.value("companion_mail_failed_total", outcome="unavailable") == (
        before.value("companion_mail_failed_total", outcome="unavailable") + 1
    )
    assert down.value("companion_mail_sent_total") == before.value("companion_mail_sent_total")
    assert down.value("companion_queue_depth", queue="outbox") == 2  # one waits for its retry

    smtp_server(port=port)
    assert jobs.deliver_pending(app, clock=later(2)) == 3
    after = scrape(app)
    assert after.value("companion_mail_sent_total") == before.value("companion_mail_sent_total") + 3
    assert after.value("companion_queue_depth", queue="outbox") == 0
    assert after.value("companion_queue_oldest_pending_seconds", queue="outbox") == 0
