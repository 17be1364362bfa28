"""Admins change roles and deactivate staff; the last admin stays; other roles are refused."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts import services
from companion.accounts.models import User
from companion.db import utcnow
from companion.errors import Conflict

from . import factories
from .staff_helpers import audit_events, post_form, sign_in, text


@pytest.fixture
def admin_client(client: FlaskClient, admin: User) -> FlaskClient:
    assert sign_in(client, admin.email).status_code == 302
    return client


def change_role(client: FlaskClient, user: User, role: str) -> object:
    return post_form(client, f"/staff/{user.id}/role", {"role": role}, form_page="/staff")


def test_staff_page_lists_everyone_with_their_state(
    admin_client: FlaskClient, db_session: Session, org: object, teacher: User, lead: User
) -> None:
    invited = factories.user(db_session, org, name="Ivy Invited", password_hash=None)
    gone = factories.user(db_session, org, name="Gus Gone", active=False)

    page = text(admin_client.get("/staff"))

    for person in (teacher, lead, invited, gone):
        assert person.email in page
    assert "Invited" in page and "Deactivated" in page
    assert f"/staff/{invited.id}/reinvite" in page
    assert f"/staff/{gone.id}/reactivate" in page


def test_admin_changes_a_role(
    admin_client: FlaskClient, db_session: Session, admin: User, teacher: User
) -> None:
    response = change_role(admin_client, teacher, "safeguarding_lead")

    assert response.status_code == 302
    db_session.refresh(teacher)
    assert teacher.role == "safeguarding_lead"
    [event] = audit_events(db_session, "staff.role_changed")
    assert event.actor_user_id == admin.id
    assert (event.subject_type, event.subject_id) == ("user", str(teacher.id))
    assert json.loads(event.detail) == {"old": "teacher", "new": "safeguarding_lead"}
    assert f"{teacher.name} is now Safeguarding lead." in text(admin_client.get("/staff"))


def test_unknown_role_changes_nothing(
    admin_client: FlaskClient, db_session: Session, teacher: User
) -> None:
    response = change_role(admin_client, teacher, "owner")

    assert response.status_code == 303
    assert "Choose one of the listed roles." in text(admin_client.get("/staff"))
    db_session.refresh(teacher)
    assert teacher.role == "teacher"
    assert audit_events(db_session, "staff.role_changed") == []


def test_last_admin_cannot_step_down(
    admin_client: FlaskClient, db_session: Session, org: object, admin: User
) -> None:
    # A deactivated admin does not count as another admin.
    factories.user(db_session, org, role="admin", active=False)

    response = change_role(admin_client, admin, "teacher")

    assert response.status_code == 409
    assert "This is the last active admin; make someone else admin first." in text(response)
    db_session.refresh(admin)
    assert admin.role == "admin"
    assert audit_events(db_session, "staff.role_changed") == []


def test_admin_may_step_down_when_another_admin_remains(
    admin_client: FlaskClient, db_session: Session, org: object, admin: User
) -> None:
    factories.user(db_session, org, role="admin")

    assert change_role(admin_client, admin, "teacher").status_code == 302
    db_session.refresh(admin)
    assert admin.role == "teacher"
    # Their next request is judged by the new role.
    assert admin_client.get("/staff").status_code == 403


def test_admin_cannot_deactivate_themselves(
    admin_client: FlaskClient, db_session: Session, admin: User
) -> None:
    response = post_form(admin_client, f"/staff/{admin.id}/deactivate", form_page="/staff")

    assert response.status_code == 409
    assert "You cannot deactivate your own account." in text(response)
    db_session.refresh(admin)
    assert admin.active is True
    assert admin_client.get("/staff").status_code == 200


def test_last_admin_cannot_be_deactivated(db_session: Session, admin: User, teacher: User) -> None:
    # Services do not trust the caller's role check, so the guard holds for any actor.
    with pytest.raises(Conflict, match="last active admin"):
        services.deactivate(db_session, actor=teacher, user_id=admin.id, now=utcnow())
    assert admin.active is True


def test_admin_cannot_reach_another_organisations_staff(
    admin_client: FlaskClient, db_session: Session
) -> None:
    elsewhere = factories.organisation(db_session)
    stranger = factories.user(db_session, elsewhere)

    assert change_role(admin_client, stranger, "admin").status_code == 404
    response = post_form(admin_client, f"/staff/{stranger.id}/deactivate", form_page="/staff")
    assert response.status_code == 404
    db_session.refresh(stranger)
    assert stranger.role == "teacher" and stranger.active is True
    assert stranger.email not in text(admin_client.get("/staff"))


ADMIN_PAGES = ["/staff", "/staff/invite", "/admin/organisation/", "/admin/outbox/"]


@pytest.mark.parametrize("role", ["teacher", "safeguarding_lead"])
def test_other_roles_are_refused_and_the_refusal_is_recorded(
    client: FlaskClient, db_session: Session, org: object, admin: User, teacher: User, role: str
) -> None:
    person = factories.user(db_session, org, role=role)
    sign_in(client, person.email)

    for path in ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Your role does not allow this." in text(response)
    response = post_form(client, f"/staff/{teacher.id}/role", {"role": "admin"}, form_page="/")
    assert response.status_code == 403
    response = post_form(client, f"/staff/{admin.id}/deactivate", form_page="/")
    assert response.status_code == 403

    db_session.refresh(teacher)
    db_session.refresh(admin)
    assert teacher.role == "teacher" and admin.active is True
    denied = audit_events(db_session, "access.denied")
    assert {e.actor_user_id for e in denied} == {person.id}
    assert [(json.loads(e.detail)["method"], json.loads(e.detail)["path"]) for e in denied] == [
        *[("GET", p) for p in ADMIN_PAGES],
        ("POST", f"/staff/{teacher.id}/role"),
        ("POST", f"/staff/{admin.id}/deactivate"),
    ]
