"""Invites: one message with a one-time, expiring link; the invited person sets a password."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts import services
from companion.accounts.models import Invitation, User
from companion.db import Clock
from companion.mail.models import OutboxMessage

from .staff_helpers import audit_events, post_form, sign_in, text

NEW_PASSWORD = "river stones and quiet maps"
LINK_RE = re.compile(r"(https?://\S+)/invite/(\S+)")


@pytest.fixture
def admin_client(client: FlaskClient, admin: User) -> FlaskClient:
    assert sign_in(client, admin.email).status_code == 302
    return client


def outbox(db: Session) -> list[OutboxMessage]:
    db.expire_all()
    return list(db.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def invite(client: FlaskClient, **values: str) -> Any:
    data = {"name": "Nia Newcomer", "email": "nia@example.org", "role": "teacher", **values}
    return post_form(client, "/staff/invite", data, form_page="/staff/invite")


def link_path(message: OutboxMessage) -> str:
    match = LINK_RE.search(message.body_text)
    assert match, message.body_text
    return f"/invite/{match.group(2)}"


def set_password(
    client: FlaskClient, path: str, password: str = NEW_PASSWORD, confirm: str | None = None
) -> Any:
    return post_form(
        client,
        path,
        {"password": password, "confirm": password if confirm is None else confirm},
        form_page=path,
    )


def test_admin_invites_and_the_person_signs_in(
    app: Flask, admin_client: FlaskClient, db_session: Session, admin: User
) -> None:
    response = invite(admin_client, email="  Nia@Example.org ")

    assert response.status_code == 302
    assert response.headers["Location"] == "/staff"
    assert "Invitation sent to nia@example.org." in text(admin_client.get("/staff"))
    person = services.find_user_by_email(db_session, "nia@example.org")
    assert person is not None
    assert person.role == "teacher" and person.password_hash is None
    assert person.organisation_id == admin.organisation_id

    [message] = outbox(db_session)
    assert message.to_address == "nia@example.org"
    assert message.kind == "staff_invite"
    assert message.status == "held", "no SMTP server: the message waits in the outbox"
    match = LINK_RE.search(message.body_text)
    assert match and match.group(1) == app.config["BASE_URL"]
    raw = match.group(2)
    [stored] = db_session.scalars(select(Invitation).where(Invitation.user_id == person.id))
    assert stored.token_hash == services.hash_token(raw) and raw not in stored.token_hash
    assert [e.subject_id for e in audit_events(db_session, "staff.invited")] == [str(person.id)]

    # The invited person opens the link in their own browser.
    newcomer = app.test_client()
    page = newcomer.get(link_path(message))
    assert page.status_code == 200
    assert "nia@example.org" in text(page)
    done = set_password(newcomer, link_path(message))
    assert done.status_code == 302
    assert done.headers["Location"].startswith("/login")
    assert sign_in(newcomer, "nia@example.org", NEW_PASSWORD).status_code == 302
    assert "Hello, Nia Newcomer" in text(newcomer.get("/"))
    assert len(audit_events(db_session, "staff.password_set")) == 1


@pytest.mark.parametrize(
    ("email", "password", "problem"),
    [
        ("nia@example.org", "short1", "it must be at least 12 characters long"),
        ("nia@example.org", "aaaaaaaaaaaaaaa", "it uses too few different characters"),
        ("nia@example.org", "Password1234", "it is a commonly used password"),
        ("nia.n@example.org", "my nia.n password", "it contains your email address"),
        ("nia@example.org", "newcomer rules forever", "it contains your name"),
    ],
)
def test_weak_password_says_what_is_wrong(
    app: Flask,
    admin_client: FlaskClient,
    db_session: Session,
    email: str,
    password: str,
    problem: str,
) -> None:
    invite(admin_client, email=email)
    path = link_path(outbox(db_session)[0])
    newcomer = app.test_client()

    response = set_password(newcomer, path, password)

    assert response.status_code == 422
    assert "Choose a stronger password: " + problem in text(response)
    person = services.find_user_by_email(db_session, email)
    assert person is not None and person.password_hash is None
    # Nothing was used up: the link still works with a good password.
    assert set_password(newcomer, path).status_code == 302


def test_passwords_must_match(app: Flask, admin_client: FlaskClient, db_session: Session) -> None:
    invite(admin_client)
    path = link_path(outbox(db_session)[0])
    response = set_password(app.test_client(), path, NEW_PASSWORD, "something else entirely")
    assert response.status_code == 422
    assert "The two passwords differ." in text(response)


def test_link_works_once(app: Flask, admin_client: FlaskClient, db_session: Session) -> None:
    invite(admin_client)
    path = link_path(outbox(db_session)[0])
    newcomer = app.test_client()
    assert set_password(newcomer, path).status_code == 302

    again = newcomer.get(path)
    assert again.status_code == 409
    assert "already been used" in text(again)
    # Posting to it does not change the password either.
    response = newcomer.post(path, data={"password": "x", "confirm": "x"})
    assert response.status_code in (400, 409)
    assert sign_in(newcomer, "nia@example.org", NEW_PASSWORD).status_code == 302


def test_link_expires(
    app: Flask, admin_client: FlaskClient, db_session: Session, clock: Clock
) -> None:
    invite(admin_client)
    path = link_path(outbox(db_session)[0])
    newcomer = app.test_client()
    page = newcomer.get(path)  # a form opened before the link expired
    assert page.status_code == 200

    clock.advance(hours=app.config["INVITE_TTL_HOURS"], seconds=1)

    response = newcomer.get(path)
    assert response.status_code == 409
    assert "This invite link has expired. Ask an admin to send a new one." in text(response)
    person = services.find_user_by_email(db_session, "nia@example.org")
    assert person is not None and person.password_hash is None


def test_unknown_link(client: FlaskClient) -> None:
    response = client.get("/invite/made-up-token")
    assert response.status_code == 404
    assert "This invite link is not valid" in text(response)


def test_a_new_invitation_kills_the_older_link(
    app: Flask, admin_client: FlaskClient, db_session: Session
) -> None:
    invite(admin_client)
    person = services.find_user_by_email(db_session, "nia@example.org")
    assert person is not None
    first = link_path(outbox(db_session)[0])

    response = post_form(admin_client, f"/staff/{person.id}/reinvite", form_page="/staff")
    assert response.status_code == 302

    messages = outbox(db_session)
    assert [m.to_address for m in messages] == ["nia@example.org"] * 2
    second = link_path(messages[1])
    assert second != first
    newcomer = app.test_client()
    assert newcomer.get(first).status_code == 409
    assert newcomer.get(second).status_code == 200
    assert set_password(newcomer, second).status_code == 302


def test_no_new_invitation_for_an_account_with_a_password(
    admin_client: FlaskClient, db_session: Session, teacher: User
) -> None:
    response = post_form(admin_client, f"/staff/{teacher.id}/reinvite", form_page="/staff")
    assert response.status_code == 409
    assert "has already set a password" in text(response)
    assert outbox(db_session) == []


def test_duplicate_email_is_refused(
    admin_client: FlaskClient, db_session: Session, teacher: User
) -> None:
    response = invite(admin_client, email=teacher.email.upper())
    assert response.status_code == 422
    assert f"There is already a staff account for {teacher.email}." in text(response)
    assert outbox(db_session) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"role": "headteacher"},
            "Choose one of the listed roles: Teacher, Safeguarding lead, Admin.",
        ),
        ({"email": "not-an-email"}, "is not a valid email address"),
        ({"name": ""}, "This field is required."),
    ],
)
def test_bad_invite_input_changes_nothing(
    admin_client: FlaskClient, db_session: Session, values: dict[str, str], message: str
) -> None:
    before = db_session.scalars(select(User)).all()
    response = invite(admin_client, **values)
    assert response.status_code == 422
    assert message in text(response)
    db_session.expire_all()
    assert db_session.scalars(select(User)).all() == before
    assert outbox(db_session) == []


def test_unknown_role_in_the_service_names_the_roles(db_session: Session, admin: User) -> None:
    from companion.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        services.create_user(
            db_session,
            organisation_id=admin.organisation_id,
            email="z@example.org",
            name="Zed",
            role="headteacher",
        )
    assert info.value.message == (
        "Unknown role 'headteacher'; choose one of teacher, safeguarding_lead, admin."
    )


def test_deactivated_person_cannot_use_their_link(
    app: Flask, admin_client: FlaskClient, db_session: Session
) -> None:
    invite(admin_client)
    person = services.find_user_by_email(db_session, "nia@example.org")
    assert person is not None
    path = link_path(outbox(db_session)[0])
    post_form(admin_client, f"/staff/{person.id}/deactivate", form_page="/staff")

    response = app.test_client().get(path)
    assert response.status_code == 403
    assert "deactivated" in text(response)


def test_only_admins_invite(client: FlaskClient, db_session: Session, teacher: User) -> None:
    sign_in(client, teacher.email)
    assert client.get("/staff/invite").status_code == 403
    data = {"name": "N", "email": "n@example.org", "role": "admin"}
    response = post_form(client, "/staff/invite", data, form_page="/")
    assert response.status_code == 403
    assert services.find_user_by_email(db_session, "n@example.org") is None
    assert outbox(db_session) == []
