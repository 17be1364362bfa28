"""The teacher presses "Re-check now" in Chromium while Zoom is slow: the page answers at once
with what companion is doing, then reloads itself with the result once the Zoom work is done
(static/course_zoom.js polls GET /courses/<id>/zoom-state), without the teacher pressing
anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from companion.courses.models import ZOOM_WORK_LABELS, ZoomWork

from .. import factories
from ..slow_zoom import Live, serve

pytestmark = pytest.mark.browser
REAL_CLOCK = True


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serve(tmp_path) as running:
        yield running


def test_the_course_page_follows_its_zoom_work_by_itself(
    live: Live, chromium_launch_options: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    busy = ZOOM_WORK_LABELS[ZoomWork.SYNC]
    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_context().new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{live.url}/login")
            page.get_by_label("Email").fill(live.teacher_email)
            page.get_by_label("Password").fill(factories.PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{live.url}/courses/{live.course_id}")
            expect(page.locator("#zoom-state")).not_to_contain_text(busy)

            live.hold_next("/v2/meetings/*", "GET")
            page.get_by_role("button", name="Re-check now").click()
            # Answered at once, while Zoom still holds the call: the page says what is going on.
            expect(page.locator("#zoom-state")).to_contain_text(busy, timeout=2000)
            live.wait_until_held()
            # Then, with nobody pressing anything, the page shows the result.
            expect(page.locator("#zoom-state")).not_to_contain_text(busy, timeout=20000)
            expect(page.locator("body")).to_contain_text("Safe")
            assert page.url == f"{live.url}/courses/{live.course_id}"
            assert [m for m in console if "Content Security Policy" in m] == []
        finally:
            browser.close()
