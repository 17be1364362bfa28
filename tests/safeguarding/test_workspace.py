"""The lead's workspace: open concerns and holds, recordings found by course/class/child/date,
a concern's chronology (concern, hold, retrievals, disclosures, notes, notices, outcome),
disclosures, telling a family; nobody but the lead."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.db import utcnow
from companion.mail.models import OutboxMessage
from companion.recordings import services as vault
from companion.safeguarding.models import ConcernOutcome, Disclosure, FamilyNotice

from .. import factories
from ..security import world as w
from ..staff_helpers import audit_events, csrf_of, text


@pytest.fixture
def world(app: Flask, db_session: Session, org: Any, admin: Any, lead: Any) -> w.World:
    return w.build(db_session, app, org, admin, lead)


@pytest.fixture
def lead_client(app: Flask, world: w.World) -> Any:
    return w.staff_client(app, world.lead)


def post(client: Any, path: str, data: dict[str, Any], page: str) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_of(client, page)})


def test_overview_lists_open_concerns_and_holds(lead_client: Any, world: w.World) -> None:
    page = text(lead_client.get("/safeguarding/"))
    assert f"Concern #{world.concern_y.id}" in page
    assert w.SECRET_COURSE in page
    assert f"the recordings of class {world.class_y.id}" in page


def test_recordings_by_course_class_child_and_date(
    lead_client: Any, world: w.World, db_session: Session
) -> None:
    other = factories.recording(db_session, world.class_x)
    href_y = f"/recordings/{world.recording_y.id}"
    href_x = f"/recordings/{other.id}"

    def found(**query: Any) -> str:
        response = lead_client.get("/safeguarding/recordings", query_string=query)
        assert response.status_code == 200, query
        return text(response)

    both = found()
    assert href_y in both and href_x in both
    by_course = found(course_id=world.course_y.id)
    assert href_y in by_course and href_x not in by_course
    by_class = found(class_id=world.class_x.id)
    assert href_x in by_class and href_y not in by_class
    by_child = found(child="zebedee")
    assert href_y in by_child and href_x not in by_child
    assert href_x in found(child="Amira Alpha")
    day = world.class_y.starts_at.date()
    assert href_y in found(since=day.isoformat(), until=day.isoformat())
    assert href_y not in found(since=(day + dt.timedelta(days=1)).isoformat())
    bad = lead_client.get("/safeguarding/recordings", query_string={"since": "yesterday"})
    assert bad.status_code == 422 and "is not a date" in text(bad)


def test_chronology_notes_disclosure_notice_and_outcome(
    app: Flask, lead_client: Any, world: w.World, db_session: Session
) -> None:
    cid = world.concern_y.id
    page_path = f"/safeguarding/concerns/{cid}"
    # A retrieval, as the vault records it.
    file = world.recording_y.files[0]
    vault.audit(
        db_session,
        "recording.access_granted",
        actor=world.lead,
        subject=("recording_file", file.id),
        course_id=world.course_y.id,
        recording_id=str(world.recording_y.id),
        reason="Checking minute 12 of the class",
    )
    db_session.commit()

    r = post(
        lead_client, f"{page_path}/notes", {"body": "Spoke to the teacher by phone."}, page_path
    )
    assert r.status_code == 303
    short = post(lead_client, f"{page_path}/notes", {"body": "hm"}, page_path)
    assert short.status_code == 422 and "at least 10 characters" in text(short)

    today = utcnow().date().isoformat()
    r = post(
        lead_client,
        f"{page_path}/disclosures",
        {
            "recording_id": str(world.recording_y.id),
            "recipient_name": "DC Morgan",
            "recipient_organisation": "Police child protection team",
            "what": "the video file",
            "reason": "Police asked for the recording of the class.",
            "disclosed_on": today,
        },
        page_path,
    )
    assert r.status_code == 303, text(r)
    future = post(
        lead_client,
        f"{page_path}/disclosures",
        {
            "recording_id": str(world.recording_y.id),
            "recipient_name": "x",
            "recipient_organisation": "y",
            "reason": "a reason long enough",
            "disclosed_on": (utcnow().date() + dt.timedelta(days=3)).isoformat(),
        },
        page_path,
    )
    assert future.status_code == 422 and "future" in text(future)
    [d] = db_session.scalars(select(Disclosure)).all()
    assert d.recipient_organisation == "Police child protection team"
    [event] = audit_events(db_session, "recording.disclosed")
    assert event.subject_id == str(world.recording_y.id) and event.course_id == world.course_y.id

    r = post(
        lead_client,
        f"{page_path}/tell-family",
        {
            "family_id": world.family_b.id,
            "subject": "About yesterday's class",
            "body": "During yesterday's class an adult we did not know spoke to the children.",
        },
        page_path,
    )
    assert r.status_code == 303, text(r)
    sent = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "safeguarding.family_notice")
    ).all()
    assert sorted(m.to_address for m in sent) == sorted(c.email for c in world.family_b.contacts)
    [notice_event] = audit_events(db_session, "family.incident_notice")
    assert notice_event.family_id == world.family_b.id
    # A family of another course is not this concern's to tell.
    wrong = post(
        lead_client,
        f"{page_path}/tell-family",
        {"family_id": world.family_a.id, "subject": "x", "body": "a message long enough"},
        page_path,
    )
    assert wrong.status_code == 422
    assert db_session.scalars(select(FamilyNotice)).all().__len__() == 1

    r = post(
        lead_client,
        f"{page_path}/outcome",
        {
            "outcome": "referred",
            "summary": "Referred to the local authority designated officer.",
            "release_hold": "yes",
            "release_reason": "The police have their copy now.",
        },
        page_path,
    )
    assert r.status_code == 303, text(r)
    db_session.expire_all()
    assert world.hold_y.released_at is not None
    assert db_session.scalars(select(ConcernOutcome)).one().hold_released
    assert audit_events(db_session, "concern.closed")
    assert audit_events(db_session, "recording.hold_released")

    page = text(lead_client.get(page_path))
    order = [
        "Concern raised",
        "Recordings of the class put on hold",
        "Recording opened, with a reason",
        "Note",
        "Disclosed to DC Morgan, Police child protection team",
        "Family of Zebedee Quasar told (2 parents)",
        "Hold released",
        "Outcome: Referred to an outside agency (hold released)",
    ]
    positions = [page.find(title) for title in order]
    assert all(p >= 0 for p in positions), list(zip(order, positions, strict=True))
    assert positions == sorted(positions[:3]) + positions[3:]  # concern, hold, retrieval first
    assert "Checking minute 12 of the class" in page
    # Closed: no more notes.
    late = post(lead_client, f"{page_path}/notes", {"body": "One more thing to add."}, page_path)
    assert late.status_code == 409


def test_release_without_reason_closes_nothing(
    lead_client: Any, world: w.World, db_session: Session
) -> None:
    path = f"/safeguarding/concerns/{world.concern_y.id}"
    r = post(
        lead_client,
        f"{path}/outcome",
        {
            "outcome": "no_further_action",
            "summary": "Nothing more to do here.",
            "release_hold": "yes",
        },
        path,
    )
    assert r.status_code == 422
    db_session.expire_all()
    assert db_session.scalars(select(ConcernOutcome)).all() == []
    assert world.hold_y.released_at is None


@pytest.mark.parametrize("who", ["teacher_y", "admin"])
def test_only_the_lead(app: Flask, world: w.World, db_session: Session, who: str) -> None:
    client = w.staff_client(app, getattr(world, who))
    for path in ("/safeguarding/", f"/safeguarding/concerns/{world.concern_y.id}"):
        response = client.get(path)
        assert response.status_code == 403
        assert w.SECRET_CHILD not in text(response)
    assert audit_events(db_session, "access.denied")
