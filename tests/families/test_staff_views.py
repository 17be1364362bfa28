"""Staff pages: teachers see only their own courses' families; lead and admin see all; enrol,
manage links, withdraw, the admit list, the admin's agreement page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.courses.timetable import class_sessions
from companion.families import access, audio_only
from companion.families.models import AgreementVersion, Family

from .. import factories
from ..factories import NOW
from ..staff_helpers import post_form, sign_in, text
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def pages(course: Any, family: Family) -> list[str]:
    first = class_sessions(course)[0]
    return [
        f"/courses/{course.id}/families",
        f"/courses/{course.id}/families/{family.id}",
        f"/courses/{course.id}/classes/{first.id}/admit",
        f"/courses/{course.id}/families/import/template.csv",
    ]


def test_teachers_see_only_their_own_courses_families(
    app: Flask, db_session: Session, org: Any, course: Any, family: Family, lead: Any, admin: Any
) -> None:
    other = factories.user(db_session, org, role="teacher")
    browser = app.test_client()
    sign_in(browser, other.email)
    for path in pages(course, family):
        assert browser.get(path).status_code == 404, path
    assert "Amira" not in text(browser.get("/families/"))
    for person in (course.teacher, lead, admin):
        browser = app.test_client()
        sign_in(browser, person.email)
        for path in pages(course, family):
            assert browser.get(path).status_code == 200, (person.role, path)
        assert course.title in text(browser.get("/families/"))


def test_another_organisations_staff_see_nothing(
    app: Flask, db_session: Session, course: Any, family: Family
) -> None:
    elsewhere = factories.organisation(db_session)
    outsider = factories.user(db_session, elsewhere, role="admin")
    browser = app.test_client()
    sign_in(browser, outsider.email)
    for path in pages(course, family):
        assert browser.get(path).status_code == 404, path


def test_a_family_of_another_course_is_not_found_under_this_one(
    client: FlaskClient, db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    other = factories.make_course(db_session, zoom, teacher, title="Drama")
    sign_in(client, teacher.email)
    assert client.get(f"/courses/{other.id}/families/{family.id}").status_code == 404


def test_enrolling_with_the_form(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any
) -> None:
    sign_in(client, teacher.email)
    path = f"/courses/{course.id}/families/new"
    page = text(client.get(path))
    assert "First letter of the child&#39;s surname" in page
    bad = post_form(
        client,
        path,
        {
            "child_first_name": "Amira",
            "child_last_name": "Khan",
            "contact1_name": "Rana",
            "contact1_email": "rana@",
        },
        form_page=path,
    )
    assert bad.status_code == 422
    assert "“rana@” is not a valid email address." in text(bad)
    ok = post_form(
        client,
        path,
        {
            "child_first_name": "Amira",
            "child_last_name": "Khan",
            "contact1_name": "Rana",
            "contact1_email": "Rana@Example.net",
            "contact2_name": "Omar",
            "contact2_email": "omar@example.net",
        },
        form_page=path,
    )
    assert ok.status_code == 302
    listing = text(client.get(ok.headers["Location"]))
    assert "Amira K. is enrolled. companion is registering them in Zoom now" in listing
    # The answer went out first; Zoom was asked right after it, so this page shows the result.
    assert "Registered in Zoom" in listing
    assert len(factories.links_to(db_session, "rana@example.net")) == 1
    assert len(factories.links_to(db_session, "omar@example.net")) == 1
    assert "rana@example.net" in listing and "omar@example.net" in listing
    (family,) = access.families_of(db_session, course.id)
    assert [c.email for c in family.contacts] == ["rana@example.net", "omar@example.net"]
    again = post_form(
        client,
        path,
        {
            "child_first_name": "Amira",
            "child_last_name": "K",
            "contact1_name": "Rana",
            "contact1_email": "rana@example.net",
        },
        form_page=path,
    )
    assert again.status_code == 422
    assert "already enrolled" in text(again)


def test_the_lead_views_but_does_not_enrol_or_withdraw(
    client: FlaskClient, lead: Any, course: Any, family: Family
) -> None:
    sign_in(client, lead.email)
    assert client.get(f"/courses/{course.id}/families/new").status_code == 403
    assert client.get(f"/courses/{course.id}/families/{family.id}/withdraw").status_code == 403


def test_link_buttons_and_withdrawal(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    family: Family,
) -> None:
    sign_in(client, teacher.email)
    detail = f"/courses/{course.id}/families/{family.id}"
    contact = family.contacts[0]
    page = text(client.get(detail))
    assert "Sent" in page and "Not accepted yet" in page
    response = post_form(client, f"{detail}/contacts/{contact.id}/resend", form_page=detail)
    assert response.status_code == 302
    assert "A new link was sent; the old one no longer works." in text(client.get(detail))
    assert len(factories.links_to(db_session, "rana@example.net")) == 2

    post_form(client, f"{detail}/contacts/{contact.id}/revoke", form_page=detail)
    page = text(client.get(detail))
    assert "The link no longer works" in page and "Revoked" in page
    post_form(client, f"{detail}/contacts/{contact.id}/revoke", form_page=detail)
    assert "no working link to revoke" in text(client.get(detail))

    confirm = text(client.get(f"{detail}/withdraw"))
    assert "Withdraw Amira K. from" in confirm
    post_form(client, f"{detail}/withdraw", form_page=f"{detail}/withdraw")
    page = text(client.get(detail))
    assert "Amira K. is withdrawn, and their family page no longer shows a join link." in page
    assert "Cancelled in Zoom" in page
    assert sandbox.approved(course.zoom_meeting_id) == []


def test_another_teacher_cannot_press_the_buttons(
    app: Flask, db_session: Session, org: Any, course: Any, family: Family
) -> None:
    other = factories.user(db_session, org, role="teacher")
    browser = app.test_client()
    sign_in(browser, other.email)
    contact = family.contacts[0]
    base = f"/courses/{course.id}/families/{family.id}"
    for path in (f"{base}/contacts/{contact.id}/resend", f"{base}/withdraw", f"{base}/retry"):
        assert post_form(browser, path).status_code == 404, path
    assert len(factories.links_to(db_session, "rana@example.net")) == 1
    assert family.status == "enrolled"


def test_the_admit_list_shows_the_flag(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any, family: Family
) -> None:
    first = class_sessions(course)[0]
    parent = factories.principal(db_session, family.contacts[0])
    audio_only.request_audio_only(db_session, parent, class_id=first.id, action="request", now=NOW)
    sign_in(client, teacher.email)
    page = text(client.get(f"/courses/{course.id}/classes/{first.id}/admit"))
    row = re.search(r'<tr class="admit-row audio-only-row".*?</tr>', page, re.S).group(0)
    assert "Amira K." in row and "Audio only: camera off" in row
    assert "asked for audio only" in page
    overview = text(client.get(f"/courses/{course.id}/families"))
    assert "1 audio only" in overview


def test_the_admin_edits_the_agreement(
    db_session: Session, client: FlaskClient, admin: Any, teacher: Any, family: Family
) -> None:
    sign_in(client, admin.email)
    page = text(client.get("/admin/agreement/"))
    assert "An adult is present in the room throughout" in page
    assert "Current version: <strong>1</strong>" in page
    same = post_form(
        client,
        "/admin/agreement/",
        {"body": db_session.scalars(select(AgreementVersion)).one().body},
        form_page="/admin/agreement/",
    )
    assert same.status_code == 422
    assert "nothing was saved" in text(same)
    done = post_form(
        client, "/admin/agreement/", {"body": "Version two text."}, form_page="/admin/agreement/"
    )
    assert done.status_code == 302
    assert "Version 2 is published" in text(client.get("/admin/agreement/"))
    empty = post_form(client, "/admin/agreement/", {"body": "  "}, form_page="/admin/agreement/")
    assert empty.status_code == 422

    teacher_browser = client.application.test_client()
    sign_in(teacher_browser, teacher.email)
    assert teacher_browser.get("/admin/agreement/").status_code == 403
