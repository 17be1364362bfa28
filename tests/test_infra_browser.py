"""Playwright drives Debian's Chromium against companion served over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_login_page_and_sign_in(live_server: Any, chromium_launch_options: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))

            page.goto(f"{live_server}/login")
            expect(page.locator("h1")).to_have_text("Sign in")

            page.get_by_label("Email").fill("teacher@example.org")
            page.get_by_label("Password").fill(live_server.passwords["teacher@example.org"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("h1")).to_have_text("Hello, Tara Teacher")
            # The strict CSP would log a refusal for any inline script or style.
            assert [m for m in console if "Content Security Policy" in m] == []
        finally:
            browser.close()
