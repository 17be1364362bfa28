"""A parent on a phone walks through the family link, the agreement and an audio-only request in
Debian's Chromium; then the teacher sees the flag on the class's admit list.

The live server talks to the Zoom sandbox (served on its own loopback port), so the family is a
real registrant with its own join link.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import work
from companion.accounts.models import User
from companion.courses import schedule as sched
from companion.courses import verification, zoomwork
from companion.courses.models import Course
from companion.courses.passcodes import passcode_of
from companion.courses.provisioning import create_course
from companion.courses.timetable import class_sessions
from companion.db import make_engine
from companion.families import enrolment, jobs, people
from companion.families.models import Family
from companion.mail.models import OutboxMessage
from companion.zoom import EXTENSION_KEY

from ..factories import LINK_RE
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.browser
REAL_CLOCK = True

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def sandbox(tmp_path: Any, live_server: Any) -> Iterator[SandboxZoom]:
    zoom = SandboxZoom(str(tmp_path / "sandbox.sqlite3"), http=True)
    saved = live_server.app.extensions.get(EXTENSION_KEY)
    live_server.app.extensions[EXTENSION_KEY] = zoom.client
    yield zoom
    if saved is None:
        live_server.app.extensions.pop(EXTENSION_KEY, None)
    else:
        live_server.app.extensions[EXTENSION_KEY] = saved
    zoom.close()


@pytest.fixture
def enrolled(live_server: Any, sandbox: SandboxZoom) -> Iterator[dict[str, Any]]:
    """A course in the sandbox with one family, committed in the live server's database."""
    engine = make_engine(live_server.database_url)
    now = dt.datetime.now(dt.UTC)
    start = now.date() + dt.timedelta(days=2)
    parent = f"parent-{secrets.token_hex(4)}@example.net"
    with live_server.app.app_context(), Session(engine) as session, session.begin():
        teacher = session.scalars(select(User).where(User.email == "teacher@example.org")).one()
        course = create_course(
            session,
            actor=teacher,
            title=f"Guitar club {secrets.token_hex(2)}",
            series=sched.Series(
                first_date=start,
                weekdays=(sched.WEEKDAYS[start.weekday()],),
                start_time=dt.time(17, 0),
                duration_minutes=45,
                timezone="Europe/London",
                class_count=4,
                end_date=None,
            ),
            now=now,
        ).course
        course_id = course.id
    # The course is committed; its Zoom work runs after, as after the teacher's request.
    with live_server.app.app_context():
        step = zoomwork.ZoomStep(sandbox.client)
        work.run_one(live_server.app, zoomwork.QUEUE, step, course_id)
    with live_server.app.app_context(), Session(engine) as session, session.begin():
        teacher = session.scalars(select(User).where(User.email == "teacher@example.org")).one()
        course = session.get(Course, course_id)
        assert verification.course_is_safe(course), course.problems
        family_id = enrolment.enrol(
            session,
            actor=teacher,
            course_id=course.id,
            child_first_name="Amira",
            child_last_name="Khan",
            contacts=[people.ContactInput("Rana Khan", parent)],
            now=now,
        ).id
    # Committed; now the registrant work, as the request would run it after its commit.
    assert jobs.sync_zoom(live_server.app, [family_id]) == {"registered": 1}
    with live_server.app.app_context(), Session(engine) as session, session.begin():
        family = session.get(Family, family_id)
        assert family is not None and family.zoom_state == "registered"
        course = family.course
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.to_address == parent)
        ).one()
        first = class_sessions(course)[0]
        info = {
            "course_id": course.id,
            "title": course.title,
            "class_id": first.id,
            "passcode": passcode_of(course),
            "registrant": family.zoom_registrant_id,
            "message": message.body_text,
        }
    yield info
    engine.dispose()


def test_a_parent_on_a_phone_and_the_teacher(
    live_server: Any,
    chromium_launch_options: dict[str, Any],
    sandbox: SandboxZoom,
    enrolled: dict[str, Any],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    (path,) = LINK_RE.findall(enrolled["message"])
    join_url = [
        r["join_url"]
        for r in sandbox.client.iter_registrants(sandbox.meetings()[0]["id"])
        if r["id"] == enrolled["registrant"]
    ][0]

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = phone.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))

            # The link from the email; the browser ends up on /f/ without the token.
            page.goto(f"{live_server}{path}")
            expect(page).to_have_url(f"{live_server}/f/")
            assert path.removeprefix("/f/") not in page.url
            expect(page.locator("h1")).to_have_text(enrolled["title"])
            expect(page.get_by_text("Family page for")).to_contain_text("Amira K.")
            # Phone first: nothing wider than the screen.
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], width

            # No join link or passcode before the agreement.
            expect(page.get_by_role("link", name=re.compile("Join with"))).to_have_count(0)
            assert enrolled["passcode"] not in page.content()
            page.get_by_label("I have read this agreement and agree to it.").check()
            page.get_by_role("button", name="Accept the agreement").click()
            expect(page).to_have_url(f"{live_server}/f/")
            join = page.get_by_role("link", name="Join with Amira's link")
            expect(join).to_have_attribute("href", join_url)
            expect(page.locator("code.passcode")).to_have_text(enrolled["passcode"])

            # Audio only for the next class.
            first = page.locator(f"#class-{enrolled['class_id']}")
            first.get_by_role("button", name="Ask for audio only").click()
            expect(page.locator("p.flash")).to_contain_text("by audio only")
            expect(first.locator(".flag.audio-only")).to_have_text("Audio only")
            # The second click lands on the same state: the button now offers the way back.
            expect(first.get_by_role("button", name="Join with video after all")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert [m for m in console if "Content Security Policy" in m] == []
            phone.close()

            # The teacher signs in and sees the flag on the admit list.
            desk = browser.new_context()
            staff = desk.new_page()
            staff.goto(f"{live_server}/login")
            staff.get_by_label("Email").fill("teacher@example.org")
            staff.get_by_label("Password").fill(live_server.passwords["teacher@example.org"])
            staff.get_by_role("button", name="Sign in").click()
            expect(staff.locator("h1")).to_contain_text("Hello")
            staff.goto(
                f"{live_server}/courses/{enrolled['course_id']}/classes/"
                f"{enrolled['class_id']}/admit"
            )
            row = staff.locator("tr.admit-row", has_text="Amira K.")
            expect(row).to_contain_text("Audio only: camera off")
            expect(row).to_contain_text("✓")  # the agreement was accepted
            desk.close()
        finally:
            browser.close()
