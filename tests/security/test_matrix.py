"""Issue 6, item 6: every route and API operation against every kind of caller.

The routes come from the app's URL map, so a route added anywhere is in this test at once, and
the test fails, naming it, until its expected answers are written into ``EXPECT`` below.

Callers: anonymous; the parent of family A (pointed at family B's objects); teacher X (pointed at
course Y's objects); the safeguarding lead; the admin; a deactivated teacher (their old browser
session and their API token); a revoked API token. Path parameters are real ids of the "other"
party's objects (course Y, its class, family B and its parent, a recording of course Y and its
file, the concern about that class and its hold, teacher Y's account and API token, a message to
family B's parent, a Zoom meeting of course Y, the lead's recording grant from another browser),
so an object-level check that is missing shows up as a leak, not as a 404 for a made-up id.

Answers: ``ok`` (got past access and object checks: a page, a redirect that is not the sign-in,
or a domain answer such as 400/409/422 to the empty form), ``login`` (302 to the sign-in page),
401, 403 or 404. A refused answer must never contain family B's child, family B's parent or
course Y's title; neither may an allowed answer to teacher X or parent A (they see only their
own course and family).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import Rule as UrlRule

from companion import mail
from companion.access import rule_for
from companion.accounts import services as accounts
from companion.db import utcnow
from companion.evidence.models import ZoomMeeting
from companion.zoom import EXTENSION_KEY, ZoomClient

from ..factories import meeting_body
from ..zoom_sandbox import SandboxZoom
from . import world as w

CALLERS = ("anonymous", "parent_a", "teacher_x", "lead", "admin", "deactivated", "revoked")
OK, LOGIN = "ok", "login"

# (method, rule) -> the answer for the callers whose answer depends on the route:
#   t = teacher X, l = lead, a = admin (staff routes); p = parent A (family routes);
#   public routes give one answer (or one per caller as "caller=answer").
# Everybody else follows from the route's declaration (see ``derived``).
EXPECT: dict[str, str] = {
    "GET /": "all=login teacher_x=ok lead=ok admin=ok",
    "GET /account/tokens": "t=ok l=ok a=ok",
    "POST /account/tokens": "t=ok l=ok a=ok",
    "POST /account/tokens/<int:token_id>/revoke": "t=404 l=404 a=ok",
    "GET /account/two-factor": "t=ok l=ok a=ok",
    "GET /account/two-factor/confirm": "t=ok l=ok a=ok",
    "POST /account/two-factor/confirm": "t=ok l=ok a=ok",
    "POST /account/two-factor/disable": "t=ok l=ok a=ok",
    "POST /account/two-factor/recovery-codes": "t=ok l=ok a=ok",
    "GET /account/two-factor/setup": "t=ok l=ok a=ok",
    "POST /account/two-factor/setup": "t=ok l=ok a=ok",
    "GET /admin/agreement/": "t=403 l=403 a=ok",
    "POST /admin/agreement/": "t=403 l=403 a=ok",
    "GET /admin/organisation/": "t=403 l=403 a=ok",
    "POST /admin/organisation/": "t=403 l=403 a=ok",
    "GET /admin/outbox/": "t=403 l=403 a=ok",
    "GET /admin/outbox/<int:message_id>": "t=403 l=403 a=ok",
    "POST /admin/outbox/<int:message_id>/resend": "t=403 l=403 a=ok",
    "GET /admin/security": "t=403 l=403 a=ok",
    "POST /admin/security": "t=403 l=403 a=ok",
    "POST /admin/security/staff/<int:user_id>/reset-two-factor": "t=403 l=403 a=ok",
    "GET /api/v1/classes/<int:class_id>/audio-only": "t=404 l=ok a=ok",
    "GET /api/v1/courses": "t=ok l=ok a=ok",
    "POST /api/v1/courses": "t=ok l=403 a=ok",
    "GET /api/v1/courses/<int:course_id>": "t=404 l=ok a=ok",
    "PATCH /api/v1/courses/<int:course_id>": "t=404 l=403 a=ok",
    "POST /api/v1/courses/<int:course_id>/cancel": "t=404 l=403 a=ok",
    "GET /api/v1/courses/<int:course_id>/classes": "t=404 l=ok a=ok",
    "POST /api/v1/courses/<int:course_id>/classes/<int:class_id>/cancel": "t=404 l=403 a=ok",
    "POST /api/v1/courses/<int:course_id>/classes/<int:class_id>/move": "t=404 l=403 a=ok",
    "POST /api/v1/courses/<int:course_id>/passcode": "t=404 l=ok a=ok",
    "POST /api/v1/courses/<int:course_id>/retry": "t=404 l=403 a=ok",
    "POST /api/v1/courses/<int:course_id>/verify": "t=404 l=ok a=ok",
    "GET /api/v1/families": "t=ok l=ok a=ok",
    "POST /api/v1/families": "t=ok l=403 a=ok",
    "GET /api/v1/families/<int:family_id>": "t=404 l=ok a=ok",
    "POST /api/v1/families/<int:family_id>/contacts/<int:contact_id>/resend-link": "t=404 l=ok a=ok",  # noqa: E501
    "POST /api/v1/families/<int:family_id>/contacts/<int:contact_id>/revoke-link": "t=404 l=ok a=ok",  # noqa: E501
    "POST /api/v1/families/<int:family_id>/withdraw": "t=404 l=403 a=ok",
    "GET /api/v1/me": "t=ok l=ok a=ok",
    "GET /api/v1/openapi.json": "all=ok",
    "GET /audit/": "t=403 l=ok a=ok",
    "GET /audit/export.csv": "t=403 l=ok a=ok",
    "GET /concerns/": "t=ok l=ok a=403",
    "GET /concerns/<int:concern_id>": "t=404 l=ok a=403",
    "POST /concerns/holds/<int:hold_id>/release": "t=403 l=ok a=403",
    "GET /concerns/new": "t=ok l=ok a=403",
    "POST /concerns/new": "t=ok l=ok a=403",
    "GET /courses/": "t=ok l=ok a=ok",
    "GET /courses/<int:course_id>": "t=404 l=ok a=ok",
    "GET /courses/<int:course_id>/cancel": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/cancel": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/classes/<int:class_id>/admit": "t=404 l=ok a=ok",
    "POST /courses/<int:course_id>/classes/<int:class_id>/cancel": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/classes/<int:class_id>/evidence-pack": "t=403 l=ok a=403",
    "GET /courses/<int:course_id>/classes/<int:class_id>/move": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/classes/<int:class_id>/move": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/classes/<int:class_id>/record": "t=404 l=ok a=ok",
    "GET /courses/<int:course_id>/edit": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/edit": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/families": "t=404 l=ok a=ok",
    "GET /courses/<int:course_id>/families/<int:family_id>": "t=404 l=ok a=ok",
    "POST /courses/<int:course_id>/families/<int:family_id>/contacts/<int:contact_id>/resend": "t=404 l=ok a=ok",  # noqa: E501
    "POST /courses/<int:course_id>/families/<int:family_id>/contacts/<int:contact_id>/revoke": "t=404 l=ok a=ok",  # noqa: E501
    "GET /courses/<int:course_id>/families/<int:family_id>/contacts/<int:position>/edit": "t=404 l=403 a=ok",  # noqa: E501
    "POST /courses/<int:course_id>/families/<int:family_id>/contacts/<int:position>/edit": "t=404 l=403 a=ok",  # noqa: E501
    "POST /courses/<int:course_id>/families/<int:family_id>/retry": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/families/<int:family_id>/withdraw": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/families/<int:family_id>/withdraw": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/families/import": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/families/import": "t=404 l=403 a=ok",
    "GET /courses/<int:course_id>/families/import/template.csv": "t=404 l=ok a=ok",
    "GET /courses/<int:course_id>/families/new": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/families/new": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/passcode": "t=404 l=ok a=ok",
    "POST /courses/<int:course_id>/retry": "t=404 l=403 a=ok",
    "POST /courses/<int:course_id>/start": "t=404 l=403 a=403",
    "POST /courses/<int:course_id>/verify": "t=404 l=ok a=ok",
    "GET /courses/<int:course_id>/zoom-state": "t=404 l=ok a=ok",
    "GET /courses/new": "t=ok l=403 a=ok",
    "POST /courses/new": "t=ok l=403 a=ok",
    "GET /evidence/": "t=403 l=ok a=403",
    "GET /evidence/families/": "t=403 l=403 a=ok",
    "GET /evidence/families/<int:family_id>": "t=403 l=403 a=ok",
    "POST /evidence/families/<int:family_id>/erase": "t=403 l=403 a=ok",
    "POST /evidence/families/<int:family_id>/export": "t=403 l=403 a=ok",
    "GET /evidence/meetings/<int:meeting_id>": "t=403 l=ok a=403",
    "GET /evidence/settings": "t=403 l=403 a=ok",
    "POST /evidence/settings": "t=403 l=403 a=ok",
    "GET /evidence/verify": "t=403 l=ok a=403",
    "POST /evidence/verify": "t=403 l=ok a=403",
    "GET /f/": "p=ok",
    "GET /f/<token>": "all=404",
    "POST /f/agreement": "p=ok",
    "POST /f/audio-only": "p=ok",
    "GET /f/calendar.ics": "p=ok",
    "POST /f/classes/<int:class_id>/adult-present": "p=404",
    "POST /f/classes/<int:class_id>/audio-only": "p=404",
    "POST /f/sign-out": "p=ok",
    "GET /families/": "t=ok l=ok a=ok",
    "GET /healthz": "all=ok",
    "GET /readyz": "all=ok",
    # Off by default; with its token set, only the token opens it (tests/scale/test_metrics.py).
    "GET /metrics": "all=404",
    "GET /invite/<token>": "all=404",
    "POST /invite/<token>": "all=404",
    "GET /login": "all=ok",
    "POST /login": "all=ok",
    "GET /login/code": "all=login teacher_x=ok lead=ok admin=ok",
    "POST /login/code": "all=login teacher_x=ok lead=ok admin=ok",
    "POST /login/code/cancel": "all=login",
    "POST /logout": "t=login l=login a=login",
    "GET /recordings/": "t=403 l=ok a=403",
    "GET /recordings/<uuid:recording_id>": "t=403 l=ok a=403",
    "POST /recordings/<uuid:recording_id>/files/<uuid:file_id>/access": "t=403 l=ok a=403",
    "POST /recordings/<uuid:recording_id>/hold": "t=403 l=ok a=403",
    "GET /recordings/open/<token>": "t=403 l=404 a=403",
    "GET /recordings/open/<token>/file": "t=403 l=404 a=403",
    "GET /safeguarding/": "t=403 l=ok a=403",
    "GET /safeguarding/concerns/<int:concern_id>": "t=403 l=ok a=403",
    "POST /safeguarding/concerns/<int:concern_id>/disclosures": "t=403 l=ok a=403",
    "POST /safeguarding/concerns/<int:concern_id>/notes": "t=403 l=ok a=403",
    "POST /safeguarding/concerns/<int:concern_id>/outcome": "t=403 l=ok a=403",
    "POST /safeguarding/concerns/<int:concern_id>/tell-family": "t=403 l=ok a=403",
    "GET /safeguarding/disclosures": "t=403 l=ok a=403",
    "POST /safeguarding/disclosures": "t=403 l=ok a=403",
    "GET /safeguarding/recordings": "t=403 l=ok a=403",
    "GET /staff": "t=403 l=403 a=ok",
    "POST /staff/<int:user_id>/deactivate": "t=403 l=403 a=ok",
    "POST /staff/<int:user_id>/reactivate": "t=403 l=403 a=ok",
    "POST /staff/<int:user_id>/reinvite": "t=403 l=403 a=ok",
    "POST /staff/<int:user_id>/role": "t=403 l=403 a=ok",
    "GET /staff/invite": "t=403 l=403 a=ok",
    "POST /staff/invite": "t=403 l=403 a=ok",
    "GET /static/<path:filename>": "all=ok",
    "POST /zoom/webhook": "all=401",
}


def derived(kind: str, path: str, caller: str) -> str | None:
    """The answer that follows from the declaration alone (None: look it up in EXPECT)."""
    api = path.startswith("/api/")
    if kind == "family":
        return None if caller == "parent_a" else "401"
    if kind == "staff":
        if caller in ("anonymous", "parent_a", "deactivated", "revoked"):
            return "401" if api else LOGIN
        return None
    return None


def expected(entry: str, caller: str) -> str:
    short = {"teacher_x": "t", "lead": "l", "admin": "a", "parent_a": "p"}.get(caller, caller)
    parts = dict(p.split("=", 1) for p in entry.split() if "=" in p)
    if short in parts:
        return parts[short]
    if caller in parts:
        return parts[caller]
    if "all" in parts:
        return parts["all"]
    raise KeyError(f"no answer for {caller} in {entry!r}")


@dataclass
class Caller:
    name: str
    client: FlaskClient
    headers: dict[str, str]
    csrf: str
    family_token: str = ""


@pytest.fixture
def zoom(app: Flask) -> Iterator[ZoomClient]:
    sandbox = SandboxZoom()
    app.extensions[EXTENSION_KEY] = sandbox.client
    yield sandbox.client
    sandbox.close()


@pytest.fixture
def world(
    app: Flask, db_session: Session, org: Any, admin: Any, lead: Any, zoom: ZoomClient
) -> w.World:
    found = w.build(db_session, app, org, admin, lead)
    for course in (found.course_x, found.course_y):
        start = utcnow() + dt.timedelta(days=1)
        body = {
            **meeting_body(start),
            "type": 8,
            "recurrence": {"type": 2, "weekly_days": "2", "end_times": 2},
        }
        course.zoom_meeting_id = int(zoom.create_meeting("me", body)["id"])
    db_session.flush()
    return found


def values_for(app: Flask, db_session: Session, world: w.World) -> dict[str, Any]:
    with app.test_request_context():
        message = mail.send(
            db_session,
            to_address=w.SECRET_PARENT,
            to_name="Quincy Beta",
            subject=f"{w.SECRET_CHILD}'s class",
            body=f"About {w.SECRET_CHILD} {w.SECRET_CHILD_LAST}",
            kind="test",
            organisation_id=world.org.id,
        )
    meeting = ZoomMeeting(
        zoom_uuid=secrets.token_urlsafe(12),
        zoom_meeting_id=world.course_y.zoom_meeting_id or 1,
        organisation_id=world.org.id,
        course_id=world.course_y.id,
        class_session_id=world.class_y.id,
        topic=w.SECRET_COURSE,
        first_event_at=utcnow(),
        last_event_at=utcnow(),
    )
    db_session.add(meeting)
    db_session.flush()
    # The parent's form names the agreement version they accept; ids are not 1 on every database
    # (PostgreSQL's sequences are not rolled back with the test's transaction).
    from companion.families import agreement

    FAMILY_FORM["agreement_id"] = str(agreement.current(db_session, world.org, now=utcnow()).id)
    return {
        "course_id": world.course_y.id,
        "class_id": world.class_y.id,
        "family_id": world.family_b.id,
        "contact_id": world.family_b.contacts[0].id,
        "position": 1,
        "concern_id": world.concern_y.id,
        "hold_id": world.hold_y.id,
        "recording_id": world.recording_y.id,
        "file_id": world.recording_y.files[0].id,
        "user_id": world.teacher_y.id,
        "token_id": world.token_y_id,
        "message_id": getattr(message, "id", None) or message,
        "meeting_id": meeting.id,
        "filename": "companion.css",
        "recording_token": w.foreign_grant(db_session, world),
        "link_token": secrets.token_urlsafe(32),
    }


def build_path(rule: UrlRule, values: dict[str, Any]) -> str:
    args = {}
    for name in rule.arguments:
        if name == "token":
            args[name] = values[
                "recording_token" if rule.rule.startswith("/recordings/") else "link_token"
            ]
        else:
            assert name in values, f"{rule.rule}: no real object for <{name}>; add one"
            args[name] = values[name]
    built = rule.build(args, append_unknown=False)
    assert built is not None, rule.rule
    return built[1]


def routes(app: Flask) -> Iterator[tuple[str, UrlRule, str]]:
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        kind = rule_for(app, rule.endpoint)
        assert kind is not None, f"{rule.rule} declares no access rule"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, rule, kind.kind


def key(method: str, rule: UrlRule) -> str:
    return f"{method} {rule.rule}"


def test_every_route_has_its_expected_answers(app: Flask) -> None:
    missing = [key(m, r) for m, r, _ in routes(app) if key(m, r) not in EXPECT]
    stale = sorted(set(EXPECT) - {key(m, r) for m, r, _ in routes(app)})
    assert missing == [], "routes without expected answers in tests/security/test_matrix.py: " + (
        ", ".join(missing)
    )
    assert stale == [], "expected answers for routes that no longer exist: " + ", ".join(stale)


def make_callers(app: Flask, db_session: Session, world: w.World) -> dict[str, Caller]:
    from ..staff_helpers import csrf_of

    callers: dict[str, Caller] = {}
    anon = app.test_client()
    callers["anonymous"] = Caller("anonymous", anon, {}, csrf_of(anon, "/login"))
    parent = w.parent_client(app, db_session, world.family_a)
    page = parent.get("/f/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    callers["parent_a"] = Caller("parent_a", parent, {}, csrf_of(parent, "/login"), token)
    for name, person in (
        ("teacher_x", world.teacher_x),
        ("lead", world.lead),
        ("admin", world.admin),
    ):
        client = w.staff_client(app, person)
        raw = accounts.create_token(db_session, user=person, name="matrix")
        callers[name] = Caller(
            name, client, {"Authorization": f"Bearer {raw}"}, csrf_of(client, "/")
        )
    # A teacher signed in and holding a token, then deactivated by the admin.
    gone = w.factories.user(db_session, world.org, role="teacher", name="Gone Teacher")
    gone_client = w.staff_client(app, gone)
    gone_csrf = csrf_of(gone_client, "/")
    gone_token = accounts.create_token(db_session, user=gone, name="old script")
    accounts.deactivate(db_session, actor=world.admin, user_id=gone.id, now=utcnow())
    callers["deactivated"] = Caller(
        "deactivated", gone_client, {"Authorization": f"Bearer {gone_token}"}, gone_csrf
    )
    # The lead's token, revoked.
    raw = accounts.create_token(db_session, user=world.lead, name="revoked")
    from sqlalchemy import select

    from companion.accounts.models import ApiToken

    revoked = db_session.scalars(
        select(ApiToken).where(ApiToken.user_id == world.lead.id, ApiToken.name == "revoked")
    ).one()
    accounts.revoke_token(db_session, actor=world.lead, token_id=revoked.id, now=utcnow())
    anon2 = app.test_client()
    callers["revoked"] = Caller(
        "revoked", anon2, {"Authorization": f"Bearer {raw}"}, csrf_of(anon2, "/login")
    )
    db_session.commit()
    return callers


# Bodies that get past validation, so that the object check is what answers.
BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/courses/<int:course_id>/classes/<int:class_id>/move": {
        "date": (dt.date.today() + dt.timedelta(days=20)).isoformat(),
        "start_time": "17:00",
    },
}
FAMILY_FORM = {"action": "request", "accept": "yes", "agreement_id": "1"}


def fresh_csrf(caller: Caller) -> None:
    from ..conftest import CSRF_RE

    for page in ("/login", "/account/tokens", "/f/"):
        html = caller.client.get(page).get_data(as_text=True)
        found = CSRF_RE.search(html)
        if found:
            caller.csrf = found.group(1) or found.group(2)
            return


def send(caller: Caller, method: str, rule: UrlRule, path: str) -> Any:
    headers = dict(caller.headers) if path.startswith("/api/") else {}
    if method == "GET":
        return caller.client.get(path, headers=headers)
    if path.startswith("/api/"):
        body = BODIES.get(key(method, rule), {})
        return caller.client.open(path, method=method, json=body, headers=headers)
    if path.startswith("/f/"):
        data = {**FAMILY_FORM, "csrf_token": caller.family_token or caller.csrf}
    else:
        data = {"csrf_token": caller.csrf}
    return caller.client.open(path, method=method, data=data, headers=headers)


def answer_of(response: Any) -> str:
    status = response.status_code
    if status in (301, 302, 303) and response.headers.get("Location", "").startswith("/login"):
        return LOGIN
    if status in (401, 403, 404):
        return str(status)
    if status >= 500:
        return str(status)
    return OK


SECRETS = (w.SECRET_CHILD, w.SECRET_PARENT, w.SECRET_COURSE)


ENDING = ("deactivate", "erase", "withdraw", "revoke", "cancel")
# Last, in this order: what ends the caller's own session or second factor.
LAST = ("/account/two-factor/disable", "/f/sign-out", "/logout", "/login/code/cancel")


def order(item: tuple[str, UrlRule, str]) -> tuple[int, int, str]:
    """Reads first; then changes; what ends things (deactivate, erase, withdraw, revoke,
    cancel) after those, so it cannot change what the others see; the caller's own sign-out last."""
    method, rule, _ = item
    if rule.rule in LAST:
        return (3, LAST.index(rule.rule), rule.rule)
    if method == "GET":
        return (0, 0, rule.rule)
    return (2 if any(word in rule.rule for word in ENDING) else 1, 0, rule.rule)


