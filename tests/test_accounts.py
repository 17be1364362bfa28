"""Staff sign-in: fresh sessions, one message for every failure, throttling that is recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion import migrate
from companion.accounts.models import User
from companion.audit.services import verify
from companion.db import Clock, job_session

from . import factories
from .conftest import make_app
from .staff_helpers import (
    attempts,
    audit_events,
    cookie_value,
    session_data,
    sign_in,
    staff_session_row,
    text,
)

NO_MATCH = "That email and password do not match an active account."


def is_signed_in(client: FlaskClient) -> bool:
    response = client.get("/")
    return response.status_code == 200


def test_sign_in_starts_a_fresh_session(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User
) -> None:
    client.get("/login")
    before_cookie = cookie_value(client)
    before = session_data(app, client)
    assert "sid" not in before and "csrf_token" in before

    response = sign_in(client, teacher.email)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    after = session_data(app, client)
    assert cookie_value(client) != before_cookie
    assert after["sid"]
    assert after.get("csrf_token") != before["csrf_token"], "the CSRF secret is renewed too"
    row = staff_session_row(db_session, after["sid"])
    assert row is not None and row.user_id == teacher.id and row.ended_at is None
    # Only a hash of the session id is stored.
    assert row.token_hash != after["sid"]

    home = client.get("/")
    assert home.status_code == 200
    assert teacher.name in text(home)

    [attempt] = attempts(db_session, email=teacher.email)
    assert attempt.succeeded and attempt.reason == "ok"
    assert [e.actor_user_id for e in audit_events(db_session, "signin.ok")] == [teacher.id]
    db_session.refresh(teacher)
    assert teacher.last_login_at is not None


def test_a_planted_session_id_is_not_reused(app: Flask, client: FlaskClient, teacher: User) -> None:
    with client.session_transaction() as planted:
        planted["sid"] = "chosen-by-an-attacker"
    assert not is_signed_in(client)

    sign_in(client, teacher.email)

    assert session_data(app, client)["sid"] != "chosen-by-an-attacker"
    assert is_signed_in(client)


def test_signing_in_over_a_live_session_ends_the_old_one(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User, admin: User
) -> None:
    # An attacker signs in, then plants their cookie in the victim's browser.
    attacker = app.test_client()
    sign_in(attacker, teacher.email)
    planted_cookie = cookie_value(attacker)
    planted_sid = session_data(app, attacker)["sid"]
    client.set_cookie("companion_session", planted_cookie)

    sign_in(client, admin.email)

    victim_sid = session_data(app, client)["sid"]
    assert victim_sid != planted_sid
    old = staff_session_row(db_session, planted_sid)
    assert old is not None and old.ended_at is not None and old.end_reason == "replaced"
    # The attacker's copy of the cookie no longer signs anybody in.
    assert not is_signed_in(attacker)
    assert "Hello, " + admin.name in text(client.get("/"))


def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: FlaskClient, db_session: Session, teacher: User
) -> None:
    wrong = sign_in(client, teacher.email, "not the password at all")
    unknown = sign_in(client, "nobody@example.org", factories.PASSWORD)

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert NO_MATCH in text(response)
    assert not is_signed_in(client)
    assert [a.reason for a in attempts(db_session, email=teacher.email)] == ["wrong_password"]
    assert [a.reason for a in attempts(db_session, email="nobody@example.org")] == ["unknown_email"]
    failed = audit_events(db_session, "signin.failed")
    assert [e.actor for e in failed] == [teacher.email, "nobody@example.org"]
    assert "not the password" not in " ".join(e.detail for e in failed)


def test_deactivated_account_cannot_sign_in(
    client: FlaskClient, db_session: Session, org: object
) -> None:
    gone = factories.user(db_session, org, active=False)

    response = sign_in(client, gone.email)

    assert response.status_code == 401
    assert NO_MATCH in text(response)
    assert not is_signed_in(client)
    assert [a.reason for a in attempts(db_session, email=gone.email)] == ["deactivated"]


def test_invited_account_without_password_cannot_sign_in(
    client: FlaskClient, db_session: Session, org: object
) -> None:
    invited = factories.user(db_session, org, password_hash=None)

    response = sign_in(client, invited.email, "")
    assert response.status_code == 400, "an empty password is a form error"

    response = sign_in(client, invited.email, "anything at all 123")
    assert response.status_code == 401
    assert [a.reason for a in attempts(db_session, email=invited.email)] == ["no_password"]


def test_email_is_matched_without_case_or_spaces(client: FlaskClient, teacher: User) -> None:
    response = sign_in(client, "  " + teacher.email.upper() + " ")
    assert response.status_code == 302
    assert is_signed_in(client)


def test_empty_form_is_refused_without_recording_an_attempt(
    client: FlaskClient, db_session: Session
) -> None:
    response = sign_in(client, "", "")
    assert response.status_code == 400
    assert "This field is required." in text(response)
    assert attempts(db_session) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/staff", "/staff"),
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("javascript:alert(1)", "/"),
        ("/\\evil.example/phish", "/"),
        ("/\t/evil.example", "/"),
        ("/staff?tab=1", "/staff?tab=1"),
    ],
)
def test_next_only_goes_to_this_site(
    client: FlaskClient, admin: User, target: str, expected: str
) -> None:
    response = sign_in(client, admin.email, next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_signed_out_visitor_is_sent_to_sign_in_and_back(client: FlaskClient, admin: User) -> None:
    response = client.get("/staff")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/staff"
    assert sign_in(client, admin.email, next_path="/staff").headers["Location"] == "/staff"


# --- throttling ------------------------------------------------------------------------------


def fail(client: FlaskClient, email: str, times: int, *, ip: str = "127.0.0.1") -> None:
    for _ in range(times):
        assert sign_in(client, email, "wrong password here", ip=ip).status_code == 401


def test_throttled_after_max_failures(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User, clock: Clock
) -> None:
    limit = app.config["LOGIN_MAX_FAILURES"]
    window = app.config["LOGIN_WINDOW_MINUTES"] * 60
    fail(client, teacher.email, limit)

    # Even the right password is refused now, with a clear message and when to come back.
    response = sign_in(client, teacher.email)

    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= window + 1
    assert "Too many failed sign-ins. Try again in about 15 minute(s)." in text(response)
    assert not is_signed_in(client)
    reasons = [a.reason for a in attempts(db_session, email=teacher.email)]
    assert reasons == ["wrong_password"] * limit + ["throttled"]
    assert len(audit_events(db_session, "signin.failed")) == limit
    [throttled] = audit_events(db_session, "signin.throttled")
    assert throttled.actor == teacher.email and throttled.ip == "127.0.0.1"

    # Trying again while throttled neither signs in nor moves the time to come back.
    clock.advance(minutes=5)
    again = sign_in(client, teacher.email)
    assert again.status_code == 429
    assert int(again.headers["Retry-After"]) <= retry_after - 5 * 60 + 1

    clock.advance(seconds=retry_after - 5 * 60 - 30)
    assert sign_in(client, teacher.email).status_code == 429

    clock.advance(seconds=31)
    response = sign_in(client, teacher.email)
    assert response.status_code == 302, "throttling ends when the failures leave the window"
    assert is_signed_in(client)


def test_email_throttle_holds_across_addresses(
    app: Flask, client: FlaskClient, teacher: User
) -> None:
    limit = app.config["LOGIN_MAX_FAILURES"]
    for n in range(limit):
        fail(client, teacher.email, 1, ip=f"10.0.0.{n + 1}")
    assert sign_in(client, teacher.email, ip="10.9.9.9").status_code == 429


def test_email_throttle_leaves_other_people_alone(
    app: Flask, client: FlaskClient, teacher: User, admin: User
) -> None:
    fail(client, teacher.email, app.config["LOGIN_MAX_FAILURES"])
    assert sign_in(client, admin.email).status_code == 302


class TestPerAddressThrottle:
    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        return {"LOGIN_MAX_FAILURES": 2}

    def test_one_address_trying_many_emails_is_throttled(
        self, app: Flask, client: FlaskClient, db_session: Session, teacher: User
    ) -> None:
        per_ip = app.config["LOGIN_MAX_FAILURES"] * 4
        for n in range(per_ip):
            assert (
                sign_in(client, f"guess{n}@example.org", "x" * 12, ip="10.1.1.1").status_code == 401
            )

        response = sign_in(client, teacher.email, ip="10.1.1.1")
        assert response.status_code == 429
        assert "Retry-After" in response.headers
        assert attempts(db_session, ip="10.1.1.1")[-1].reason == "throttled"

        # The same person from another address is not held up by someone else's guessing.
        assert sign_in(client, teacher.email, ip="10.2.2.2").status_code == 302


def test_concurrent_sign_ins_on_sqlite_all_get_an_answer(tmp_path: Path) -> None:
    """`make run` serves SQLite from several threads; concurrent writers must queue, not fail."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    migrate.upgrade(url)
    app = make_app(url, tmp_path)
    with job_session(app) as session:
        org = factories.organisation(session)
        for n in range(6):
            factories.user(session, org, email=f"busy{n}@example.org")
    statuses: list[int] = []

    def person(n: int) -> None:
        client = app.test_client()
        for attempt in range(2):
            ok = attempt % 2 == 0
            password = factories.PASSWORD if ok else "wrong password here"
            response = sign_in(client, f"busy{n}@example.org", password, ip=f"10.3.{n}.{attempt}")
            statuses.append(response.status_code)

    threads = [threading.Thread(target=person, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [302] * 6 + [401] * 6
    with job_session(app) as session:
        assert list(verify(session)) == [], "the audit chain stayed intact"
