"""The admin finds a message that may have been sent in the outbox, through the menu, and sends
it again in Chromium; the page says so and the message is queued."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.models import User
from companion.db import make_engine
from companion.mail.models import MessageStatus, OutboxMessage

pytestmark = pytest.mark.browser
REAL_CLOCK = True


def test_the_admin_sends_an_uncertain_message_again(
    live_server: Any, chromium_launch_options: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    engine = make_engine(live_server.database_url)
    subject = f"Your family link ({secrets.token_hex(3)})"
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session, session.begin():
        admin = session.scalars(select(User).where(User.email == "admin@example.org")).one()
        msg = OutboxMessage(
            organisation_id=admin.organisation_id,
            kind="family.link",
            to_address="rana@example.net",
            to_name="Rana Khan",
            subject=subject,
            body_text="Dear Rana,\n",
            status=MessageStatus.UNCERTAIN,
            attempts=1,
            sending_at=now - dt.timedelta(minutes=5),
            last_error="the worker stopped while the mail server had the message",
            created_at=now - dt.timedelta(minutes=6),
        )
        session.add(msg)
        session.flush()
        message_id = msg.id
    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_page()
            page.goto(f"{live_server}/login")
            page.get_by_label("Email").fill("admin@example.org")
            page.get_by_label("Password").fill(live_server.passwords["admin@example.org"])
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("Code from your app, or a recovery code").fill(
                live_server.totp_code("admin@example.org")
            )
            page.get_by_role("button", name="Continue").click()
            page.locator("nav").get_by_role("link", name="Outbox").click()
            page.get_by_role("link", name=subject).click()
            expect(page.locator("body")).to_contain_text("may have been sent")
            page.get_by_role("button", name="Send it again").click()
            expect(page).to_have_url(f"{live_server}/admin/outbox/{message_id}")
            expect(page.locator("body")).to_contain_text("will be sent again within a minute")
            expect(page.get_by_role("button", name="Send it again")).to_have_count(0)
        finally:
            browser.close()
    with Session(engine) as session:
        msg = session.get(OutboxMessage, message_id)
        assert msg is not None and msg.status == MessageStatus.PENDING
    engine.dispose()
