"""The class record page and who may see what; the lead's overview; the admin's settings."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.evidence.models import EvidenceSettings
from companion.recordings.models import Concern, Hold

from .. import factories
from ..factories import Meeting, class_of, feed
from ..staff_helpers import sign_in, text

M = dt.timedelta(minutes=1)


def _ran(
    session: Session, course: Any, fams: list[Any], *, guest: str | None = "Tablet"
) -> Meeting:
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    docs = [z.started(), z.participant("meeting.participant_joined", host, z.start)]
    for i, fam in enumerate(fams):
        docs += z.attend(
            Meeting.child(fam, name=f"{fam.child_first_name} (iPad)"),
            cls.starts_at + i * dt.timedelta(seconds=5),
            cls.ends_at - M,
        )
    if guest:
        docs += z.attend(Meeting.child(name=guest), cls.starts_at + 2 * M, cls.starts_at + 9 * M)
    docs += [z.participant("meeting.participant_left", host, cls.ends_at), z.ended(cls.ends_at)]
    feed(session, docs)
    return z


def _record_path(course: Any, index: int = 0) -> str:
    return f"/courses/{course.id}/classes/{class_of(course, index).id}/record"


def test_the_teacher_sees_attendance_of_their_class_but_not_the_recording(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    amira = factories.family(db_session, course, first="Amira", last="K")
    ben = factories.family(db_session, course, first="Ben", last="L")
    _ran(db_session, course, [amira, ben])
    rec = factories.recording(db_session, class_of(course))
    sign_in(client, teacher.email)
    response = client.get(_record_path(course))
    page = text(response)
    assert response.status_code == 200
    # Children by their family's name (not the typed one), the guest flagged, times local.
    assert "Amira K." in page and "in Zoom: Amira (iPad)" in page and "Ben L." in page
    assert "Tablet" in page and "Not a family" in page
    assert "Teacher (host)" in page
    joined = class_of(course).starts_at.astimezone(ZoneInfo("Europe/London"))
    assert "Europe/London" in page and f"<td>{joined:%H:%M:%S}</td>" in page
    assert "seen by the safeguarding lead only" in page
    assert rec.files[0].sha256 not in page and str(rec.id) not in page
    assert "Export the evidence pack" not in page


def test_a_teacher_of_another_course_gets_404_and_a_parent_nothing(
    db_session: Session, client: FlaskClient, teacher: Any, org: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    fam = factories.family(db_session, course)
    other = factories.user(db_session, org, role="teacher", email="other@example.org")
    sign_in(client, other.email)
    assert client.get(_record_path(course)).status_code == 404
    client.post("/logout")

    parent = factories.family_cookie(db_session, fam.contacts[0])
    fresh = client.application.test_client()
    fresh.set_cookie("companion_family", parent, path="/f/")
    response = fresh.get(_record_path(course))
    assert response.status_code in (302, 401, 403)
    assert "Amira" not in text(response)


def test_the_lead_sees_recordings_with_sizes_and_hashes_concerns_and_holds(
    db_session: Session, browser: Any, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    _ran(db_session, course, [factories.family(db_session, course)], guest=None)
    rec = factories.recording(db_session, cls, on_hold=True)
    concern = Concern(
        organisation_id=course.organisation_id,
        course_id=course.id,
        class_session_id=cls.id,
        raised_by_id=teacher.id,
        what_happened="A stranger's voice in the background",
    )
    db_session.add(concern)
    db_session.flush()
    db_session.add(
        Hold(
            organisation_id=course.organisation_id,
            class_session_id=cls.id,
            concern_id=concern.id,
            reason="concern raised",
        )
    )
    db_session.flush()
    browser.login(lead.email)
    page = text(browser.client.get(_record_path(course)))
    for f in rec.files:
        assert f.sha256 in page and str(f.id) in page and f"({f.size} bytes)" in page
    assert "A stranger&#39;s voice" in page and "in force" in page and "on hold" in page
    assert "One child alone with one adult" in page  # a single child all class long
    assert "Export the evidence pack" in page


def test_the_admin_sees_the_record_without_recordings_or_concerns(
    db_session: Session, browser: Any, teacher: Any, admin: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    _ran(db_session, course, [factories.family(db_session, course)])
    rec = factories.recording(db_session, class_of(course))
    browser.login(admin.email)
    response = browser.client.get(_record_path(course))
    page = text(response)
    assert response.status_code == 200 and "Amira" in page
    assert rec.files[0].sha256 not in page
    assert "Concerns are for the teacher who raised them" in page


def test_a_class_that_never_started_says_so(
    db_session: Session, browser: Any, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    browser.login(lead.email)
    page = text(browser.client.get(_record_path(course)))
    assert "never started" in page
    overview = text(browser.client.get("/evidence/"))
    assert f"/classes/{class_of(course).id}/record" in overview
    # The class next week has not happened yet: not "never started".
    assert "never started" not in text(browser.client.get(_record_path(course, 1)))


def test_the_lead_sees_meetings_whose_class_is_unknown(
    db_session: Session, browser: Any, lead: Any
) -> None:
    start = factories.class_start(3)
    z = Meeting(91234567890, start)
    feed(db_session, [z.started(), *z.attend(Meeting.child(name="Mystery"), start, start + M)])
    browser.login(lead.email)
    overview = text(browser.client.get("/evidence/"))
    assert "Zoom meeting 91234567890" in overview
    from companion.evidence.models import ZoomMeeting

    meeting = db_session.scalars(select(ZoomMeeting)).one()
    detail = text(browser.client.get(f"/evidence/meetings/{meeting.id}"))
    assert "Mystery" in detail and "no course of companion" in detail


def test_the_teacher_is_warned_on_the_admit_list_too(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    _ran(db_session, course, [factories.family(db_session, course)], guest=None)
    sign_in(client, teacher.email)
    cls = class_of(course)
    page = text(client.get(f"/courses/{course.id}/classes/{cls.id}/admit"))
    assert "Warning: One child alone with one adult" in page
    assert f"/classes/{cls.id}/record" in page


def test_the_admin_switches_the_rules(
    db_session: Session, browser: Any, admin: Any, teacher: Any
) -> None:
    browser.login(admin.email)
    response = browser.post(
        "/evidence/settings",
        {"alone_grace_minutes": "5", "confirm_from_minutes": "30", "list_unconfirmed": "yes"},
        form_page="/evidence/settings",
    )
    assert response.status_code == 303
    row = db_session.get(EvidenceSettings, admin.organisation_id)
    assert row is not None and not row.one_child_rule and row.list_unconfirmed
    assert row.alone_grace_minutes == 5 and row.confirm_from_minutes == 30
    bad = browser.post(
        "/evidence/settings",
        {"alone_grace_minutes": "lots", "confirm_from_minutes": "30"},
        form_page="/evidence/settings",
    )
    assert bad.status_code == 400 and "whole number" in text(bad)
    db_session.refresh(row)
    assert row.alone_grace_minutes == 5


def test_only_the_lead_has_the_overview_and_only_the_admin_the_settings(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    sign_in(client, teacher.email)
    assert client.get("/evidence/").status_code == 403
    assert client.get("/evidence/settings").status_code == 403
    assert client.get("/evidence/verify").status_code == 403
    assert client.get("/evidence/families/").status_code == 403