@pytest.mark.parametrize("caller_name", CALLERS)
def test_matrix(app: Flask, db_session: Session, world: w.World, caller_name: str) -> None:
    values = values_for(app, db_session, world)
    callers = make_callers(app, db_session, world)
    caller = callers[caller_name]
    observe = os.environ.get("MATRIX_OBSERVE")
    wrong = []
    for method, rule, kind in sorted(routes(app), key=order):
        path = build_path(rule, values)
        if method != "GET" and order((method, rule, kind))[0] >= 2:
            fresh_csrf(caller)
        response = send(caller, method, rule, path)
        got = answer_of(response)
        want = derived(kind, path, caller_name)
        if want is None:
            entry = EXPECT.get(key(method, rule))
            if entry is None:
                if observe:
                    print(
                        f"OBSERVED {caller_name} {key(method, rule)} {got} {response.status_code}"
                    )
                    continue
                pytest.fail(f"{key(method, rule)} has no expected answers in EXPECT")
            want = expected(entry, caller_name)
        if observe:
            print(f"OBSERVED {caller_name} {key(method, rule)} {got} {response.status_code}")
        if got != want:
            wrong.append(
                f"{caller_name}: {method} {path} ({rule.rule}) answered "
                f"{response.status_code}, expected {want}"
            )
            continue
        body = (
            response.get_data().decode("utf-8", "replace")
            if response.mimetype.startswith(("text/", "application/json"))
            else ""
        )
        if got != OK or caller_name in (
            "teacher_x",
            "parent_a",
            "anonymous",
            "deactivated",
            "revoked",
        ):
            leaked = [s for s in SECRETS if s in body]
            if leaked and not (kind == "public" and rule.rule == "/static/<path:filename>"):
                wrong.append(f"{caller_name}: {method} {path} showed {leaked}")
    assert wrong == []


def test_a_new_route_cannot_escape_the_table(app: Flask) -> None:
    from companion.access import allow

    app.add_url_rule(
        "/brand-new/<int:course_id>",
        endpoint="brand_new",
        view_func=allow("admin")(lambda course_id: ""),
    )
    missing = [key(m, r) for m, r, _ in routes(app) if key(m, r) not in EXPECT]
    assert missing == ["GET /brand-new/<int:course_id>"]
    with pytest.raises(AssertionError, match="GET /brand-new/<int:course_id>"):
        test_every_route_has_its_expected_answers(app)
