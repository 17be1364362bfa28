"""The family page over HTTP: the agreement before the link, classes in the course's zone, the
calendar file, the safeguarding lead, audio-only buttons, and nothing of another family."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import icalendar
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.courses.changes import cancel_class, move_class
from companion.courses.passcodes import passcode_of
from companion.courses.timetable import class_sessions
from companion.families import agreement
from companion.families.models import AgreementAcceptance, AudioOnlyEvent, Family

from .. import factories
from ..conftest import csrf_from
from ..factories import NOW
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def sign_in_parent(client: FlaskClient, db_session: Session, email: str) -> str:
    response = client.get(factories.links_to(db_session, email)[-1])
    assert response.status_code == 303
    page = client.get("/f/")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def post(client: FlaskClient, path: str, **data: Any) -> Any:
    data["csrf_token"] = csrf_from(client.get("/f/").get_data(as_text=True))
    return client.post(path, data=data)


def accept(client: FlaskClient) -> str:
    page = client.get("/f/").get_data(as_text=True)
    agreement_id = re.search(r'name="agreement_id" value="(\d+)"', page).group(1)
    response = post(client, "/f/agreement", agreement_id=agreement_id, accept="yes")
    assert response.status_code == 303
    return client.get("/f/").get_data(as_text=True)


def join_url(sandbox: SandboxZoom, family: Family) -> str:
    return sandbox.registrant(family.course.zoom_meeting_id, family.zoom_registrant_id)["join_url"]


def test_the_agreement_comes_before_the_link_and_passcode(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    course: Any,
    family: Family,
) -> None:
    page = sign_in_parent(client, db_session, "rana@example.net")
    url = join_url(sandbox, family)
    passcode = passcode_of(course)
    assert url not in page and passcode not in page
    assert "accept the e-safety agreement" in page
    for words in (
        "An adult is present in the room throughout",
        "not from a bedroom",
        "recorded solely for safeguarding",
        "confidential",
        "Sam Lead",
        "lead@example.org",
    ):
        assert words in page

    # Pressing the button without ticking the box accepts nothing.
    agreement_id = re.search(r'name="agreement_id" value="(\d+)"', page).group(1)
    post(client, "/f/agreement", agreement_id=agreement_id)
    assert "Tick the box" in client.get("/f/").get_data(as_text=True)
    assert db_session.scalars(select(AgreementAcceptance)).all() == []

    page = accept(client)
    assert url in page and passcode in page
    (row,) = db_session.scalars(select(AgreementAcceptance)).all()
    assert row.contact_id == family.contacts[0].id
    assert row.agreement.version == 1
    assert row.accepted_at >= NOW
    assert "You accepted version 1" in page


def test_a_new_version_asks_again(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    admin: Any,
    family: Family,
) -> None:
    sign_in_parent(client, db_session, "rana@example.net")
    page = accept(client)
    url = join_url(sandbox, family)
    assert url in page
    agreement.publish(
        db_session, actor=admin, body="New rules: an adult stays in the room.", now=NOW
    )
    page = client.get("/f/").get_data(as_text=True)
    assert url not in page
    assert "New rules" in page
    page = accept(client)
    assert url in page
    versions = [a.agreement.version for a in db_session.scalars(select(AgreementAcceptance))]
    assert sorted(versions) == [1, 2]


def test_accepting_a_version_that_was_just_replaced_asks_to_read_the_new_one(
    db_session: Session, client: FlaskClient, admin: Any, family: Family
) -> None:
    page = sign_in_parent(client, db_session, "rana@example.net")
    old_id = re.search(r'name="agreement_id" value="(\d+)"', page).group(1)
    agreement.publish(db_session, actor=admin, body="Version two.", now=NOW)
    post(client, "/f/agreement", agreement_id=old_id, accept="yes")
    page = client.get("/f/").get_data(as_text=True)
    assert "updated while you were reading" in page
    assert db_session.scalars(select(AgreementAcceptance)).all() == []


def test_each_parent_accepts_for_themselves(
    db_session: Session,
    client: FlaskClient,
    app: Any,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
) -> None:
    family = factories.enrol(
        db_session,
        zoom,
        teacher,
        course,
        contacts=[("Rana", "rana@example.net"), ("Omar", "omar@example.net")],
    )
    sign_in_parent(client, db_session, "rana@example.net")
    assert join_url(sandbox, family) in accept(client)
    other = app.test_client()
    page = sign_in_parent(other, db_session, "omar@example.net")
    assert join_url(sandbox, family) not in page
    # Neither parent's page shows the other's address.
    assert "rana@example.net" not in page
    assert "omar@example.net" not in client.get("/f/").get_data(as_text=True)


def test_a_form_without_the_family_token_is_refused(
    db_session: Session, client: FlaskClient, family: Family
) -> None:
    sign_in_parent(client, db_session, "rana@example.net")
    response = client.post("/f/audio-only", data={"action": "request"})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    response = client.post("/f/audio-only", data={"action": "request", "csrf_token": "x" * 64})
    assert response.status_code == 400
    assert db_session.scalars(select(AudioOnlyEvent)).all() == []


def test_classes_in_the_course_zone_moved_and_cancelled(
    db_session: Session, client: FlaskClient, zoom: Any, teacher: Any, course: Any, family: Any
) -> None:
    first, second, third = class_sessions(course)[:3]
    move_class(
        db_session,
        actor=teacher,
        course_id=course.id,
        class_id=second.id,
        day=dt.date(2026, 3, 17),
        at=dt.time(18, 30),
        now=NOW,
    )
    cancel_class(db_session, actor=teacher, course_id=course.id, class_id=third.id, now=NOW)
    page = sign_in_parent(client, db_session, "rana@example.net")
    assert "Times are in Europe/London" in page
    # 17:00 London in March before the clock change is 17:00 GMT; after it, BST.
    assert "Mon 9 Mar 2026" in page and "17:00–17:45" in page
    assert "Tue 17 Mar 2026" in page and "18:30–19:15" in page
    assert "from Mon 16 Mar 17:00" in page
    assert re.search(r"Mon 23 Mar 2026.*?Cancelled", page, re.S)
    assert "Mon 30 Mar 2026" in page and "BST" in page


def test_the_calendar_file(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    family: Any,
) -> None:
    cancelled = class_sessions(course)[2]
    cancel_class(db_session, actor=teacher, course_id=course.id, class_id=cancelled.id, now=NOW)
    sign_in_parent(client, db_session, "rana@example.net")
    before = client.get("/f/calendar.ics")
    assert before.status_code == 200
    assert before.mimetype == "text/calendar"
    assert before.headers["Cache-Control"] == "no-store"
    assert join_url(sandbox, family) not in before.get_data(as_text=True)

    accept(client)
    response = client.get("/f/calendar.ics")
    cal = icalendar.Calendar.from_ical(response.data)
    events = [c for c in cal.walk("VEVENT")]
    assert len(events) == len(class_sessions(course)) == 10
    assert [c["TZID"] for c in cal.walk("VTIMEZONE")] == ["Europe/London"]
    first = events[0]
    assert first.decoded("DTSTART") == dt.datetime(
        2026, 3, 9, 17, 0, tzinfo=first.decoded("DTSTART").tzinfo
    )
    assert first["DTSTART"].params["TZID"] == "Europe/London"
    assert first.decoded("DTSTART").astimezone(dt.UTC) == class_sessions(course)[0].starts_at
    description = str(first["DESCRIPTION"])
    assert join_url(sandbox, family) in description
    assert passcode_of(course) in description
    assert str(events[2]["STATUS"]) == "CANCELLED"
    assert str(first["STATUS"]) == "CONFIRMED"
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == 10
    again = icalendar.Calendar.from_ical(client.get("/f/calendar.ics").data)
    assert [str(e["UID"]) for e in again.walk("VEVENT")] == uids


def test_the_safeguarding_lead_is_on_the_page(
    db_session: Session, client: FlaskClient, org: Any, family: Family
) -> None:
    org.safeguarding_contact_phone = "020 7946 0000"
    page = sign_in_parent(client, db_session, "rana@example.net")
    assert "Safeguarding lead" in page
    assert 'href="mailto:lead@example.org"' in page
    assert 'href="tel:02079460000"' in page


def test_a_course_that_is_not_safe_pauses_the_join_details(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    course: Any,
    family: Family,
) -> None:
    sign_in_parent(client, db_session, "rana@example.net")
    assert join_url(sandbox, family) in accept(client)
    course.safety_state = "not_safe"
    db_session.flush()
    page = client.get("/f/").get_data(as_text=True)
    assert join_url(sandbox, family) not in page
    assert "paused" in page


def test_audio_only_over_http(
    db_session: Session, client: FlaskClient, org: Any, course: Any, family: Family
) -> None:
    org.audio_only_cutoff_minutes = 30
    sign_in_parent(client, db_session, "rana@example.net")
    first = class_sessions(course)[0]
    response = post(client, f"/f/classes/{first.id}/audio-only", action="request")
    assert response.status_code == 303
    assert response.headers["Location"] == "/f/"
    page = client.get("/f/").get_data(as_text=True)
    assert "Done: Amira will join the class on Monday 9 March at 17:00 by audio only" in page
    assert "Audio only" in page and "Join with video after all" in page
    # The message shows once.
    assert "Done: Amira" not in client.get("/f/").get_data(as_text=True)

    post(client, f"/f/classes/{first.id}/audio-only", action="request")
    assert "already asked" in client.get("/f/").get_data(as_text=True)
    assert len(db_session.scalars(select(AudioOnlyEvent)).all()) == 1


def test_audio_only_after_the_cut_off_over_http(
    db_session: Session, client: FlaskClient, clock: Any, course: Any, family: Family
) -> None:
    sign_in_parent(client, db_session, "rana@example.net")
    first = class_sessions(course)[0]
    token = csrf_from(client.get("/f/").get_data(as_text=True))
    clock.offset = first.starts_at + dt.timedelta(minutes=1) - dt.datetime.now(dt.UTC)
    client.post(
        f"/f/classes/{first.id}/audio-only", data={"action": "request", "csrf_token": token}
    )
    page = client.get("/f/").get_data(as_text=True)
    assert "has already started" in page
    assert db_session.scalars(select(AudioOnlyEvent)).all() == []


def test_a_class_of_another_course_or_family_over_http(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    family: Family,
) -> None:
    other_course = factories.make_course(db_session, zoom, teacher, title="Drama club")
    other = factories.enrol(
        db_session, zoom, teacher, other_course, first="Zed", contacts=[("Kim", "kim@x.net")]
    )
    sign_in_parent(client, db_session, "rana@example.net")
    foreign = class_sessions(other_course)[0]
    response = post(client, f"/f/classes/{foreign.id}/audio-only", action="request")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "No such class on your course" in body
    assert "Drama club" not in body and "Zed" not in body
    assert db_session.scalars(select(AudioOnlyEvent)).all() == []
    page = client.get("/f/").get_data(as_text=True)
    assert "Drama club" not in page and "Zed" not in page and "kim@x.net" not in page
    assert join_url(sandbox, other) not in page


def test_two_first_visitors_at_once_share_version_one_of_the_agreement(tmp_path: Any) -> None:
    """The default text becomes version 1 on first use; two parents opening their pages at the
    same moment (two connections, neither committed) both get it, and it is written once."""
    import threading

    from sqlalchemy import func

    from companion.db import make_engine
    from companion.families.models import AgreementVersion

    from .. import factories
    from ..conftest import own_database_url

    engine = make_engine(own_database_url(tmp_path, "agreement", migrated=True))
    with Session(engine) as setup, setup.begin():
        org_id = factories.organisation(setup).id
    got: list[int] = []
    failed: list[Exception] = []

    def visit() -> None:
        try:
            with Session(engine) as session, session.begin():
                org = session.get(agreement.Organisation, org_id)
                got.append(agreement.current(session, org, now=NOW).version)
        except Exception as exc:  # collected: a failure in a thread must fail the test
            failed.append(exc)

    threads = [threading.Thread(target=visit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert failed == [] and got == [1, 1]
    with Session(engine) as check:
        count = check.scalar(select(func.count()).where(AgreementVersion.organisation_id == org_id))
    assert count == 1
    engine.dispose()
