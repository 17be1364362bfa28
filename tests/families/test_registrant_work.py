"""Registrant work on the work engine: a request records and commits, Zoom is called with no
transaction open, and a crash between any two phases is recovered without a second registrant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import sealing, work
from companion.audit.models import AuditEvent
from companion.families import enrolment, family_page, jobs, people, registrants
from companion.families.models import Family
from companion.sealing import Purpose

from .. import factories
from ..crashes import Crash, crash_fixture
from ..factories import NOW
from ..keys_helpers import foreign_sealer
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


crash_at = crash_fixture(registrants.REGISTRANTS.name)


def enrolled(db_session: Session, teacher: Any, course: Any) -> Family:
    """What the enrolment request commits: the family, pending in Zoom, due now."""
    family = enrolment.enrol(
        db_session,
        actor=teacher,
        course_id=course.id,
        child_first_name="Amira",
        child_last_name="K",
        contacts=[people.ContactInput("Rana", "rana@example.net")],
        now=NOW,
    )
    db_session.commit()
    return family


def after_the_claim_ran_out(family: Family) -> dt.datetime:
    """A second after the family's committed claim ends. (The services' clock starts at NOW and
    runs on, so a claim taken after a slow second ends later than NOW + claim_for.)"""
    assert family.zoom_claimed_until is not None
    assert family.zoom_claimed_until <= NOW + registrants.REGISTRANTS.claim_for + dt.timedelta(
        minutes=1
    )
    return family.zoom_claimed_until + dt.timedelta(seconds=1)


def test_enrolment_saves_the_family_and_calls_zoom_only_afterwards(
    app: Any, db_session: Session, zoom: Any, teacher: Any, course: Any
) -> None:
    calls = zoom.calls.total()
    family = enrolled(db_session, teacher, course)
    assert zoom.calls.total() == calls
    assert (family.zoom_state, family.zoom_attempts, family.zoom_next_attempt_at) == (
        "pending",
        0,
        None,
    )
    assert work.due_ids(db_session, registrants.REGISTRANTS, NOW) == [family.id]
    assert jobs.work_family(app, family.id) == "registered"
    db_session.expire_all()
    assert family.zoom_state == "registered" and family.zoom_claimed_until is None
    assert work.due_ids(db_session, registrants.REGISTRANTS, NOW) == []


def test_a_crash_after_the_claim_is_recovered_by_the_next_run(
    app: Any,
    db_session: Session,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    crash_at: Callable[[str], None],
) -> None:
    family = enrolled(db_session, teacher, course)
    crash_at("after_claim")
    with pytest.raises(Crash):
        jobs.work_family(app, family.id)
    db_session.expire_all()
    # The claim (and the attempt it counted) is committed; Zoom was never asked.
    assert family.zoom_state == "pending" and family.zoom_attempts == 1
    assert family.zoom_claimed_until is not None and family.zoom_claimed_until > NOW
    assert zoom.calls["add_registrant"] == 0
    # Nobody else starts it while the claim holds.
    assert jobs.sync_zoom(app, now=NOW) == {}

    assert jobs.sync_zoom(app, now=after_the_claim_ran_out(family)) == {"registered": 1}
    db_session.expire_all()
    (registrant,) = sandbox.approved(course.zoom_meeting_id)
    assert family.zoom_registrant_id == registrant["id"]
    assert zoom.calls["add_registrant"] == 1
    # An attempt after an earlier one looks for its registrant before adding one.
    assert zoom.calls["list_registrants"] >= 1
    assert len(factories.links_to(db_session, "rana@example.net")) == 1


def test_a_crash_after_zoom_answered_adopts_the_registrant_instead_of_adding_another(
    app: Any,
    db_session: Session,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    crash_at: Callable[[str], None],
) -> None:
    family = enrolled(db_session, teacher, course)
    crash_at("after_call")
    with pytest.raises(Crash):
        jobs.work_family(app, family.id)
    db_session.expire_all()
    # Zoom has the registrant; companion never recorded it.
    (registrant,) = sandbox.approved(course.zoom_meeting_id)
    assert family.zoom_state == "pending" and family.zoom_registrant_id is None
    assert factories.links_to(db_session, "rana@example.net") == []

    assert jobs.sync_zoom(app, now=after_the_claim_ran_out(family)) == {"registered": 1}
    db_session.expire_all()
    assert zoom.calls["add_registrant"] == 1
    assert sandbox.approved(course.zoom_meeting_id) == [registrant]
    assert family.zoom_registrant_id == registrant["id"]
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted) == (registrant["join_url"])
    assert len(factories.links_to(db_session, "rana@example.net")) == 1
    registered = db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "family.zoom_registered")
    ).all()
    assert len(registered) == 1


@pytest.mark.parametrize("point", ["after_claim", "after_call"])
def test_a_crash_while_cancelling_is_recovered_by_the_next_run(
    app: Any,
    db_session: Session,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
    family: Family,
    crash_at: Callable[[str], None],
    point: str,
) -> None:
    registrants.withdraw(
        db_session, actor=teacher, course_id=course.id, family_id=family.id, now=NOW
    )
    db_session.commit()
    assert family.zoom_state == "cancelling"
    crash_at(point)
    with pytest.raises(Crash):
        jobs.work_family(app, family.id)
    db_session.expire_all()
    assert family.zoom_state == "cancelling"
    assert jobs.sync_zoom(app, now=after_the_claim_ran_out(family)) == {"cancelled": 1}
    db_session.expire_all()
    assert family.zoom_state == "cancelled" and family.join_url_encrypted == ""
    assert sandbox.approved(course.zoom_meeting_id) == []
    assert len(sandbox.registrants(course.zoom_meeting_id, "denied")) == 1  # cancelled, not two


def test_a_family_withdrawn_while_zoom_registers_it_is_then_cancelled(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    family = enrolled(db_session, teacher, course)

    def withdraw_meanwhile(queue: str, _item: Any) -> None:
        # The teacher withdraws the family while Zoom is still answering the registration.
        if queue == registrants.REGISTRANTS.name and family.status == "enrolled":
            registrants.withdraw(
                db_session, actor=teacher, course_id=course.id, family_id=family.id, now=NOW
            )
            db_session.commit()

    work.hooks.after_call.append(withdraw_meanwhile)
    try:
        assert jobs.work_family(app, family.id) == "cancelling"
    finally:
        work.hooks.after_call.remove(withdraw_meanwhile)
    db_session.expire_all()
    (registrant,) = sandbox.approved(course.zoom_meeting_id)
    # The registrant Zoom made is kept, so the cancellation (due now) cancels exactly it.
    assert family.zoom_registrant_id == registrant["id"]
    assert factories.links_to(db_session, "rana@example.net") == []
    assert jobs.sync_zoom(app, now=NOW) == {"cancelled": 1}
    assert sandbox.approved(course.zoom_meeting_id) == []


def test_the_old_claim_and_backoff_copies_are_gone() -> None:
    for name in ("claim_for_zoom", "due_for_zoom", "push_zoom", "_retry_delay", "_postpone"):
        assert not hasattr(registrants, name), name


def test_a_join_link_sealed_under_an_old_key_is_read_again_outside_the_page(
    app: Any,
    db_session: Session,
    client: Any,
    zoom: Any,
    sandbox: SandboxZoom,
    course: Any,
    family: Family,
) -> None:
    from companion.families import agreement

    contact = family.contacts[0]
    version = agreement.current(db_session, family.organisation, now=NOW)
    agreement.accept(db_session, contact=contact, agreement_id=version.id, now=NOW)
    url = sandbox.registrant(course.zoom_meeting_id, family.zoom_registrant_id)["join_url"]
    family.join_url_encrypted = foreign_sealer().seal(Purpose.JOIN_LINK, url)
    db_session.commit()
    principal = factories.principal(db_session, contact)
    # The page service never calls Zoom: it shows the link as pending.
    calls = zoom.calls.total()
    page = family_page.family_page(db_session, principal, now=NOW)
    assert page.join_url is None and page.join_problem == "pending"
    assert zoom.calls.total() == calls
    assert registrants.join_url_lost(family)

    # The family's own page reads it again, with the request's transaction committed first.
    path = factories.links_to(db_session, "rana@example.net")[0]
    assert client.get(path).status_code == 303
    body = client.get("/f/").get_data(as_text=True)
    assert url in body
    assert zoom.calls["get_registrant"] == 1
    db_session.expire_all()
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted) == url
    assert client.get("/f/").status_code == 200
    assert zoom.calls["get_registrant"] == 1
