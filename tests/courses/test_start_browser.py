"""The teacher presses "Start class" in Chromium and the browser ends up on Zoom's start page
(the sandbox's): the course page's form-action policy allows Zoom, so the redirect after the
submit is followed (Chromium applies form-action to it)."""

from __future__ import annotations

from typing import Any

import pytest

from ..families.test_browser import enrolled, sandbox  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
REAL_CLOCK = True


def test_start_class_takes_the_teacher_to_zoom(
    live_server: Any,
    chromium_launch_options: dict[str, Any],
    sandbox: Any,  # noqa: F811
    enrolled: dict[str, Any],  # noqa: F811
) -> None:
    from playwright.sync_api import expect, sync_playwright

    live_server.app.config["SANDBOX_URL"] = sandbox.server.url  # where this sandbox answers
    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_context().new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{live_server}/login")
            page.get_by_label("Email").fill("teacher@example.org")
            page.get_by_label("Password").fill(live_server.passwords["teacher@example.org"])
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{live_server}/courses/{enrolled['course_id']}")
            page.get_by_role("button", name="Start class").click()
            page.wait_for_url(f"{sandbox.server.url}/s/**")
            expect(page.get_by_text("Zoom would now start")).to_contain_text(enrolled["title"])
            assert [m for m in console if "Content Security Policy" in m] == []
        finally:
            browser.close()
