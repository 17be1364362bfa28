"""Staff sessions end server-side: sign-out, idle and absolute timeouts, deactivation; CSRF."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts import services
from companion.accounts.models import User
from companion.db import Clock

from .staff_helpers import (
    COOKIE,
    audit_events,
    cookie_value,
    csrf_of,
    post_form,
    session_data,
    sign_in,
    staff_session_row,
    text,
)


def goes_to_login(response: object) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")  # type: ignore[attr-defined]


def test_sign_out_ends_the_session_server_side(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User
) -> None:
    sign_in(client, teacher.email)
    stolen_cookie = cookie_value(client)
    sid = session_data(app, client)["sid"]

    response = post_form(client, "/logout")

    assert goes_to_login(response)
    row = staff_session_row(db_session, sid)
    assert row is not None and row.ended_at is not None and row.end_reason == "signed_out"
    assert goes_to_login(client.get("/"))
    assert "You are signed out." in text(client.get("/login"))

    # Someone who copied the cookie before sign-out gets nothing from it.
    replay = app.test_client()
    replay.set_cookie(COOKIE, stolen_cookie)
    assert goes_to_login(replay.get("/"))
    assert goes_to_login(replay.get("/account/tokens"))


def test_sign_out_needs_the_csrf_token(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User
) -> None:
    sign_in(client, teacher.email)
    sid = session_data(app, client)["sid"]

    response = client.post("/logout")

    assert response.status_code == 400
    assert staff_session_row(db_session, sid).ended_at is None  # type: ignore[union-attr]
    assert client.get("/").status_code == 200


def test_idle_timeout(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User, clock: Clock
) -> None:
    idle = app.config["SESSION_IDLE_MINUTES"]
    sign_in(client, teacher.email)
    sid = session_data(app, client)["sid"]

    # Activity keeps the session alive past the idle limit...
    for _ in range(3):
        clock.advance(minutes=idle - 2)
        assert client.get("/").status_code == 200

    # ...and a pause longer than the limit ends it.
    clock.advance(minutes=idle + 1)
    assert goes_to_login(client.get("/"))
    row = staff_session_row(db_session, sid)
    assert row is not None and row.end_reason == "idle"
    # Coming back with the same cookie later does not revive it.
    assert goes_to_login(client.get("/"))


def test_absolute_timeout_despite_activity(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User, clock: Clock
) -> None:
    absolute = dt.timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
    step = dt.timedelta(minutes=app.config["SESSION_IDLE_MINUTES"] - 1)
    sign_in(client, teacher.email)
    sid = session_data(app, client)["sid"]

    elapsed = dt.timedelta(0)
    while elapsed + step < absolute:
        clock.advance(step)
        elapsed += step
        assert client.get("/").status_code == 200, f"signed out early, after {elapsed}"

    clock.advance(step)
    assert goes_to_login(client.get("/"))
    assert staff_session_row(db_session, sid).end_reason == "absolute"  # type: ignore[union-attr]


def test_deactivation_ends_sessions_and_tokens_at_once(
    app: Flask, db_session: Session, admin: User, teacher: User
) -> None:
    teacher_browser = app.test_client()
    sign_in(teacher_browser, teacher.email)
    sid = session_data(app, teacher_browser)["sid"]
    token = services.create_token(db_session, user=teacher, name="laptop")
    api = {"Authorization": f"Bearer {token}"}
    assert teacher_browser.get("/").status_code == 200
    assert teacher_browser.get("/api/v1/me", headers=api).status_code == 200

    admin_browser = app.test_client()
    sign_in(admin_browser, admin.email)
    response = post_form(admin_browser, f"/staff/{teacher.id}/deactivate", form_page="/staff")
    assert response.status_code == 302

    assert goes_to_login(teacher_browser.get("/"))
    me = teacher_browser.get("/api/v1/me", headers=api)
    assert me.status_code == 401
    assert me.json["error"]["code"] == "unauthorized"
    row = staff_session_row(db_session, sid)
    assert row is not None and row.end_reason == "deactivated"
    db_session.refresh(teacher)
    assert teacher.active is False and teacher.deactivated_at is not None
    assert [e.subject_id for e in audit_events(db_session, "staff.deactivated")] == [
        str(teacher.id)
    ]

    # Reactivating does not bring the old session or token back.
    post_form(admin_browser, f"/staff/{teacher.id}/reactivate", form_page="/staff")
    db_session.refresh(teacher)
    assert teacher.active is True
    assert goes_to_login(teacher_browser.get("/"))
    assert teacher_browser.get("/api/v1/me", headers=api).status_code == 401
    assert sign_in(teacher_browser, teacher.email).status_code == 302


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, db_session: Session, admin: User, teacher: User
) -> None:
    sign_in(client, admin.email)

    for data in ({}, {"csrf_token": "forged"}):
        response = client.post(f"/staff/{teacher.id}/deactivate", data=data)
        assert response.status_code == 400
        assert "This form has expired or was not sent from companion" in text(response)
        db_session.refresh(teacher)
        assert teacher.active is True

    response = client.post("/staff/invite", data={"name": "X", "email": "x@example.org"})
    assert response.status_code == 400
    assert services.find_user_by_email(db_session, "x@example.org") is None


def test_csrf_token_of_another_session_does_not_work(
    app: Flask, client: FlaskClient, db_session: Session, admin: User, teacher: User
) -> None:
    other = app.test_client()
    other_token = csrf_of(other, "/login")
    sign_in(client, admin.email)

    response = client.post(f"/staff/{teacher.id}/deactivate", data={"csrf_token": other_token})

    assert response.status_code == 400
    db_session.refresh(teacher)
    assert teacher.active is True
