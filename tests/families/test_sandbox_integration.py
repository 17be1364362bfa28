"""Families with the real Zoom client against the Zoom sandbox, on the real clock: registrants,
their personal links, faults and lost answers, withdrawal. In process, except where a client
gives up on a slow answer (there HTTP and its timeout are the point)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion.courses import schedule as sched
from companion.courses.provisioning import create_course
from companion.families import access, enrolment, family_page, jobs, people, registrants

from ..factories import settle, zoom_now
from ..polling import poll
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")
REAL_CLOCK = True


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def course(db_session: Session, sandbox: SandboxZoom, teacher: Any) -> Any:
    return in_zoom(db_session, sandbox, teacher)


def in_zoom(db_session: Session, sandbox: SandboxZoom, teacher: Any) -> Any:
    """A course of four weekly classes from next week, in the sandbox."""
    start = now().date() + dt.timedelta(days=7)
    outcome = create_course(
        db_session,
        actor=teacher,
        title="Cello ensemble",
        series=sched.Series(
            first_date=start,
            weekdays=(sched.WEEKDAYS[start.weekday()],),
            start_time=dt.time(17, 0),
            duration_minutes=45,
            timezone="Europe/London",
            class_count=4,
            end_date=None,
        ),
        now=now(),
    )
    settle(sandbox.client, outcome.course, now=now())  # the Zoom work that follows the commit
    assert outcome.course.safety_state == "safe", outcome.course.problems
    return outcome.course


def enrol(db_session: Session, sandbox: SandboxZoom, teacher: Any, course: Any, **kw: Any) -> Any:
    family = enrolment.enrol(
        db_session,
        actor=teacher,
        course_id=course.id,
        child_first_name=kw.get("first", "Amira"),
        child_last_name="Khan",
        contacts=[people.ContactInput("Rana Khan", "rana@example.net")],
        now=now(),
    )
    return zoom_now(db_session, sandbox.client, family, teacher)


def sandbox_registrants(sandbox: SandboxZoom, course: Any, status: str = "approved") -> list[Any]:
    return sandbox.state.registrants_of(course.zoom_meeting_id, status)


def test_each_family_is_a_registrant_with_a_working_link(
    db_session: Session, sandbox: SandboxZoom, teacher: Any, course: Any, app: Flask
) -> None:
    family = enrol(db_session, sandbox, teacher, course)
    sibling = enrol(db_session, sandbox, teacher, course, first="Yusuf")
    regs = sandbox_registrants(sandbox, course)
    assert [(r["first_name"], r["last_name"], r["email"]) for r in regs] == [
        ("Amira", "K", registrants.registrant_email(family)),
        ("Yusuf", "K", registrants.registrant_email(sibling)),
    ]
    assert family.zoom_registrant_id == regs[0]["id"]
    page = family_page.family_page(db_session, _principal(db_session, family), now=now())
    assert page.join_problem == "agreement"
    from companion import sealing
    from companion.sealing import Purpose

    url = sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted)
    assert url.startswith(f"{sandbox.url}/w/{course.zoom_meeting_id}?tk=")
    assert opens(sandbox, url) == 200

    registrants.withdraw(
        db_session, actor=teacher, course_id=course.id, family_id=family.id, now=now()
    )
    zoom_now(db_session, sandbox.client, family, teacher)
    assert family.zoom_state == "cancelled"
    assert [r["id"] for r in sandbox_registrants(sandbox, course, "denied")] == [regs[0]["id"]]
    assert opens(sandbox, url) == 403
    assert access.family_for_registrant(db_session, regs[1]["id"]) is sibling


def opens(sandbox: SandboxZoom, url: str) -> int:
    """What a parent following the link gets from Zoom (the sandbox's join page)."""
    parts = urlsplit(url)
    return sandbox.app.test_client().get(parts.path, query_string=parts.query).status_code


def _principal(db_session: Session, family: Any) -> Any:
    from ..factories import principal

    return principal(db_session, family.contacts[0], now())


@pytest.mark.parametrize("status", [500, 503, 429])
def test_zoom_failing_keeps_the_family_pending_then_the_job_registers_it_once(
    db_session: Session, sandbox: SandboxZoom, teacher: Any, course: Any, app: Flask, status: int
) -> None:
    sandbox.state.add_fault(
        {"path": "/v2/meetings/*/registrants", "method": "POST", "status": status}
    )
    family = enrol(db_session, sandbox, teacher, course)
    assert family.zoom_state == "pending"
    assert "try again automatically" in family.zoom_error
    assert sandbox_registrants(sandbox, course) == []
    assert jobs.sync_zoom(app, [family.id], now=family.zoom_next_attempt_at) == {"registered": 1}
    assert family.zoom_state == "registered"
    assert len(sandbox_registrants(sandbox, course)) == 1


def test_a_slow_zoom_that_made_the_registrant_is_not_asked_twice(
    db_session: Session, http_sandbox: SandboxZoom, teacher: Any, app: Flask
) -> None:
    sandbox = http_sandbox
    course = in_zoom(db_session, sandbox, teacher)
    # Zoom answers after the client gave up: the registrant exists, companion does not know it.
    sandbox.state.add_fault({"path": "/v2/meetings/*/registrants", "method": "POST", "delay": 3})
    family = enrol(db_session, sandbox, teacher, course)
    assert family.zoom_state == "pending"
    poll(lambda: sandbox_registrants(sandbox, course), "the slow registration to finish in Zoom")
    assert len(sandbox_registrants(sandbox, course)) == 1
    sandbox.client.calls.clear()
    assert jobs.sync_zoom(app, [family.id], now=family.zoom_next_attempt_at) == {"registered": 1}
    assert sandbox.client.calls["add_registrant"] == 0
    assert family.zoom_registrant_id == sandbox_registrants(sandbox, course)[0]["id"]
