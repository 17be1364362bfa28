"""Staff API tokens and the JSON API's contract: bearer auth, JSON errors, the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from companion.access import STAFF, allow, rule_for
from companion.accounts import services
from companion.accounts.models import ApiToken, User
from companion.api.views import json_body
from companion.db import Clock, utcnow
from companion.errors import Conflict

from .staff_helpers import audit_events, post_form, sign_in, text

TOKEN_RE = re.compile(r"cmp_[A-Za-z0-9_-]{20,}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Every API error is {"error": {"code", "message"}} with the right status, as JSON."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture
def token(db_session: Session, teacher: User) -> str:
    return services.create_token(db_session, user=teacher, name="tests")


# --- tokens made in the UI -------------------------------------------------------------------


def test_token_created_in_the_ui_works_and_is_shown_once(
    client: FlaskClient, db_session: Session, teacher: User
) -> None:
    sign_in(client, teacher.email)

    page = post_form(
        client, "/account/tokens", {"name": "timetable sync"}, form_page="/account/tokens"
    )

    assert page.status_code == 200
    assert "copy it now; it is not shown again" in text(page)
    [raw] = set(TOKEN_RE.findall(text(page)))
    [row] = db_session.scalars(select(ApiToken).where(ApiToken.user_id == teacher.id))
    assert row.name == "timetable sync"
    assert row.token_hash == services.hash_token(raw)
    assert row.prefix == raw[:10]
    # The raw token is stored nowhere: not in the token table, not in the audit trail.
    dump = " ".join(
        str(v) for r in db_session.execute(sql("select * from api_tokens")) for v in r
    ) + " ".join(e.detail for e in audit_events(db_session, "token.created"))
    assert raw not in dump
    assert raw not in text(client.get("/account/tokens"))

    me = client.get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200
    assert me.json["email"] == teacher.email


def test_token_needs_a_name(client: FlaskClient, db_session: Session, teacher: User) -> None:
    sign_in(client, teacher.email)
    page = post_form(client, "/account/tokens", {"name": ""}, form_page="/account/tokens")
    assert "This field is required." in text(page)
    assert not TOKEN_RE.search(text(page))
    assert db_session.scalars(select(ApiToken)).all() == []


def test_revoked_token_stops_working(
    client: FlaskClient, db_session: Session, teacher: User, token: str
) -> None:
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    sign_in(client, teacher.email)
    [row] = db_session.scalars(select(ApiToken))

    response = post_form(client, f"/account/tokens/{row.id}/revoke", form_page="/account/tokens")

    assert response.status_code == 302
    assert_error(client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")
    assert "Revoked" in text(client.get("/account/tokens"))
    assert [e.subject_id for e in audit_events(db_session, "token.revoked")] == [str(row.id)]


def test_nobody_else_revokes_my_token(
    app: Flask, db_session: Session, org: object, teacher: User, admin: User, token: str
) -> None:
    from . import factories

    colleague = factories.user(db_session, org)
    [row] = db_session.scalars(select(ApiToken))
    other = app.test_client()
    sign_in(other, colleague.email)

    response = post_form(other, f"/account/tokens/{row.id}/revoke", form_page="/account/tokens")

    assert response.status_code == 404
    assert other.get("/api/v1/me", headers=bearer(token)).status_code == 200
    # An admin of the same organisation may, e.g. when a laptop is lost.
    admin_browser = app.test_client()
    sign_in(admin_browser, admin.email)
    post_form(admin_browser, f"/account/tokens/{row.id}/revoke", form_page="/account/tokens")
    assert other.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_deactivated_accounts_token_is_refused(
    client: FlaskClient, db_session: Session, admin: User, teacher: User, token: str
) -> None:
    services.deactivate(db_session, actor=admin, user_id=teacher.id, now=utcnow())
    assert_error(client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")
    with pytest.raises(Conflict):
        services.create_token(db_session, user=teacher, name="again")


# --- /api/v1/me and authentication -------------------------------------------------------


def test_me(client: FlaskClient, teacher: User, token: str) -> None:
    response = client.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    org = teacher.organisation
    assert response.json == {
        "id": teacher.id,
        "email": teacher.email,
        "name": teacher.name,
        "role": "teacher",
        "organisation": {"id": org.id, "name": org.name, "timezone": org.timezone},
    }


def test_token_use_is_recorded_at_most_once_a_minute(
    client: FlaskClient, db_session: Session, token: str, clock: Clock
) -> None:
    for _ in range(3):
        client.get("/api/v1/me", headers=bearer(token))
    clock.advance(minutes=2)
    client.get("/api/v1/me", headers=bearer(token))

    assert len(audit_events(db_session, "token.used")) == 2
    [row] = db_session.scalars(select(ApiToken))
    db_session.refresh(row)
    assert row.last_used_at is not None


def test_missing_token(client: FlaskClient) -> None:
    error = assert_error(client.get("/api/v1/me"), 401, "unauthorized")
    assert error["message"] == "Sign in, or send a valid staff API token."


def test_browser_session_does_not_open_the_api(client: FlaskClient, teacher: User) -> None:
    # Cookies are sent by browsers on their own; the API only trusts an explicit token.
    sign_in(client, teacher.email)
    assert_error(client.get("/api/v1/me"), 401, "unauthorized")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "bearer",
        "Basic dGVhY2hlcjpwYXNzd29yZA==",
        "Token {token}",
        "{token}",
        "Bearer cmp_not-a-real-token-at-all-000000000000",
        "Bearer {token}x",
        "Bearer not-even-the-prefix",
        "Bearer {token} {token}",
    ],
)
def test_malformed_or_unknown_authorization(client: FlaskClient, token: str, header: str) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": header.format(token=token)})
    assert_error(response, 401, "unauthorized")


def test_scheme_is_case_insensitive(client: FlaskClient, token: str) -> None:
    assert client.get("/api/v1/me", headers={"Authorization": f"bearer {token}"}).status_code == 200


# --- JSON errors -----------------------------------------------------------------------------


@pytest.fixture
def echo(app: Flask) -> Iterator[str]:
    """A POST route inside the api blueprint, only in this test app, to test body handling."""

    @allow(*STAFF)
    def _echo() -> Any:
        return jsonify({"got": json_body()})

    app.add_url_rule(
        "/api/v1/_test_echo", endpoint="api.test_echo", view_func=_echo, methods=["POST"]
    )
    yield "/api/v1/_test_echo"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", '{"a": 1}'),
        ("application/x-www-form-urlencoded", "a=1"),
        (None, '{"a": 1}'),
        ("application/xml", "<a>1</a>"),
    ],
)
def test_wrong_content_type_is_415(
    client: FlaskClient, token: str, echo: str, content_type: str | None, body: str
) -> None:
    headers = bearer(token)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(echo, data=body, headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["message"] == "Send the body as JSON with Content-Type: application/json."


def test_json_body(client: FlaskClient, token: str, echo: str) -> None:
    ok = client.post(echo, json={"a": 1}, headers=bearer(token))
    assert ok.status_code == 200 and ok.json == {"got": {"a": 1}}
    charset = client.post(
        echo,
        data=json.dumps({"b": 2}),
        headers={**bearer(token), "Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.json == {"got": {"b": 2}}

    for body in ("{not json", "[1, 2]", '"text"', ""):
        response = client.post(
            echo, data=body, headers={**bearer(token), "Content-Type": "application/json"}
        )
        assert_error(response, 422, "bad_json")


def test_authentication_comes_before_body_checks(client: FlaskClient, echo: str) -> None:
    assert_error(client.post(echo, data="x", content_type="text/plain"), 401, "unauthorized")


def test_unknown_api_path_is_json_404(client: FlaskClient, token: str) -> None:
    for path in ("/api/v1/nothing-here", "/api/v1/", "/api/v2/me"):
        assert_error(client.get(path, headers=bearer(token)), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client: FlaskClient, token: str) -> None:
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/api/v1/me", headers=bearer(token), json={})
        assert_error(response, 405, "method_not_allowed")
        assert set(response.headers["Allow"].split(", ")) >= {"GET"}
        assert "POST" not in response.headers["Allow"]


def test_page_errors_stay_html(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


# --- the OpenAPI document --------------------------------------------------------------------


def flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200, "the document is public"
    assert response.mimetype == "application/json"
    return response.json


def test_openapi_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.0.")
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        # Schemathesis ships the official OpenAPI 3.0 JSON schema; validate against it.
        from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

        errors = [str(e) for e in OPENAPI_30_VALIDATOR.iter_errors(document)]
        assert not errors, errors
    else:
        validate(document)

    # Every $ref points at something that exists.
    refs = re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(document))
    for ref in refs:
        node: Any = document
        for part in ref.split("/"):
            assert part in node, f"dangling $ref #/{ref}"
            node = node[part]


def test_openapi_document_describes_every_api_route(app: Flask, document: dict[str, Any]) -> None:
    prefix = document["servers"][0]["url"]
    assert prefix == "/api/v1"
    routed: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix + "/") or rule.rule == prefix + "/openapi.json":
            continue
        # Only the document itself is public; everything else needs a staff token.
        access = rule_for(app, rule.endpoint)
        assert access is not None and access.kind == "staff", rule.rule
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        routed.setdefault(flask_to_openapi(rule.rule[len(prefix) :]), set()).update(methods)
    documented = {
        path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in document["paths"].items()
    }
    assert routed == documented

    operations = [
        (f"{method.upper()} {path}", op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    operation_ids = [op["operationId"] for _, op in operations]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for name, op in operations:
        assert "401" in op["responses"], f"{name} does not document 401"
