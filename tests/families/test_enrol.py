"""Enrolment: each family one Zoom registrant, never two, kept when Zoom fails; withdrawal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy.orm import Session

from companion import sealing, work
from companion.errors import Conflict, Forbidden, NotFound, ValidationError
from companion.families import access, enrolment, jobs, people, registrants
from companion.families.models import Family
from companion.sealing import Purpose

from .. import factories
from ..factories import NOW
from ..zoom_sandbox import REGISTRANT_DAILY_LIMIT, SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def test_enrolment_makes_one_registrant_with_its_own_link(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, course: Any, family: Family, app: Any
) -> None:
    meeting = course.zoom_meeting_id
    (registrant,) = sandbox.approved(meeting)
    assert family.zoom_state == "registered"
    assert family.zoom_registrant_id == registrant["id"]
    # Zoom knows the child by name and the family by an address companion made, not a parent's.
    assert (registrant["first_name"], registrant["last_name"]) == ("Amira", "K")
    assert registrant["email"] == registrants.registrant_email(family)
    assert "rana@example.net" not in " ".join(str(sent) for sent in sandbox.sent)
    (sent,) = sandbox.sent_to("add_registrant")
    assert json.loads(sent.body)["auto_approve"] is True
    # The personal join link is stored, encrypted.
    assert registrant["join_url"] not in family.join_url_encrypted
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted) == registrant["join_url"]
    assert access.family_for_registrant(db_session, registrant["id"]) is family


def test_siblings_with_the_same_parent_get_two_registrants(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any, family: Family
) -> None:
    sibling = factories.enrol(db_session, zoom, teacher, course, first="Yusuf")
    regs = sandbox.approved(course.zoom_meeting_id)
    assert len(regs) == 2
    assert regs[0]["join_url"] != regs[1]["join_url"]
    assert sibling.zoom_registrant_id != family.zoom_registrant_id


def test_full_surnames_when_the_organisation_chooses_them(
    db_session: Session, zoom: Any, teacher: Any, org: Any
) -> None:
    org.child_name_style = "full"
    course = factories.make_course(db_session, zoom, teacher)
    family = factories.enrol(db_session, zoom, teacher, course, last="  Khan-Smith ")
    assert family.child_last_name == "Khan-Smith"
    assert people.display_name(family) == "Amira Khan-Smith"


@pytest.mark.parametrize(
    ("first", "last", "contacts", "field"),
    [
        ("", "K", [("Rana", "rana@example.net")], "child_first_name"),
        ("Amira", "   ", [("Rana", "rana@example.net")], "child_last_name"),
        ("Amira", "K", [("Rana", "rana@")], "contact1_email"),
        ("Amira", "K", [("Rana", "rana example.net")], "contact1_email"),
        ("Amira", "K", [("", "")], "contact1_name"),
        ("Amira", "K", [("Rana", "")], "contact1_email"),
        ("Amira", "K", [("Rana", "a@example.net"), ("Sam", "A@example.net")], "contact2_email"),
        ("Amira", "K", [("Rana", "a@example.net"), ("", "b@example.net")], "contact2_name"),
        ("A" * 65, "K", [("Rana", "rana@example.net")], "child_first_name"),
        ("Ami\x00ra", "K", [("Rana", "rana@example.net")], "child_first_name"),
        (
            "Amira",
            "K",
            [("A", "a@example.net"), ("B", "b@example.net"), ("C", "c@example.net")],
            "contacts",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_saved(
    db_session: Session,
    zoom: Any,
    teacher: Any,
    course: Any,
    first: str,
    last: str,
    contacts: list[tuple[str, str]],
    field: str,
) -> None:
    calls = zoom.calls.total()
    with pytest.raises(ValidationError) as caught:
        factories.enrol(
            db_session, zoom, teacher, course, first=first, last=last, contacts=contacts
        )
    assert caught.value.field == field
    assert access.families_of(db_session, course.id) == []
    assert zoom.calls.total() == calls


def test_a_child_already_enrolled_is_refused(
    db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    with pytest.raises(Conflict) as caught:
        factories.enrol(db_session, zoom, teacher, course, first="amira", last="k.")
    assert "already enrolled" in caught.value.message
    assert len(access.families_of(db_session, course.id)) == 1


def test_teachers_enrol_only_on_their_own_courses(
    db_session: Session, zoom: Any, org: Any, course: Any, lead: Any, admin: Any
) -> None:
    other = factories.user(db_session, org, role="teacher")
    with pytest.raises(NotFound):
        factories.enrol(db_session, zoom, other, course)
    with pytest.raises(Forbidden):
        factories.enrol(db_session, zoom, lead, course)
    assert factories.enrol(db_session, zoom, admin, course).zoom_state == "registered"


def test_zoom_down_keeps_the_family_pending_and_the_job_registers_it_once(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    # Zoom made the registrant but the answer was lost on the way back.
    sandbox.fail("add_registrant", status=502, after=True)
    family = enrolment.enrol(
        db_session,
        actor=teacher,
        course_id=course.id,
        child_first_name="Amira",
        child_last_name="K",
        contacts=[people.ContactInput("Rana", "rana@example.net")],
        now=NOW,
    )
    # Saved before Zoom is called: nothing has gone to Zoom yet.
    assert family.zoom_state == "pending" and zoom.calls["add_registrant"] == 0
    factories.zoom_now(db_session, zoom, family, teacher)
    assert family.zoom_state == "pending"
    assert family.zoom_next_attempt_at is not None
    assert "try again automatically" in family.zoom_error
    assert factories.outbox(db_session, "family.link") == []

    result = jobs.sync_zoom(app, now=family.zoom_next_attempt_at)
    db_session.refresh(family)
    assert result == {"registered": 1}
    assert family.zoom_state == "registered"
    # The retry looked first and adopted the registrant the lost attempt had made.
    assert zoom.calls["add_registrant"] == 1
    assert zoom.calls["list_registrants"] >= 1
    assert len(sandbox.approved(course.zoom_meeting_id)) == 1
    assert len(factories.outbox(db_session, "family.link")) == 1


def test_rate_limited_waits_as_long_as_zoom_says(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    sandbox.fail("add_registrant", status=429, retry_after=3600, body=REGISTRANT_DAILY_LIMIT)
    family = factories.enrol(db_session, zoom, teacher, course)
    assert family.zoom_state == "pending"
    assert abs((family.zoom_next_attempt_at - NOW).total_seconds() - 3600) < 60


def test_zoom_refusing_marks_the_family_failed_and_a_person_can_retry(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    sandbox.fail("add_registrant", status=400, body={"code": 300, "message": "Invalid field."})
    family = factories.enrol(db_session, zoom, teacher, course)
    assert family.zoom_state == "failed"
    assert "Invalid field" in family.zoom_error
    factories.retry(db_session, zoom, teacher, family)
    assert family.zoom_state == "registered" and family.zoom_error == ""
    assert len(sandbox.approved(course.zoom_meeting_id)) == 1


def test_a_course_not_in_zoom_yet_registers_its_families_once_it_is(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any
) -> None:
    sandbox.fail("create_meeting", drop=True)
    course = factories.make_course(db_session, zoom, teacher)
    assert course.zoom_state == "pending"
    family = factories.enrol(db_session, zoom, teacher, course)
    assert family.zoom_state == "pending"
    assert "Waiting for the course's meeting" in family.zoom_error
    assert jobs.sync_zoom(app, now=NOW) == {}  # nothing due while the meeting is missing

    from companion.courses import jobs as course_jobs

    course_jobs.retry_pending(app, now=course.zoom_next_attempt_at)
    db_session.refresh(course)
    assert course.zoom_state == "created"
    assert jobs.sync_zoom(app, now=NOW) == {"registered": 1}
    db_session.refresh(family)
    assert family.zoom_state == "registered"


def test_withdrawal_cancels_the_registrant(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any, family: Family
) -> None:
    factories.withdraw(db_session, zoom, teacher, family)
    assert family.status == "withdrawn"
    assert family.zoom_state == "cancelled"
    assert family.join_url_encrypted == ""
    assert sandbox.approved(course.zoom_meeting_id) == []
    (sent,) = sandbox.sent_to("update_registrant_status")
    body = json.loads(sent.body)
    assert body["action"] == "cancel"
    assert body["registrants"] == [
        {"id": family.zoom_registrant_id, "email": registrants.registrant_email(family)}
    ]
    with pytest.raises(Conflict):
        registrants.withdraw(
            db_session, actor=teacher, course_id=course.id, family_id=family.id, now=NOW
        )


def test_withdrawal_when_zoom_is_down_is_finished_by_the_job(
    app: Any,
    db_session: Session,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    family: Family,
) -> None:
    sandbox.fail("update_registrant_status", drop=True)
    factories.withdraw(db_session, zoom, teacher, family)
    assert family.status == "withdrawn"
    assert family.zoom_state == "cancelling"
    assert "try again automatically" in family.zoom_error
    assert len(sandbox.approved(course.zoom_meeting_id)) == 1

    assert jobs.sync_zoom(app, now=family.zoom_next_attempt_at) == {"cancelled": 1}
    db_session.refresh(family)
    assert family.zoom_state == "cancelled"
    assert sandbox.approved(course.zoom_meeting_id) == []


def test_withdrawing_a_family_zoom_never_had_calls_nobody(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any
) -> None:
    sandbox.fail("create_meeting", drop=True)
    course = factories.make_course(db_session, zoom, teacher)
    family = factories.enrol(db_session, zoom, teacher, course)
    calls = zoom.calls.total()
    factories.withdraw(db_session, zoom, teacher, family)
    assert family.zoom_state == "cancelled"
    assert zoom.calls.total() == calls


def test_a_withdrawn_family_whose_pending_attempt_reached_zoom_is_cancelled_there(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    sandbox.fail("add_registrant", status=502, after=True)
    family = factories.enrol(db_session, zoom, teacher, course)
    assert family.zoom_state == "pending"
    factories.withdraw(db_session, zoom, teacher, family)
    # The lost attempt's registrant was found by its address and cancelled.
    assert family.zoom_state == "cancelled"
    assert sandbox.approved(course.zoom_meeting_id) == []


def test_enrolment_closes_when_the_course_is_over(
    db_session: Session, zoom: Any, teacher: Any, course: Any
) -> None:
    with pytest.raises(Conflict):
        factories.enrol(db_session, zoom, teacher, course, now=course.ends_at)


def test_withdrawing_a_family_a_job_is_working_on_leaves_the_cancel_to_the_job(
    app: Any,
    db_session: Session,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    family: Family,
) -> None:
    # As a job run would (here re-reading its join link): the claim is committed first.
    assert work.claim(db_session, registrants.JOIN_LINKS, family.id, NOW)
    calls = zoom.calls.total()
    factories.withdraw(db_session, zoom, teacher, family)
    assert family.status == "withdrawn" and family.zoom_state == "cancelling"
    assert zoom.calls.total() == calls  # the request left the family to whoever holds it
    assert len(sandbox.approved(course.zoom_meeting_id)) == 1
    later = NOW + registrants.REGISTRANTS.claim_for + dt.timedelta(seconds=1)
    assert jobs.sync_zoom(app, now=later) == {"cancelled": 1}
    assert sandbox.approved(course.zoom_meeting_id) == []
