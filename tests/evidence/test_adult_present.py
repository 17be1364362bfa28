"""Adult present: the parent confirms on the family page; the teacher's admit list shows it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.errors import ValidationError
from companion.evidence import services
from companion.evidence.models import AdultConfirmation, EvidenceSettings
from companion.families.family_sessions import FamilyPrincipal

from .. import factories
from ..factories import class_of
from ..staff_helpers import sign_in, text


def _soon(session: Session, teacher: Any, minutes: int = 30) -> Any:
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).replace(microsecond=0)
    return factories.course_with_classes(
        session, teacher, starts=[start, start + dt.timedelta(days=7)]
    )


def _parent(session: Session, client: FlaskClient, fam: Any, position: int = 0) -> FlaskClient:
    parent = client.application.test_client()
    parent.set_cookie(
        "companion_family", factories.family_cookie(session, fam.contacts[position]), path="/f/"
    )
    return parent


def _form_token(page: str) -> str:
    marker = 'name="csrf_token" value="'
    return page.split(marker, 1)[1].split('"', 1)[0]


def test_a_parent_confirms_for_the_class_about_to_start_and_the_teacher_sees_it(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    course = _soon(db_session, teacher)
    fam = factories.family(
        db_session,
        course,
        contacts=(("Rana Khan", "rana@example.net"), ("Sami Khan", "sami@example.net")),
    )
    other = factories.family(
        db_session, course, first="Ben", contacts=(("Lee Ng", "lee@example.net"),)
    )
    cls, later = class_of(course), class_of(course, 1)
    parent = _parent(db_session, client, fam)
    page = text(parent.get("/f/"))
    assert page.count("An adult is in the room</button>") == 1  # only the class about to start
    assert f"/f/classes/{cls.id}/adult-present" in page
    assert f"/f/classes/{later.id}/adult-present" not in page

    # Without the family form token: refused, nothing kept.
    assert parent.post(f"/f/classes/{cls.id}/adult-present").status_code in (400, 403)
    assert db_session.scalars(select(AdultConfirmation)).all() == []

    response = parent.post(
        f"/f/classes/{cls.id}/adult-present", data={"csrf_token": _form_token(page)}
    )
    assert response.status_code == 303
    page = text(parent.get("/f/"))
    assert (
        "Thank you" in page and "An adult is in the room: confirmed" in page and "Rana Khan" in page
    )
    (row,) = db_session.scalars(select(AdultConfirmation)).all()
    assert row.family_id == fam.id and row.contact_id == fam.contacts[0].id and row.confirmed_at

    # The second parent, or a second click: kept once.
    second = _parent(db_session, client, fam, 1)
    token = _form_token(text(second.get("/f/")))
    second.post(f"/f/classes/{cls.id}/adult-present", data={"csrf_token": token})
    assert "already confirmed" in text(second.get("/f/"))
    assert len(db_session.scalars(select(AdultConfirmation)).all()) == 1

    sign_in(client, teacher.email)
    admit = text(client.get(f"/courses/{course.id}/classes/{cls.id}/admit"))
    assert "<th>Adult present</th>" in admit
    assert "✓ confirmed" in admit and "by Rana Khan" in admit
    assert "<td>not confirmed</td>" in admit  # Ben's family
    assert other.id


def test_too_early_another_courses_class_or_a_cancelled_one_is_refused(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    course = _soon(db_session, teacher, minutes=180)
    fam = factories.family(db_session, course)
    elsewhere = _soon(db_session, teacher)
    parent = _parent(db_session, client, fam)
    page = text(parent.get("/f/"))
    token = _form_token(page)
    assert "An adult is in the room</button>" not in page  # three hours early
    parent.post(f"/f/classes/{class_of(course).id}/adult-present", data={"csrf_token": token})
    assert "You can confirm from" in text(parent.get("/f/"))
    foreign = parent.post(
        f"/f/classes/{class_of(elsewhere).id}/adult-present", data={"csrf_token": token}
    )
    assert foreign.status_code == 404
    assert db_session.scalars(select(AdultConfirmation)).all() == []


def test_the_organisation_can_have_unconfirmed_families_marked_do_not_admit(
    db_session: Session, client: FlaskClient, teacher: Any
) -> None:
    db_session.add(
        EvidenceSettings(organisation_id=teacher.organisation_id, list_unconfirmed=False)
    )
    course = _soon(db_session, teacher)
    factories.family(db_session, course)
    sign_in(client, teacher.email)
    cls = class_of(course)
    admit = text(client.get(f"/courses/{course.id}/classes/{cls.id}/admit"))
    assert "not confirmed — do not admit" in admit


def test_the_service_refuses_after_the_class_and_for_a_withdrawn_family(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)  # yesterday's class
    fam = factories.family(db_session, course)
    principal = FamilyPrincipal(
        None,
        fam,
        fam.contacts[0],  # type: ignore[arg-type]
    )
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValidationError, match="has ended"):
        services.confirm_adult(db_session, principal, class_id=class_of(course).id, now=now)
    fam.status = "withdrawn"
    with pytest.raises(ValidationError, match="no longer enrolled"):
        services.confirm_adult(db_session, principal, class_id=class_of(course, 1).id, now=now)
