"""Helpers for the staff-account tests: sign in from a given address, read the session cookie,
look at what was recorded."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.models import LoginAttempt, StaffSession
from companion.accounts.services import hash_token
from companion.audit.models import AuditEvent

from . import factories
from .conftest import csrf_from
from .twofactor_helpers import finish_sign_in

COOKIE = "companion_session"


def sign_in(
    client: FlaskClient,
    email: str,
    password: str = factories.PASSWORD,
    *,
    ip: str = "127.0.0.1",
    next_path: str | None = None,
) -> Any:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    path = "/login" if next_path is None else f"/login?next={quote(next_path, safe='/')}"
    response = client.post(
        path,
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )
    # Leads and admins then enter a code from their (factory-enrolled) authenticator.
    return finish_sign_in(client, response, email, environ_base={"REMOTE_ADDR": ip})


def cookie_value(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def session_data(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """What the signed session cookie holds (only a random session id and the CSRF secret)."""
    value = cookie_value(client)
    if not value:
        return {}
    return dict(app.session_interface.get_signing_serializer(app).loads(value))  # type: ignore[attr-defined]


def staff_session_row(db: Session, raw_sid: str) -> StaffSession | None:
    db.expire_all()
    return db.scalars(
        select(StaffSession).where(StaffSession.token_hash == hash_token(raw_sid))
    ).first()


def attempts(db: Session, **where: Any) -> list[LoginAttempt]:
    db.expire_all()
    query = select(LoginAttempt).order_by(LoginAttempt.id)
    for key, value in where.items():
        query = query.where(getattr(LoginAttempt, key) == value)
    return list(db.scalars(query))


def audit_events(db: Session, kind: str) -> list[AuditEvent]:
    db.expire_all()
    return list(
        db.scalars(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))
    )


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def csrf_of(client: FlaskClient, path: str) -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def post_form(
    client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, form_page: str = "/"
) -> Any:
    payload = dict(data or {})
    payload["csrf_token"] = csrf_of(client, form_page)
    return client.post(path, data=payload)
