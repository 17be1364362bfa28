"""The admin's security review page: each thing it checks, recording a review, the reminder."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.access import LEAD, TEACHER
from companion.accounts.models import User
from companion.audit.services import record as audit
from companion.courses.models import Course
from companion.db import Clock, utcnow
from companion.orgs.models import Organisation
from companion.security_review import services
from companion.security_review.models import SecurityReview

from . import factories
from .staff_helpers import audit_events, post_form, sign_in, text
from .twofactor_helpers import NO_TWO_FACTOR

PAGE = "/admin/security"


def section(html: str, anchor: str) -> str:
    """The text of one <section id=...> of the page."""
    match = re.search(rf'<section class="card" id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def make_course(session: Session, org: Organisation, teacher: User, **overrides: Any) -> Course:
    values: dict[str, Any] = {
        "organisation_id": org.id,
        "teacher_id": teacher.id,
        "title": "Violin for beginners",
        "timezone": "Europe/London",
        "first_date": dt.date(2026, 1, 5),
        "weekdays": "mon",
        "start_time": dt.time(17, 0),
        "duration_minutes": 45,
        "class_count": 10,
        "zoom_user_id": "me",
        "companion_ref": f"cmp-{uuid.uuid4().hex[:20]}",
        "passcode_encrypted": "not-read-here",
        "passcode_set_at": utcnow(),
    }
    values.update(overrides)
    course = Course(**values)
    session.add(course)
    session.flush()
    return course


@pytest.fixture
def admin_page(app: Flask, browser: Any, admin: User) -> Any:
    browser.login(admin.email)

    def get() -> str:
        response = browser.client.get(PAGE)
        assert response.status_code == 200
        return text(response)

    return get


def test_only_the_admin_can_open_it(app: Flask, db_session: Session, org: Any) -> None:
    for role in (TEACHER, LEAD):
        person = factories.user(db_session, org, role=role)
        client = app.test_client()
        sign_in(client, person.email)
        assert client.get(PAGE).status_code == 403, role
        assert client.post(PAGE, data={"note": "x"}).status_code in (400, 403), role
    assert app.test_client().get(PAGE).headers["Location"].startswith("/login")
    assert db_session.scalars(select(SecurityReview)).all() == []


def test_key_rotation_never_then_its_date(
    admin_page: Any, db_session: Session, admin: User
) -> None:
    assert "Never rotated" in section(admin_page(), "keys")

    audit(db_session, "keys.rotated", at=dt.datetime(2026, 3, 4, 10, 30, tzinfo=dt.UTC), kek="k2")

    keys = section(admin_page(), "keys")
    assert "Never" not in keys
    assert "04 Mar 2026 10:30" in keys


def test_staff_without_two_factor_required_ones_first(
    admin_page: Any, db_session: Session, org: Any, teacher: User, lead: User
) -> None:
    bare_lead = factories.user(db_session, org, role=LEAD, name="Lee Nofactor", **NO_TWO_FACTOR)
    factories.user(db_session, org, role=TEACHER, name="Gone Teacher", active=False)
    factories.user(db_session, factories.organisation(db_session), name="Elsewhere Person")

    part = section(admin_page(), "two-factor")
    listing = part.split("Reset someone")[0]

    assert bare_lead.name in listing and teacher.name in listing
    assert listing.index(bare_lead.name) < listing.index(teacher.name)
    assert "Required for this role" in listing and "Optional" in listing
    assert lead.name not in listing  # enrolled
    assert "Gone Teacher" not in part and "Elsewhere Person" not in part
    # Enrolled colleagues can be reset from here, but not oneself.
    assert f"Reset two-factor of {lead.name}" in part
    assert "Your own" in part


def test_accounts_unused_for_ninety_days(
    admin_page: Any, db_session: Session, org: Any, admin: User
) -> None:
    now = utcnow()
    old = factories.user(
        db_session, org, name="Olga Old", last_login_at=now - dt.timedelta(days=91)
    )
    factories.user(db_session, org, name="Rita Recent", last_login_at=now - dt.timedelta(days=89))
    factories.user(db_session, org, name="Nina Never")
    factories.user(
        db_session,
        org,
        name="Dora Deactivated",
        last_login_at=now - dt.timedelta(days=200),
        active=False,
    )

    part = section(admin_page(), "unused")

    assert old.name in part and "Nina Never" in part
    assert "never (account created" in part
    assert "Rita Recent" not in part and "Dora Deactivated" not in part
    assert admin.name not in part  # just signed in


def test_courses_whose_safety_check_failed(
    admin_page: Any, db_session: Session, org: Any, teacher: User
) -> None:
    problems = [{"setting": "waiting_room", "expected": True, "actual": False}]
    bad = make_course(
        db_session,
        org,
        teacher,
        title="Cello <b>group</b>",
        safety_state="not_safe",
        safety_problems=json.dumps(problems),
    )
    make_course(db_session, org, teacher, title="Safe Piano", safety_state="safe")
    other_org = factories.organisation(db_session)
    make_course(
        db_session,
        other_org,
        factories.user(db_session, other_org),
        title="Elsewhere Drums",
        safety_state="not_safe",
    )

    part = section(admin_page(), "unsafe-courses")

    assert "Cello &lt;b&gt;group&lt;/b&gt;" in part
    assert f'href="/courses/{bad.id}"' in part
    assert "in Zoom (must be on)" in part
    assert "Safe Piano" not in part and "Elsewhere Drums" not in part


def test_no_unsafe_courses_says_so(admin_page: Any) -> None:
    assert "No course has a failed safety check" in section(admin_page(), "unsafe-courses")


def test_recording_a_review(
    browser: Any, admin_page: Any, db_session: Session, admin: User, org: Organisation
) -> None:
    assert "No review has been recorded yet" in section(admin_page(), "last-review")

    response = post_form(
        browser.client, PAGE, {"note": "Checked 2FA, removed two old accounts."}, form_page=PAGE
    )

    assert response.status_code == 302
    db_session.refresh(org)
    assert org.last_security_review_at is not None
    review = db_session.scalars(select(SecurityReview)).one()
    assert review.reviewed_by_id == admin.id and review.note.startswith("Checked 2FA")
    events = audit_events(db_session, "security.reviewed")
    assert [(e.actor, e.subject_id) for e in events] == [(admin.email, str(review.id))]
    html = admin_page()
    assert admin.name in section(html, "last-review")
    assert "Checked 2FA, removed two old accounts." in section(html, "record")
    assert 'id="review-due"' not in html


def test_a_review_needs_a_note_and_changes_nothing_without_one(
    browser: Any, admin: User, db_session: Session, org: Organisation
) -> None:
    browser.login(admin.email)
    for note in ("", "   ", "x" * (services.MAX_NOTE + 1)):
        response = post_form(browser.client, PAGE, {"note": note}, form_page=PAGE)
        assert response.status_code == 422, len(note)
        assert 'class="error"' in text(response)
    db_session.refresh(org)
    assert org.last_security_review_at is None
    assert db_session.scalars(select(SecurityReview)).all() == []
    assert audit_events(db_session, "security.reviewed") == []


def test_reminder_when_the_last_review_is_six_months_old(
    app: Flask, db_session: Session, org: Organisation, admin: User, clock: Clock
) -> None:
    client = app.test_client()
    sign_in(client, admin.email)
    # Never reviewed: due now, on the page and on the admin's home page.
    assert 'id="review-due"' in text(client.get(PAGE))
    assert "A security review is due" in text(client.get("/"))

    services.record_review(db_session, actor=admin, note="first review", now=utcnow())
    assert "A security review is due" not in text(client.get("/"))
    assert 'id="review-due"' not in text(client.get(PAGE))

    # Five months on: not yet.
    clock.advance(days=152)
    client = app.test_client()
    sign_in(client, admin.email)
    assert "A security review is due" not in text(client.get("/"))

    # Past six months: reminded.
    clock.advance(days=32)
    client = app.test_client()
    sign_in(client, admin.email)
    home = text(client.get("/"))
    assert "A security review is due" in home
    assert 'href="/admin/security"' in home
    assert 'id="review-due"' in text(client.get(PAGE))


def test_the_reminder_is_only_for_the_admin(
    app: Flask, db_session: Session, org: Organisation, lead: User, teacher: User
) -> None:
    for person in (lead, teacher):
        client = app.test_client()
        sign_in(client, person.email)
        assert "A security review is due" not in text(client.get("/"))


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [
        (None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), True),
        (dt.datetime(2026, 1, 31, tzinfo=dt.UTC), dt.datetime(2026, 7, 30, tzinfo=dt.UTC), False),
        (
            dt.datetime(2026, 1, 31, tzinfo=dt.UTC),
            dt.datetime(2026, 7, 31, 0, 1, tzinfo=dt.UTC),
            True,
        ),
        (dt.datetime(2026, 8, 31, tzinfo=dt.UTC), dt.datetime(2027, 2, 28, tzinfo=dt.UTC), False),
        (dt.datetime(2026, 8, 31, tzinfo=dt.UTC), dt.datetime(2027, 3, 1, tzinfo=dt.UTC), True),
    ],
)
def test_six_months_by_the_calendar(last: Any, now: dt.datetime, due: bool) -> None:
    org = Organisation(name="x", timezone="UTC", last_security_review_at=last)
    assert services.review_due(org, now) is due


def test_only_an_admin_may_record_a_review_in_the_service(
    db_session: Session, org: Organisation, lead: User
) -> None:
    from companion.errors import Forbidden

    with pytest.raises(Forbidden):
        services.record_review(db_session, actor=lead, note="n", now=utcnow())


def test_keys_rotated_elsewhere_do_not_count(db_session: Session, org: Organisation) -> None:
    other = factories.organisation(db_session)
    audit(db_session, "keys.rotated", organisation_id=other.id)
    assert services.keys_last_rotated(db_session, org.id) is None
    audit(db_session, "keys.rotated")  # the installation's keys: counts for everyone
    assert services.keys_last_rotated(db_session, org.id) is not None
