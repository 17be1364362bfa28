"""TOTP two-factor sign-in: enrolment, the code step, replay and recovery codes, throttling,
step-up, admin reset. Real database, real requests, the service clock moved with ``clock``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import sealing
from companion.access import ADMIN, LEAD, STAFF, allow
from companion.accounts import services, twofactor
from companion.accounts.models import StaffSession, User
from companion.accounts.twofactor_models import RecoveryCode
from companion.accounts.twofactor_views import (
    has_recent_second_factor,
    require_recent_second_factor,
)
from companion.audit.models import AuditEvent
from companion.db import Clock, utcnow

from . import factories
from .conftest import csrf_from
from .keys_helpers import foreign_sealer
from .staff_helpers import (
    attempts,
    audit_events,
    cookie_value,
    csrf_of,
    post_form,
    session_data,
    staff_session_row,
    text,
)
from .twofactor_helpers import KNOWN_SEED, NO_TWO_FACTOR, code_now, fresh_code

# Keys this server does not have.
OTHER_SEALER = foreign_sealer()

CODE_PAGE = "/login/code"
SETUP_PAGE = "/account/two-factor/setup"
CONFIRM_PAGE = "/account/two-factor/confirm"


def password_step(client: FlaskClient, email: str, *, next_path: str | None = None) -> Any:
    token = csrf_of(client, "/login")
    path = "/login" if next_path is None else f"/login?next={next_path}"
    return client.post(
        path, data={"email": email, "password": factories.PASSWORD, "csrf_token": token}
    )


def enter_code(client: FlaskClient, code: str, path: str = CODE_PAGE) -> Any:
    token = csrf_from(client.get(path).get_data(as_text=True))
    return client.post(path, data={"code": code, "csrf_token": token})


def location(response: Any) -> str:
    assert response.status_code in (302, 303), response.status_code
    return str(response.headers["Location"])


def secret_on_page(html: str) -> str:
    match = re.search(r'<code class="token">([A-Z2-7 ]+)</code>', html)
    assert match, "the set-up page shows the key for manual entry"
    return match.group(1).replace(" ", "")


def recovery_codes_on_page(html: str) -> list[str]:
    return re.findall(
        r'<code class="token">([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})<', html
    )


def enrol_through_pages(client: FlaskClient) -> tuple[str, list[str]]:
    page = client.get(SETUP_PAGE)
    assert page.status_code == 200
    seed = secret_on_page(text(page))
    done = client.post(
        SETUP_PAGE,
        data={"code": code_now(seed), "csrf_token": csrf_from(text(page))},
    )
    assert done.status_code == 200, text(done)
    return seed, recovery_codes_on_page(text(done))


# --- enrolment -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [LEAD, ADMIN])
def test_lead_and_admin_without_two_factor_can_do_nothing_but_enrol(
    app: Flask, client: FlaskClient, db_session: Session, org: Any, role: str
) -> None:
    person = factories.user(db_session, org, role=role, **NO_TWO_FACTOR)
    token = services.create_token(db_session, user=person, name="script")

    response = password_step(client, person.email, next_path="/courses/")

    assert location(response) == f"{SETUP_PAGE}?next=/courses/"
    # Every other staff page, the home page and the API send them back or refuse.
    for path in ("/", "/courses/", "/account/tokens", "/audit/"):
        assert location(client.get(path)).startswith(SETUP_PAGE), path
    refused = client.post(
        "/account/tokens", data={"name": "x", "csrf_token": csrf_of(client, SETUP_PAGE)}
    )
    assert location(refused).startswith(SETUP_PAGE)
    api = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 403
    assert api.json["error"]["code"] == "two_factor_required"
    db_session.refresh(person)
    assert services.list_tokens(db_session, person)[0].name == "script"  # nothing was created

    page = client.get(SETUP_PAGE)
    html = text(page)
    assert page.status_code == 200
    assert "<svg" in html and "<script" not in html
    assert "no-store" in page.headers["Cache-Control"]
    assert 'href="/courses/"' not in html  # no navigation to pages they cannot open yet
    seed = secret_on_page(html)

    # The seed waits, encrypted, until a code from it is entered.
    db_session.refresh(person)
    assert person.totp_enabled_at is None
    assert person.totp_secret_encrypted and seed not in person.totp_secret_encrypted
    assert twofactor.open_seed(person.totp_secret_encrypted) == seed
    # Reloading the page keeps the same seed (a phone may already have scanned it).
    assert secret_on_page(text(client.get(SETUP_PAGE))) == seed

    wrong = client.post(SETUP_PAGE, data={"code": "000000", "csrf_token": csrf_from(html)})
    assert wrong.status_code == 422
    assert "That code is not right" in text(wrong)
    db_session.refresh(person)
    assert person.totp_enabled_at is None

    done = client.post(
        f"{SETUP_PAGE}?next=/courses/", data={"code": code_now(seed), "csrf_token": csrf_from(html)}
    )
    assert done.status_code == 200
    codes = recovery_codes_on_page(text(done))
    assert len(codes) == len(set(codes)) == twofactor.RECOVERY_CODE_COUNT
    assert 'href="/courses/"' in text(done)  # continue to where the sign-in was going
    db_session.refresh(person)
    assert person.totp_enabled_at is not None
    stored = list(
        db_session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == person.id))
    )
    assert len(stored) == 10
    assert not any(code.replace("-", "") in h or code in h for code in codes for h in stored)
    assert [e.subject_id for e in audit_events(db_session, "twofactor.enrolled")] == [
        str(person.id)
    ]

    # Enrolled: a full session now, the API token works too.
    assert client.get("/courses/").status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    row = staff_session_row(db_session, session_data(app, client)["sid"])
    assert row is not None and row.second_factor_at is not None


def test_teacher_is_not_forced_but_may_enrol(
    app: Flask, client: FlaskClient, db_session: Session, teacher: User
) -> None:
    assert location(password_step(client, teacher.email)) == "/"
    assert client.get("/").status_code == 200

    seed, codes = enrol_through_pages(client)

    assert len(codes) == 10
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})
    assert location(password_step(client, teacher.email)).startswith(CODE_PAGE)
    assert location(enter_code(client, fresh_code(app, teacher.email))) == "/"


def test_setup_page_when_already_enrolled_goes_to_the_status_page(
    browser: Any, admin: User
) -> None:
    browser.login(admin.email)
    assert location(browser.client.get(SETUP_PAGE)) == "/account/two-factor"
    page = browser.client.get("/account/two-factor")
    assert "On since" in text(page)
    assert "unused recovery code" in text(page)


# --- the two-step sign-in --------------------------------------------------------------------


def test_sign_in_is_two_steps_and_half_way_reaches_nothing(
    app: Flask, client: FlaskClient, db_session: Session, admin: User
) -> None:
    response = password_step(client, admin.email, next_path="/staff")

    assert location(response) == f"{CODE_PAGE}?next=/staff"
    pending_sid = session_data(app, client)["sid"]
    for path in ("/staff", "/courses/", "/account/two-factor", CONFIRM_PAGE):
        assert location(client.get(path)).startswith(CODE_PAGE), path
    assert location(client.get("/")).startswith(CODE_PAGE)
    # Nothing changes through a half-signed-in session either.
    post = client.post(
        "/staff/invite",
        data={
            "name": "X",
            "email": "x@example.org",
            "role": "admin",
            "csrf_token": csrf_of(client, CODE_PAGE),
        },
    )
    assert location(post).startswith(CODE_PAGE)
    assert services.find_user_by_email(db_session, "x@example.org") is None
    page = client.get(CODE_PAGE)
    assert admin.email in text(page)
    assert "no-store" in page.headers["Cache-Control"]

    done = client.post(
        f"{CODE_PAGE}?next=/staff",
        data={"code": code_now(KNOWN_SEED), "csrf_token": csrf_from(text(page))},
    )

    assert location(done) == "/staff"
    assert client.get("/staff").status_code == 200
    # A new session id once both factors are in; the half-way one is over.
    full_sid = session_data(app, client)["sid"]
    assert full_sid != pending_sid
    old = staff_session_row(db_session, pending_sid)
    assert old is not None and old.ended_at is not None
    new = staff_session_row(db_session, full_sid)
    assert new is not None and new.second_factor_at is not None and new.ended_at is None
    assert [e.actor for e in audit_events(db_session, "twofactor.verified")] == [admin.email]


def test_wrong_code_is_refused_clearly_counted_and_recorded(
    client: FlaskClient, db_session: Session, admin: User
) -> None:
    password_step(client, admin.email)

    wrong = enter_code(client, "123456" if code_now(KNOWN_SEED) != "123456" else "654321")

    assert wrong.status_code == 401
    assert "That code is not right" in text(wrong)
    assert [a.reason for a in attempts(db_session, email=admin.email, succeeded=False)] == [
        "wrong_code"
    ]
    failed = audit_events(db_session, "twofactor.failed")
    assert len(failed) == 1 and '"reason": "wrong_code"' in failed[0].detail
    # Still half-way: nothing opens.
    assert location(client.get("/staff")).startswith(CODE_PAGE)
    for garbage in ("", "12345", "abcdef" * 20):
        assert enter_code(client, garbage).status_code in (400, 401)
    assert location(client.get("/staff")).startswith(CODE_PAGE)


def test_a_code_is_accepted_once(app: Flask, db_session: Session, admin: User) -> None:
    first, second = app.test_client(), app.test_client()
    code = code_now(KNOWN_SEED)
    password_step(first, admin.email)
    assert location(enter_code(first, code)) == "/"

    password_step(second, admin.email)
    replayed = enter_code(second, code)

    assert replayed.status_code == 401
    assert "already been used" in text(replayed)
    assert location(second.get("/staff")).startswith(CODE_PAGE)
    assert attempts(db_session, email=admin.email, succeeded=False)[-1].reason == "replayed_code"
    # An earlier step's code, still inside the drift window, is refused as well once a later
    # one was used: codes only move forward.
    earlier = code_now(KNOWN_SEED, offset_steps=-1)
    if earlier != code:
        assert "already been used" in text(enter_code(second, earlier))
    # The next step's code (the phone's next code) works.
    assert location(enter_code(second, code_now(KNOWN_SEED, offset_steps=1))) == "/"


def test_codes_outside_the_drift_window_are_refused(client: FlaskClient, admin: User) -> None:
    password_step(client, admin.email)
    for offset in (-3, -2, 2, 3):
        stale = code_now(KNOWN_SEED, offset_steps=offset)
        if stale in {code_now(KNOWN_SEED, offset_steps=o) for o in (-1, 0, 1)}:
            continue  # one in a million: the same digits happen to be valid now
        assert enter_code(client, stale).status_code == 401, offset


def test_recovery_code_works_once(app: Flask, db_session: Session, org: Any) -> None:
    lead = factories.user(db_session, org, role=LEAD, **NO_TWO_FACTOR)
    seed = twofactor.begin_enrolment(db_session, lead)
    codes = twofactor.confirm_enrolment(db_session, lead, code_now(seed), now=utcnow())
    first, second = app.test_client(), app.test_client()

    password_step(first, lead.email)
    used = enter_code(first, codes[3].upper().replace("-", " "))  # typed loosely still counts

    assert location(used) == "/"
    page = first.get("/courses/")
    assert page.status_code == 200
    assert "You used a recovery code; 9 left" in text(page)
    assert twofactor.remaining_recovery_codes(db_session, lead) == 9
    assert audit_events(db_session, "twofactor.recovery_used")[0].actor == lead.email

    password_step(second, lead.email)
    again = enter_code(second, codes[3])
    assert again.status_code == 401
    assert "already been used" in text(again)
    assert location(second.get("/courses/")).startswith(CODE_PAGE)
    assert (
        attempts(db_session, email=lead.email, succeeded=False)[-1].reason == "used_recovery_code"
    )
    assert location(enter_code(second, codes[4])) == "/"


def test_wrong_codes_are_throttled_like_wrong_passwords(
    app: Flask, client: FlaskClient, db_session: Session, admin: User, clock: Clock
) -> None:
    password_step(client, admin.email)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert enter_code(client, "000000").status_code == 401

    throttled = enter_code(client, fresh_code(app, admin.email))

    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many" in text(throttled)
    assert location(client.get("/staff")).startswith(CODE_PAGE)
    # The password step is throttled for this account too.
    other = app.test_client()
    assert password_step(other, admin.email).status_code == 429

    clock.advance(minutes=app.config["LOGIN_WINDOW_MINUTES"] + 1)
    retry = app.test_client()
    password_step(retry, admin.email)
    assert location(enter_code(retry, fresh_code(app, admin.email))) == "/"


def test_half_way_sign_in_expires_and_can_be_cancelled(
    app: Flask, client: FlaskClient, db_session: Session, admin: User, clock: Clock
) -> None:
    password_step(client, admin.email)
    sid = session_data(app, client)["sid"]
    clock.advance(twofactor.PENDING_SIGN_IN_TTL + dt.timedelta(seconds=1))

    assert location(client.get(CODE_PAGE)) == "/login"
    row = staff_session_row(db_session, sid)
    assert row is not None and row.end_reason == "second_factor_timeout"

    other = app.test_client()
    password_step(other, admin.email)
    sid = session_data(app, other)["sid"]
    cancelled = other.post("/login/code/cancel", data={"csrf_token": csrf_of(other, CODE_PAGE)})
    assert location(cancelled) == "/login"
    assert staff_session_row(db_session, sid).ended_at is not None  # type: ignore[union-attr]
    assert cookie_value(other) is None or "sid" not in session_data(app, other)


def test_seed_that_cannot_be_read_gives_a_clear_message(
    client: FlaskClient, db_session: Session, org: Any
) -> None:
    person = factories.user(
        db_session,
        org,
        role=ADMIN,
        totp_secret_encrypted=twofactor.seal_seed(KNOWN_SEED, OTHER_SEALER),
        totp_enabled_at=utcnow(),
    )
    password_step(client, person.email)
    response = enter_code(client, code_now(KNOWN_SEED))
    assert response.status_code == 409
    assert "Ask an admin to reset your two-factor sign-in" in text(response)


# --- step-up ---------------------------------------------------------------------------------


@pytest.fixture
def step_up_app(app: Flask) -> Flask:
    """Two tiny routes behind the step-up check: a page and an API operation."""

    @allow(LEAD, ADMIN)
    @require_recent_second_factor()
    def sensitive() -> Any:
        return "the sensitive page"

    @allow(*STAFF)
    @require_recent_second_factor(dt.timedelta(minutes=1))
    def sensitive_form() -> Any:
        return "sent"

    @allow(LEAD, ADMIN)
    @require_recent_second_factor()
    def sensitive_api() -> Any:
        return jsonify({"ok": True})

    @allow(*STAFF)
    def recent() -> Any:
        return jsonify({"recent": has_recent_second_factor()})

    app.add_url_rule("/test/sensitive", view_func=sensitive)
    app.add_url_rule("/test/sensitive-form", view_func=sensitive_form, methods=["POST"])
    app.add_url_rule("/api/v1/test/sensitive", view_func=sensitive_api)
    app.add_url_rule("/test/recent", view_func=recent)
    return app


def test_step_up_asks_for_a_fresh_code_after_five_minutes(
    step_up_app: Flask, browser: Any, db_session: Session, lead: User, clock: Clock
) -> None:
    client = browser.client
    browser.login(lead.email)
    assert client.get("/test/sensitive").get_data(as_text=True) == "the sensitive page"
    assert client.get("/test/recent").json == {"recent": True}

    clock.advance(minutes=5, seconds=1)
    assert client.get("/test/recent").json == {"recent": False}
    response = client.get("/test/sensitive?x=1")
    assert location(response) == f"{CONFIRM_PAGE}?next=/test/sensitive?x%3D1"

    wrong = enter_code(client, "000000", path=location(response))
    assert wrong.status_code == 401
    assert location(client.get("/test/sensitive")).startswith(CONFIRM_PAGE)

    token = csrf_from(text(client.get(location(response))))
    back = client.post(
        location(response), data={"code": fresh_code(step_up_app, lead.email), "csrf_token": token}
    )
    assert location(back) == "/test/sensitive?x=1"
    assert client.get("/test/sensitive").get_data(as_text=True) == "the sensitive page"
    assert len(audit_events(db_session, "twofactor.step_up")) == 1

    clock.advance(minutes=6)
    assert location(client.get("/test/sensitive")).startswith(CONFIRM_PAGE)


def test_step_up_on_a_form_returns_to_the_page_the_form_was_on(
    step_up_app: Flask, browser: Any, admin: User, clock: Clock
) -> None:
    browser.login(admin.email)
    clock.advance(minutes=2)
    token = csrf_of(browser.client, "/")
    response = browser.client.post(
        "/test/sensitive-form",
        data={"csrf_token": token},
        headers={"Referer": "http://localhost/courses?page=2"},
    )
    assert location(response) == f"{CONFIRM_PAGE}?next=/courses?page%3D2"
    elsewhere = browser.client.post(
        "/test/sensitive-form",
        data={"csrf_token": token},
        headers={"Referer": "http://evil.example/phish"},
    )
    assert location(elsewhere) == f"{CONFIRM_PAGE}?next=/"


def test_step_up_refuses_api_tokens(
    step_up_app: Flask, client: FlaskClient, db_session: Session, lead: User
) -> None:
    token = services.create_token(db_session, user=lead, name="script")
    response = client.get("/api/v1/test/sensitive", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "step_up_required"


def test_step_up_for_someone_without_two_factor_leads_to_set_up(
    step_up_app: Flask, browser: Any, teacher: User
) -> None:
    browser.login(teacher.email)
    response = browser.client.post(
        "/test/sensitive-form", data={"csrf_token": csrf_of(browser.client, "/")}
    )
    assert location(browser.client.get(location(response))).startswith(SETUP_PAGE)


def test_service_check_for_a_recent_second_factor(db_session: Session, lead: User) -> None:
    now = utcnow()
    row = StaffSession(user_id=lead.id, token_hash="x" * 64, created_at=now, last_seen_at=now)
    db_session.add(row)
    db_session.flush()
    with pytest.raises(twofactor.StepUpRequired):
        twofactor.check_recent_second_factor(row, now=now)
    row.second_factor_at = now
    twofactor.check_recent_second_factor(row, now=now + dt.timedelta(minutes=5))
    with pytest.raises(twofactor.StepUpRequired):
        twofactor.check_recent_second_factor(row, now=now + dt.timedelta(minutes=5, seconds=1))
    with pytest.raises(twofactor.StepUpRequired):
        twofactor.check_recent_second_factor(None, now=now)


# --- managing one's own second factor ---------------------------------------------------------


def test_new_recovery_codes_replace_the_old_ones(
    app: Flask, browser: Any, db_session: Session, org: Any
) -> None:
    lead = factories.user(db_session, org, role=LEAD, **NO_TWO_FACTOR)
    seed = twofactor.begin_enrolment(db_session, lead)
    old = twofactor.confirm_enrolment(db_session, lead, code_now(seed), now=utcnow())
    browser.login(lead.email)

    response = post_form(
        browser.client, "/account/two-factor/recovery-codes", form_page="/account/two-factor"
    )

    new = recovery_codes_on_page(text(response))
    assert len(new) == 10 and not set(new) & set(old)
    assert len(audit_events(db_session, "twofactor.recovery_regenerated")) == 1
    other = app.test_client()
    password_step(other, lead.email)
    assert enter_code(other, old[0]).status_code == 401
    assert location(enter_code(other, new[0])) == "/"


def test_regenerating_codes_needs_a_recent_code(
    browser: Any, db_session: Session, admin: User, clock: Clock
) -> None:
    browser.login(admin.email)
    clock.advance(minutes=10)
    response = post_form(
        browser.client, "/account/two-factor/recovery-codes", form_page="/account/two-factor"
    )
    assert location(response).startswith(CONFIRM_PAGE)
    assert audit_events(db_session, "twofactor.recovery_regenerated") == []


def test_teacher_can_turn_it_off_and_a_lead_is_sent_back_to_set_up(
    browser: Any, app: Flask, db_session: Session, lead: User, teacher: User
) -> None:
    client = browser.client
    client.get("/")
    browser.login(teacher.email)
    enrol_through_pages(client)
    off = post_form(client, "/account/two-factor/disable", form_page="/account/two-factor")
    assert location(off) == "/account/two-factor"
    db_session.refresh(teacher)
    assert not twofactor.is_enabled(teacher)

    lead_client = app.test_client()
    from .staff_helpers import sign_in

    sign_in(lead_client, lead.email)
    moved = post_form(lead_client, "/account/two-factor/disable", form_page="/account/two-factor")
    assert location(moved) == SETUP_PAGE
    assert location(lead_client.get("/courses/")).startswith(SETUP_PAGE)
    assert len(audit_events(db_session, "twofactor.disabled")) == 2


def test_turning_two_factor_on_or_off_signs_out_the_other_browsers(
    app: Flask, browser: Any, db_session: Session, teacher: User
) -> None:
    from .staff_helpers import sign_in

    elsewhere = app.test_client()
    sign_in(elsewhere, teacher.email)
    browser.login(teacher.email)
    enrol_through_pages(browser.client)
    # The other browser had only the password; it does not become a two-factor session.
    assert location(elsewhere.get("/courses/")).startswith("/login")

    half_way = app.test_client()
    assert location(password_step(half_way, teacher.email)).startswith(CODE_PAGE)
    post_form(browser.client, "/account/two-factor/disable", form_page="/account/two-factor")

    # Waiting at the code step, it must not slip in now that no code is asked for.
    assert location(half_way.get("/courses/")).startswith("/login")
    assert browser.client.get("/courses/").status_code == 200


# --- admin reset -----------------------------------------------------------------------------


def test_admin_resets_a_lead_who_lost_their_phone(
    app: Flask, browser: Any, db_session: Session, admin: User, lead: User
) -> None:
    from .staff_helpers import sign_in

    lead_client = app.test_client()
    sign_in(lead_client, lead.email)
    assert lead_client.get("/courses/").status_code == 200
    browser.login(admin.email)

    response = post_form(
        browser.client,
        f"/admin/security/staff/{lead.id}/reset-two-factor",
        form_page="/admin/security",
    )

    assert location(response) == "/admin/security"
    assert "must set it up again" in text(browser.client.get("/admin/security"))
    db_session.refresh(lead)
    assert lead.totp_secret_encrypted is None and lead.totp_enabled_at is None
    assert twofactor.remaining_recovery_codes(db_session, lead) == 0
    assert location(lead_client.get("/courses/")).startswith("/login")  # signed out everywhere
    events = audit_events(db_session, "twofactor.reset")
    assert [(e.actor, e.subject_id) for e in events] == [(admin.email, str(lead.id))]
    # At the next sign-in the lead has to set it up again.
    assert location(password_step(lead_client, lead.email)).startswith(SETUP_PAGE)


def test_reset_refuses_oneself_other_organisations_and_non_admins(
    app: Flask, browser: Any, db_session: Session, admin: User, lead: User, org: Any
) -> None:
    other_org = factories.organisation(db_session)
    stranger = factories.user(db_session, other_org, role=LEAD)
    browser.login(admin.email)

    own = post_form(
        browser.client,
        f"/admin/security/staff/{admin.id}/reset-two-factor",
        form_page="/admin/security",
    )
    assert location(own) == "/admin/security"
    assert "Use your own two-factor page" in text(browser.client.get("/admin/security"))
    post_form(
        browser.client,
        f"/admin/security/staff/{stranger.id}/reset-two-factor",
        form_page="/admin/security",
    )
    assert "No such staff member" in text(browser.client.get("/admin/security"))
    db_session.refresh(admin)
    db_session.refresh(stranger)
    assert twofactor.is_enabled(admin) and twofactor.is_enabled(stranger)

    from .staff_helpers import sign_in

    lead_client = app.test_client()
    sign_in(lead_client, lead.email)
    token = csrf_of(lead_client, "/")
    refused = lead_client.post(
        f"/admin/security/staff/{admin.id}/reset-two-factor", data={"csrf_token": token}
    )
    assert refused.status_code == 403
    assert audit_events(db_session, "twofactor.reset") == []


def test_reset_needs_a_recent_code(
    browser: Any, db_session: Session, admin: User, lead: User, clock: Clock
) -> None:
    browser.login(admin.email)
    clock.advance(minutes=6)
    response = browser.client.post(
        f"/admin/security/staff/{lead.id}/reset-two-factor",
        data={"csrf_token": csrf_of(browser.client, "/admin/security")},
        headers={"Referer": "http://localhost/admin/security"},
    )
    assert location(response) == f"{CONFIRM_PAGE}?next=/admin/security"
    db_session.refresh(lead)
    assert twofactor.is_enabled(lead)


def test_nothing_secret_is_stored_in_clear(app: Flask, db_session: Session, org: Any) -> None:
    person = factories.user(db_session, org, role=ADMIN, **NO_TWO_FACTOR)
    seed = twofactor.begin_enrolment(db_session, person)
    codes = twofactor.confirm_enrolment(db_session, person, code_now(seed), now=utcnow())
    stored = db_session.execute(select(RecoveryCode.key_id, RecoveryCode.code_hash)).all()
    assert seed not in (person.totp_secret_encrypted or "")
    for code in codes:
        assert twofactor.hash_recovery_code(code) in stored
        assert all(code.replace("-", "") not in value for _, value in stored)
    # The pepper comes from the sealing key: a dump alone cannot test guesses.
    guess = OTHER_SEALER.keyed_hash(sealing.Purpose.RECOVERY_CODE, codes[0].replace("-", ""))
    assert guess[1] not in {value for _, value in stored}


# --- in a real browser -----------------------------------------------------------------------


@pytest.mark.browser
def test_admin_signs_in_with_a_code_in_chromium(
    live_server: Any, chromium_launch_options: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{live_server}/login")
            page.get_by_label("Email").fill("admin@example.org")
            page.get_by_label("Password").fill(live_server.passwords["admin@example.org"])
            page.get_by_role("button", name="Sign in").click()

            expect(page.locator("h1")).to_have_text("Enter your code")
            page.get_by_label("Code from your app, or a recovery code").fill(
                live_server.totp_code("admin@example.org")
            )
            page.get_by_role("button", name="Continue").click()
            expect(page.locator("h1")).to_have_text("Hello, Avery Admin")

            page.goto(f"{live_server}/admin/security")
            expect(page.locator("h1")).to_have_text("Security review")
            assert [m for m in console if "Content Security Policy" in m] == []
        finally:
            browser.close()


@pytest.mark.browser
def test_set_up_page_shows_the_qr_code_without_breaking_the_csp(
    live_server: Any, chromium_launch_options: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{live_server}/login")
            page.get_by_label("Email").fill("teacher@example.org")
            page.get_by_label("Password").fill(live_server.passwords["teacher@example.org"])
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{live_server}/account/two-factor/setup")

            expect(page.locator("h1")).to_have_text("Set up two-factor sign-in")
            box = page.locator("svg.qr").bounding_box()
            assert box is not None and box["width"] > 100
            assert [m for m in console if "Content Security Policy" in m] == []
        finally:
            browser.close()


def test_command_line_reset_for_a_locked_out_only_admin(tmp_path: Any) -> None:
    from companion.config import SETTINGS
    from companion.db import job_session

    from .test_cli import Cli
    from .twofactor_helpers import enrolled_fields

    folder = tmp_path / "instance"
    # Hermetic, as in test_cli: no setting leaks in from the surrounding environment.
    env: dict[str, Any] = {s.env: None for s in SETTINGS}
    env["COMPANION_INSTANCE_PATH"] = str(folder)
    cli = Cli(folder, env)
    cli("init")
    cli("db", "upgrade")
    cli("demo")
    app = cli.app()
    with app.app_context(), job_session(app) as session:
        person = services.find_user_by_email(session, "admin@example.org")
        assert person is not None
        for name, value in enrolled_fields(sealer=sealing.sealer_for(app)).items():
            setattr(person, name, value)

    result = cli("user", "reset-two-factor", "Admin@Example.org")

    assert "Two-factor sign-in of admin@example.org is reset" in result.output
    with app.app_context(), job_session(app) as session:
        person = services.find_user_by_email(session, "admin@example.org")
        assert person is not None and not twofactor.is_enabled(person)
        events = list(
            session.scalars(select(AuditEvent).where(AuditEvent.kind == "twofactor.reset"))
        )
        assert [e.actor for e in events] == ["command line"]
    again = cli("user", "reset-two-factor", "admin@example.org", ok=False)
    assert again.exit_code == 1 and "has not set up two-factor" in again.output
    unknown = cli("user", "reset-two-factor", "nobody@example.org", ok=False)
    assert unknown.exit_code == 1 and "No staff account for nobody@example.org" in unknown.output
